"""``mingle-bench tune``: Optuna hyperparameter search on the validation split, resumable and distributable.

* **Sampler**: ``TPESampler(seed=seed + worker_id, multivariate=True, constant_liar=True)``;
  constant liar keeps concurrent workers from proposing the same point, and a distinct seed
  per worker keeps their random start-up trials apart.
* **Pruner**: ``MedianPruner(n_startup_trials=5, n_warmup_steps=patience * eval_every)``; the trainer reports the
  validation ``monitor`` (AUPR by default) after every evaluation (every ``eval_every``
  optimiser steps; Optuna's step is the optimiser step) through ``on_eval``.
* **Budget**: every trial trains under the run's step budget (``max_steps``, ``eval_every``,
  ``patience``), recorded in the study's attributes with the note policy.
* **Objective**: the best-step validation metric of :func:`mingle_bench.training.fit` with the
  model's ``default_hparams`` updated by its ``search_space(trial)``. The test split is never
  scored here: nothing about it reaches Optuna.
* **Storage**: an RDB URL (``--storage``), ``sqlite:///<out>/optuna.db`` by default.
  ``create_study(load_if_exists=True)`` resumes a killed study. Several processes (SQLite, one
  machine) or machines (PostgreSQL, e.g. ``postgresql+psycopg2://user:pw@host/db``, as Optuna
  recommends; SQLite must not sit on NFS) can run ``tune`` on the same ``--study-name`` at
  once. ``MaxTrialsCallback`` caps the study's total finished trials at ``--trials`` (workers
  that are mid-trial when the cap is reached finish it, so the total can exceed the cap by at
  most ``workers - 1``).
* **Crashed workers**: the storage heartbeats every ``heartbeat_interval`` s; a RUNNING trial
  whose worker stopped beating for ``grace_period`` s is marked FAIL and re-queued with the
  same parameters (up to ``max_retry`` times). The callback's name changed across Optuna
  versions (``failed_trial_callback=RetryFailedTrialCallback`` up to 4.8,
  ``heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback`` from 4.9);
  :func:`stale_trial_retry_kwargs` picks whichever the installed version has. Optuna does this
  silently, so at start :func:`clean_stale_trials` reports every RUNNING trial of the study
  (number, seconds since its last heartbeat), fails those silent for longer than
  ``grace_period`` (which re-queues them) and says what it cleaned; trials still beating
  (another live worker) are listed and left alone. The cleanup is in
  :attr:`TuneResult.stale`.
* **Output**: ``<out>/tuning/<study>.json`` with the best parameters and the merged
  hyperparameters (``mingle-bench run --tuned <study>`` reads it), and
  ``<out>/tuning/<study>_trials.csv`` (``study.trials_dataframe()``).
"""
from __future__ import annotations

import contextlib
import fcntl
import inspect
import json
import logging
import math
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from mingle_bench import pipeline as P
from mingle_bench import results as R
from mingle_bench import runspec as RS
from mingle_bench.io import atomic_write_json, atomic_write_text, stored_json_equals

log = logging.getLogger(__name__)

#: study attributes that must match when a worker joins an existing study, and those recorded only
#: when they differ from their default (absent = fp32, random split, all admissions, the task's code
#: types, no caps), compared the same way: both declared in the run specification (runspec.py)
STUDY_ATTRS, OPTIONAL_STUDY_ATTRS = RS.STUDY_ATTRS, RS.OPTIONAL_STUDY_ATTRS


class TuneError(P.RunError):
    """A user-facing tuning problem (bad arguments, mismatched study)."""


@dataclass
class TuneResult:
    study_name: str
    storage: str
    best_value: float | None
    best_params: dict
    hparams: dict
    counts: dict
    path: Path | None
    monitor: str
    stale: dict | None = None  # what clean_stale_trials found at start (None: not run)
    workers: list | None = None  # --executor ray: one dict per Ray worker (worker_id, trials or error)
    eval_every: int | None = None  # the best trial's validation interval (gradient-trained models)


def stale_trial_retry_kwargs(max_retry: int = 3, storage_cls=None) -> dict:
    """``RDBStorage`` keyword for retrying trials of dead workers, for the installed Optuna.

    Returns ``{"heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(...)}`` when
    the storage accepts it (Optuna >= 4.9), else ``{"failed_trial_callback":
    RetryFailedTrialCallback(...)}``; ``{}`` when neither exists.
    """
    import warnings

    import optuna.storages as st
    from optuna.exceptions import ExperimentalWarning

    storage_cls = storage_cls or st.RDBStorage
    params = inspect.signature(storage_cls.__init__).parameters
    new_cb = getattr(st, "RetryHeartbeatStaleTrialCallback", None)
    old_cb = getattr(st, "RetryFailedTrialCallback", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # stable in practice since Optuna 2.8
        warnings.simplefilter("ignore", FutureWarning)  # the old name, only used where it is the only one
        if "heartbeat_stale_trial_callback" in params and new_cb is not None:
            return {"heartbeat_stale_trial_callback": new_cb(max_retry=max_retry)}
        if "failed_trial_callback" in params and old_cb is not None:
            return {"failed_trial_callback": old_cb(max_retry=max_retry)}
    return {}


def make_storage(url: str, heartbeat_interval: int = 60, grace_period: int = 120, max_retry: int = 3):
    """An ``RDBStorage`` with heartbeat and stale-trial retry (SQLite gets a 60 s lock timeout)."""
    import optuna

    import warnings

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}

    def _open():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                                              grace_period=grace_period, **stale_trial_retry_kwargs(max_retry))

    # Workers started together race to create the schema of a new database ("table ... already
    # exists"). SQLite workers share one machine, so they take turns under a file lock; for a
    # server database the loser of the race simply opens the schema the winner created.
    last_exc: Exception | None = None
    for attempt in range(5):
        try:
            with _sqlite_schema_lock(url):
                return _open()
        except Exception as exc:  # bad URL, missing driver (psycopg2), unreachable server, schema race
            last_exc = exc
            if "already exists" not in str(exc):
                break
            time.sleep(0.2 * (attempt + 1))
    raise TuneError(f"--storage {redact(url)}: cannot open the Optuna storage "
                    f"({type(last_exc).__name__}: {last_exc})") from None


@contextlib.contextmanager
def _sqlite_schema_lock(url: str):
    """Exclusive lock on ``<db>.lock`` beside a SQLite file while its schema is created or checked."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url[len(prefix):] in ("", ":memory:"):
        yield
        return
    lock_path = Path(url[len(prefix):] + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _running_trial_ages(study) -> dict[int, tuple[float | None, float | None]]:
    """``{trial number: (seconds since its last heartbeat or None, seconds since it started or None)}``
    for the study's RUNNING trials. Heartbeats are compared with the database's clock (where Optuna
    writes them); without access to them (another storage), only the start age is given."""
    import datetime as dt

    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    now = dt.datetime.now()
    out: dict[int, tuple[float | None, float | None]] = {
        t.number: (None, (now - t.datetime_start).total_seconds() if t.datetime_start else None) for t in running}
    if not running:
        return out
    try:  # Optuna's RDB internals (stable since 2.x); a failure only loses the heartbeat ages
        import sqlalchemy
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        storage = getattr(study._storage, "_backend", study._storage)  # under Optuna's cache wrapper
        ids = {t._trial_id: t.number for t in running}
        with _create_scoped_session(storage.scoped_session) as session:
            db_now = session.execute(sqlalchemy.func.now()).scalar().replace(tzinfo=None)
            for tid, number in ids.items():
                hb = models.TrialHeartbeatModel.where_trial_id(tid, session)
                if hb is not None:
                    out[number] = ((db_now - hb.heartbeat).total_seconds(), out[number][1])
    except Exception as exc:  # noqa: BLE001 - reporting only
        log.debug("could not read trial heartbeats: %s", exc)
    return out


def clean_stale_trials(study, grace_period: int, console=None) -> dict:
    """Report the study's RUNNING trials and fail those whose worker is gone.

    A trial is stale when its last heartbeat is older than ``grace_period`` s (its worker was
    killed, or lost its machine). Stale trials are failed with Optuna's ``fail_stale_trials``,
    which also runs the storage's retry callback (re-queueing the same parameters up to
    ``max_retry`` times). RUNNING trials without any heartbeat (a worker without heartbeats, or
    killed before its first one) are reported but not failed: nothing proves they are dead.

    Returns ``{"running": [{"number", "heartbeat_age_s", "age_s"}...], "failed": [numbers],
    "requeued": [numbers of the new trials], "live": [numbers], "no_heartbeat": [numbers]}``; each
    finding is printed on ``console`` if given, else logged as a warning.
    """
    from optuna.trial import TrialState

    def say(msg: str) -> None:  # one sink: the rich console when tune shows progress, else a log warning
        if console is not None:
            console(f"[{study.study_name}] {msg}")
        else:
            log.warning(msg)
    ages = _running_trial_ages(study)
    info: dict = {"running": [{"number": n, "heartbeat_age_s": hb, "age_s": age} for n, (hb, age) in sorted(ages.items())],
                  "failed": [], "requeued": [], "live": [], "no_heartbeat": []}
    if not ages:
        return info

    def fmt(n: int) -> str:
        hb, age = ages[n]
        if hb is not None:
            return f"#{n} (last heartbeat {hb:.0f}s ago)"
        return f"#{n} (no heartbeat, started {age:.0f}s ago)" if age is not None else f"#{n} (no heartbeat)"

    msg = (f"study {study.study_name!r}: {len(ages)} trial(s) left RUNNING in the storage: "
           + ", ".join(fmt(n) for n in sorted(ages)))
    say(msg)
    before = {t.number for t in study.get_trials(deepcopy=False)}
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    after = study.get_trials(deepcopy=False)
    state = {t.number: t.state for t in after}
    info["failed"] = sorted(n for n in ages if state.get(n) == TrialState.FAIL)
    info["requeued"] = sorted(t.number for t in after if t.number not in before
                              and t.system_attrs.get("failed_trial") in info["failed"])
    info["live"] = sorted(n for n in ages if state.get(n) == TrialState.RUNNING and ages[n][0] is not None)
    info["no_heartbeat"] = sorted(n for n in ages if state.get(n) == TrialState.RUNNING and ages[n][0] is None)
    parts = []
    if info["failed"]:
        parts.append(f"failed {len(info['failed'])} stale trial(s) (no heartbeat for over {grace_period}s): "
                     + ", ".join(f"#{n}" for n in info["failed"])
                     + (f"; re-queued as {', '.join(f'#{n}' for n in info['requeued'])}" if info["requeued"] else ""))
    if info["live"]:
        parts.append(f"left {len(info['live'])} alone (heartbeat within {grace_period}s: another live worker): "
                     + ", ".join(f"#{n}" for n in info["live"]))
    if info["no_heartbeat"]:
        parts.append(f"left {len(info['no_heartbeat'])} without any heartbeat alone (not provably dead; "
                     "fail them by hand if no worker runs them): " + ", ".join(f"#{n}" for n in info["no_heartbeat"]))
    msg = f"study {study.study_name!r} on resume: " + "; ".join(parts)
    say(msg)
    return info


def redact(url: str) -> str:
    """The storage URL without its password (for logs and saved files)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def default_storage(out: str | Path) -> str:
    Path(out).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(out) / 'optuna.db'}"


def default_study_name(task: str, model: str, data: str = "synthetic", split: str = P.DEFAULT_SPLIT,
                       encoder: str | None = "default") -> str:
    """``<task>-<model>-<data-id>[-enc-<encoder>]``: the study ``tune`` names when not told."""
    return f"{task}-{model}-{P.results_data_id(data, split)}{P.encoder_suffix(encoder)}"


def split_study_name(name: str, split_seed: int) -> str:
    """The study (and the saved ``<out>/tuning/<study>.json``) of ``name`` tuned on split seed
    ``split_seed``: ``name`` itself for split seed 0, ``<name>-split<s>`` otherwise, as the results
    folders of repeated splits are named (:func:`mingle_bench.runspec.split_name`)."""
    return RS.split_name(name, split_seed)


def tune_split_seeds(split_seeds: Sequence[int] | str | int, *, task: str, model: str, data: str = "synthetic",
                     split: str = P.DEFAULT_SPLIT, encoder: str | None = "default", study_name: str | None = None,
                     split_seed: int = 0, **kw) -> list[TuneResult]:
    """``tune --split-seeds``: one study per split seed, each tuned on its own split's validation
    patients and named by :func:`split_study_name`. One study over all splits would score a trial
    on patients that other splits test on; ``run --split-seeds --tuned <study>`` then trains each
    split with the parameters tuned on that split (:func:`mingle_bench.runner.tuned_for_split`)."""
    from mingle_bench.runner import parse_seeds

    seeds = parse_seeds(split_seeds, flag="--split-seeds")
    if split != P.DEFAULT_SPLIT:
        raise TuneError(f"--split-seeds repeats the seeded random split; --split {split} has one fixed split")
    if int(split_seed) != 0:
        raise TuneError("--split-seed with --split-seeds: give the split seeds in --split-seeds only")
    base = study_name or default_study_name(task, model, data, split, encoder)
    return [tune(task=task, model=model, data=data, split=split, encoder=encoder, split_seed=int(s),
                 study_name=split_study_name(base, s), **kw) for s in seeds]


def tune(
    task: str, model: str, trials: int = 50, storage: str | None = None, study_name: str | None = None,
    timeout: float | None = None, data: str = "synthetic", device: str = "auto", encoder: str | None = "default",
    split_seed: int = 0, max_steps: int = P.DEFAULT_MAX_STEPS, eval_every: int = P.DEFAULT_EVAL_EVERY,
    patience: int = P.DEFAULT_PATIENCE, notes: str = P.DEFAULT_NOTES,
    monitor: str = P.DEFAULT_MONITOR, seed: int = 0, worker_id: int = 0, out: str | Path = P.DEFAULT_OUT,
    max_notes_per_visit: int | None = None, max_tokens: int | None = None, progress: bool = True,
    heartbeat_interval: int = 60, grace_period: int = 120, max_retry: int = 3, command: str = "",
    precision: str = P.DEFAULT_PRECISION, executor: str = P.DEFAULT_EXECUTOR, ray_address: str | None = None,
    workers: int = 1, split: str = P.DEFAULT_SPLIT, fresh: bool = False, graph_scope: str = "all",
    code_types: Sequence[str] | None = None,
) -> TuneResult:
    """Run (or join) an Optuna study for ``model`` on ``task``; see the module docstring.

    Every trial trains under the same step budget (``max_steps``, ``eval_every``, ``patience``)
    as ``mingle-bench run``, so a tuned model and a default one are trained alike. ``split="meds"``
    tunes on the MEDS subject splits (study name and attributes say so).

    A study that ``<out>/tuning/<study>.json`` was saved from but that the storage no longer holds
    (an emptied or deleted SQLite file, another database) is refused before any data is prepared,
    unless ``fresh`` (``--fresh``) starts it anew; the earlier file is then kept as
    ``<study>.lost-<UTC time>.json`` (:func:`check_lost_study`). Ctrl-C saves the best parameters
    so far before it stops (a ``KeyboardInterrupt`` whose message says where)."""
    import optuna

    from mingle_bench.metrics import MONITORS

    P.tame_library_logging()
    if trials < 1:
        raise TuneError(f"--trials must be >= 1, got {trials}")
    P.check_notes(notes)
    budget = P.make_budget(max_steps, eval_every, patience)
    P.check_monitor(monitor)
    if worker_id < 0:
        raise TuneError(f"--worker-id must be >= 0, got {worker_id}")
    from mingle_bench.runner import check_seed

    check_seed(seed, flag="--seed")
    check_seed(seed + worker_id, flag="--seed + --worker-id (the sampler's seed)")
    registered = P.available_models()
    if model not in registered:
        raise TuneError(f"--model {model}: unknown model; registered: {', '.join(registered)}")
    model = P.resolve_models([model])[0]
    P.check_hparams(model, P.model_defaults(model), where=f"--model {model}")
    dev = P.resolve_device(device)
    data_id = P.results_data_id(data, split)
    study_name = study_name or default_study_name(task, model, data, split, encoder)
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", study_name):
        raise TuneError(f"--study-name {study_name!r}: use letters, digits, '.', '_' and '-' only")
    storage_url = storage or default_storage(out)

    precision = P.effective_precision(precision, encoder)  # auto resolved for this machine
    P.check_executor(executor)
    if workers < 1:
        raise TuneError(f"--workers must be >= 1, got {workers}")
    if workers > 1 and executor != "ray":
        raise TuneError(f"--workers {workers} needs --executor ray; without Ray, start more `mingle-bench tune` "
                        "processes on the same --study-name and --storage (each with its own --worker-id)")
    if executor == "ray":
        from mingle_bench.distributed.cluster import ClusterError, import_ray

        try:
            import_ray()  # before any data loads
        except ClusterError as exc:
            raise TuneError(str(exc)) from None
        storage_url = _shared_storage_url(storage_url)
    check_lost_study(storage_url, study_name, out, fresh)
    code_types = RS.parse_code_types(code_types)
    given = dict(task=task, data=data, split_seed=split_seed, encoder=encoder, notes=notes, code_types=code_types,
                 max_notes_per_visit=max_notes_per_visit, max_tokens=max_tokens, graph_scope=graph_scope,
                 precision=precision, split=split)
    inputs = RS.inputs(given)
    tdata = P.prepare(inputs, progress=progress, executor=executor, ray_address=ray_address,
                      views=P.needed_views([model])).data
    # one class overall, or an undefined validation objective (nothing to tune on): RunError
    for line in P.check_labels(tdata, monitor, fallback=False):
        print(f"warning: {line}", file=sys.stderr)
    manifest = tdata.manifest.to_json()
    split_sha = (json.loads(manifest) if isinstance(manifest, str) else manifest).get("sha256", "")
    # the options added since studies were first written (precision, split, graph scope, code
    # types, caps) are recorded only when not at their default: older studies keep their attributes
    attrs = RS.study_attrs({**given, "pipeline": P.PIPELINE_VERSION, "model": model, "data_id": data_id,
                            **budget.as_dict(), "monitor": monitor, "split_sha256": split_sha})

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "maximize" if MONITORS[monitor] else "minimize"
    study_kw = dict(study_name=study_name, storage_url=storage_url, attrs=attrs, direction=direction, seed=seed,
                    budget=budget, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                    max_retry=max_retry)
    study = _open_study(worker_id=worker_id, **study_kw)

    defaults = P.model_defaults(model)
    console = _console(progress)
    stale = clean_stale_trials(study, grace_period, console if progress else None)
    loop_kw = dict(model=model, trials=trials, timeout=timeout, device=str(dev), budget=budget, monitor=monitor,
                   seed=seed)
    t0 = time.time()
    workers_info = None
    try:
        if executor == "ray":
            workers_info = _optimize_on_ray(tdata, study, study_kw, loop_kw, workers=workers,
                                            base_worker_id=worker_id, address=ray_address, console=console)
        else:
            _optimize(study, tdata, worker_id=worker_id, console=console, **loop_kw)
    except KeyboardInterrupt:
        # Ctrl-C: Optuna has failed the running trial; keep the best so far (a second Ctrl-C
        # aborts at once, leaving the earlier file whole: the write is atomic)
        res = save_best(study, out, storage_url, defaults, monitor, time.time() - t0, command)
        raise KeyboardInterrupt(interrupted_line(res)) from None
    res = save_best(study, out, storage_url, defaults, monitor, time.time() - t0, command)
    res.stale = stale
    res.workers = workers_info
    return res


def check_lost_study(storage_url: str, study_name: str, out: str | Path, fresh: bool = False) -> None:
    """Refuse to resume a study that is gone: ``<out>/tuning/<study>.json`` exists (best parameters
    were saved from it), but the storage no longer holds the study (a SQLite file emptied to 0
    bytes or deleted, or another database). Optuna would silently start a new, empty study and the
    next save would overwrite the earlier best parameters. With ``fresh`` a new study is allowed
    and the earlier file is moved to ``<study>.lost-<UTC time>.json`` (one warning line on stderr).
    A study still in the storage resumes, ``fresh`` or not."""
    saved = Path(out) / "tuning" / f"{study_name}.json"
    if not saved.is_file():
        return
    why = None
    prefix = "sqlite:///"
    db = storage_url[len(prefix):] if storage_url.startswith(prefix) else ""
    if db not in ("", ":memory:"):
        if not Path(db).exists():
            why = f"{db} does not exist"
        elif Path(db).stat().st_size == 0:
            why = f"{db} is empty (0 bytes)"
    if why is None:
        import optuna

        names = optuna.get_all_study_names(storage=make_storage(storage_url))
        if study_name in names:
            return
        why = f"{redact(storage_url)} holds no study {study_name!r}" + (
            f" (it holds {', '.join(sorted(names)[:5])}{', ...' if len(names) > 5 else ''})" if names else " (none at all)")
    try:
        recorded = R.read_json(saved)
    except ValueError:
        recorded = {}
    was = recorded.get("storage") if isinstance(recorded, dict) else None
    if not fresh:
        raise TuneError(f"study {study_name!r} is lost: {saved} holds its best parameters, but {why}"
                        + (f" (it was saved from {was})" if was and was != redact(storage_url) else "")
                        + "; point --storage at the study's database, or pass --fresh to start it anew "
                          "(the earlier file is kept)")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = saved.with_name(f"{study_name}.lost-{stamp}.json")
    saved.replace(kept)
    csv = saved.with_name(f"{study_name}_trials.csv")
    if csv.is_file():
        csv.replace(saved.with_name(f"{study_name}_trials.lost-{stamp}.csv"))
    print(f"warning: study {study_name!r} is lost ({why}); --fresh: starting it anew, the earlier best parameters "
          f"kept as {kept}", file=sys.stderr)


def interrupted_line(res: TuneResult) -> str:
    """The one line ``tune`` ends with after Ctrl-C: what was saved, and how to resume."""
    if res.path is None:
        return ("interrupted; no trial had completed, nothing saved; rerun the same command to resume the study "
                f"{res.study_name!r}")
    return (f"interrupted; best parameters so far ({res.counts.get('complete', 0)} complete trials, validation "
            f"{res.monitor} {res.best_value:.4f}) saved to {res.path}; rerun the same command to resume the study")


def _open_study(*, study_name: str, storage_url: str, attrs: dict, direction: str, seed: int, worker_id: int, budget,
                heartbeat_interval: int, grace_period: int, max_retry: int):
    """Create or join the study; refuse one created for another setup (its attributes differ)."""
    import optuna

    store = make_storage(storage_url, heartbeat_interval, grace_period, max_retry)
    sampler = optuna.samplers.TPESampler(seed=seed + worker_id, multivariate=True, constant_liar=True)
    # no pruning in a trial's first `patience` evaluations: the full-graph models sit on an initial plateau
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=budget.patience * budget.eval_every)
    study = optuna.create_study(study_name=study_name, storage=store, sampler=sampler, pruner=pruner,
                                direction=direction, load_if_exists=True)
    existing = study.user_attrs
    # a worker that created the study a moment ago may still be recording its attributes one by
    # one: wait for the full set (up to 10 s) before comparing, instead of refusing a half-written one
    for _ in range(100):
        if not existing or all(k in existing for k in STUDY_ATTRS):
            break
        time.sleep(0.1)
        existing = study.user_attrs
    if existing:
        # "precision" is recorded only for non-fp32 studies: absent on both sides means fp32
        diff = {k: (existing.get(k), attrs.get(k)) for k in (*STUDY_ATTRS, *OPTIONAL_STUDY_ATTRS)
                if existing.get(k) != attrs.get(k)}
        if diff:
            desc = ", ".join(f"{k}: study has {a!r}, this worker {b!r}" for k, (a, b) in diff.items())
            raise TuneError(f"study {study_name!r} in {redact(storage_url)} was created for another setup ({desc}); "
                            "use another --study-name")
    else:
        for k, v in attrs.items():
            study.set_user_attr(k, v)
    if study.direction != getattr(optuna.study.StudyDirection, direction.upper()):
        raise TuneError(f"study {study_name!r} optimises in the other direction; use another --study-name")
    return study


class _NoInterruptTraceback(logging.Filter):
    """Drops Optuna's "Trial N failed because of ... KeyboardInterrupt" record and its traceback:
    Ctrl-C is not a failure to report, ``tune`` ends with one line saying what it saved."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, KeyboardInterrupt) and "KeyboardInterrupt" not in str(record.msg)


def _quiet_optuna_on_interrupt() -> None:
    """Install :class:`_NoInterruptTraceback` on the logger of Optuna's trial loop (once)."""
    logger = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _NoInterruptTraceback) for f in logger.filters):
        logger.addFilter(_NoInterruptTraceback())


class _InterruptsInsideTrials:
    """Ctrl-C raised only where Optuna can unwind it: inside the objective (the trial fails and
    ``optimize`` re-raises). One landing in Optuna's own bookkeeping (starting or stopping a
    trial's heartbeat thread, a storage write) could leave the non-daemon heartbeat thread
    running, and the process would hang at exit; there it is held and raised after the trial's
    callbacks (or when the next objective starts, or after ``optimize`` returns).

    The command's SIGINT handler (``cli.second_interrupt_aborts``) is called as usual, so a second
    Ctrl-C still aborts at once. Off the main thread, or where SIGINT is not a Python handler (a
    background job ignores it; a Ray worker), it changes nothing."""

    def __init__(self) -> None:
        self.inside = False
        self.pending = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        if self.inside:
            self._previous(signum, frame)
            raise KeyboardInterrupt
        try:
            self._previous(signum, frame)
        except KeyboardInterrupt:
            pass
        self.pending = True

    @contextlib.contextmanager
    def installed(self):
        import signal
        import threading

        previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
        if not callable(previous):
            yield self
            return
        self._previous = previous
        signal.signal(signal.SIGINT, self._handler)
        try:
            yield self
            self.raise_pending()
        finally:
            if signal.getsignal(signal.SIGINT) == self._handler:
                signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def trial(self):
        """Around the objective: a held Ctrl-C is raised first, new ones are raised at once."""
        self.raise_pending()
        self.inside = True
        try:
            yield
        finally:
            self.inside = False

    def raise_pending(self, *_args) -> None:
        """Raise a held Ctrl-C (also usable as an Optuna callback)."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt


#: the budget key every gradient-trained model's study also searches: how often it validates, and so
#: how long a plateau it waits (``patience`` evaluations); the step budget itself stays the run's
EVAL_EVERY = "eval_every"
EVAL_EVERY_CHOICES: tuple[int, ...] = (5, 10, 20)


def eval_every_choices(model: str, budget) -> tuple[int, ...]:
    """The ``eval_every`` values a study of ``model`` tries: :data:`EVAL_EVERY_CHOICES` up to the step
    budget, and the run's own; none for a solver-fitted model (it takes no optimiser steps)."""
    from mingle_bench.runner import solver_fitted

    if solver_fitted([model]):
        return ()
    return tuple(sorted({c for c in EVAL_EVERY_CHOICES if c <= budget.max_steps} | {int(budget.eval_every)}))


def _optimize(study, tdata, *, model: str, trials: int, timeout: float | None, device: str, budget, monitor: str,
              seed: int, worker_id: int, console) -> None:
    """This worker's trials: until the study holds ``trials`` finished ones (or ``timeout``)."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    defaults = P.model_defaults(model)
    study_name = study.study_name
    eval_choices = eval_every_choices(model, budget)

    interrupts = _InterruptsInsideTrials()

    def objective(trial: optuna.Trial) -> float:
        with interrupts.trial():
            return _objective(trial)

    def _objective(trial: optuna.Trial) -> float:
        hp = {**defaults, **P.search_space(model, trial)}
        trial.set_user_attr("worker_id", worker_id)
        trial_budget = budget
        if eval_choices:  # validation interval, and with it the plateau window (patience x eval_every)
            trial_budget = P.make_budget(budget.max_steps, trial.suggest_categorical(EVAL_EVERY, eval_choices),
                                         budget.patience)

        def on_eval(step: int, val_metrics: dict) -> None:
            v = val_metrics.get(monitor)
            if v is not None and math.isfinite(float(v)):
                trial.report(float(v), step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at step {step} ({monitor} {float(v):.4f})")

        res = P.fit(model, tdata, hp, seed, device, trial_budget, monitor, on_eval)
        value = float(res.val_metrics.get(monitor, math.nan))
        trial.set_user_attr("best_step", int(res.best_step))
        trial.set_user_attr("stopped", str(res.stopped))
        trial.set_user_attr("train_s", float(res.train_s))
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"validation {monitor} undefined")
        return value

    def report(study: optuna.Study, trial) -> None:
        try:
            best = f"{study.best_value:.4f}"
        except ValueError:
            best = "n/a"
        val = "" if trial.value is None else f" val {monitor} {trial.value:.4f}"
        console(f"[{study_name}] trial {trial.number} {trial.state.name}{val} (best {best})")

    _quiet_optuna_on_interrupt()
    cap = MaxTrialsCallback(trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
    finished = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    remaining = trials - len(finished)
    if remaining > 0:
        with interrupts.installed():
            study.optimize(objective, n_trials=remaining, timeout=timeout,
                           callbacks=[cap, report, interrupts.raise_pending], catch=(FloatingPointError,),
                           gc_after_trial=True)
    else:
        console(f"[{study_name}] already has {len(finished)} finished trials (cap {trials}); nothing to run")


# ---------------------------------------------------------------------------------------------
# tune --executor ray --workers N


def _shared_storage_url(url: str) -> str:
    """A storage URL every Ray worker reaches: a SQLite path made absolute (workers run in Ray's
    own working directory); an in-memory SQLite refused."""
    prefix = "sqlite:///"
    if url.startswith("sqlite") and (not url.startswith(prefix) or url[len(prefix):] in ("", ":memory:")):
        raise TuneError(f"--storage {redact(url)}: Ray workers cannot share an in-memory SQLite study; "
                        "give a file (sqlite:///path/optuna.db) or a server (postgresql+psycopg2://...)")
    if url.startswith(prefix) and not url[len(prefix):].startswith("/"):
        return prefix + str(Path(url[len(prefix):]).resolve())
    return url


def _ray_worker(tdata, study_kw: dict, loop_kw: dict, worker_id: int, threads: int) -> dict:
    """One Optuna worker on a Ray worker: join the study, run trials until the cap, return counts."""
    import optuna
    import torch

    torch.set_num_threads(int(threads))  # the local executor's thread count (distributed.cluster.cell_threads)
    P.tame_library_logging()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _open_study(worker_id=worker_id, **study_kw)
    _optimize(study, tdata, worker_id=worker_id, console=lambda msg: None, **loop_kw)
    return {"worker_id": worker_id, "trials": sum(1 for t in study.get_trials(deepcopy=False)
                                                  if t.user_attrs.get("worker_id") == worker_id)}


def _optimize_on_ray(tdata, study, study_kw: dict, loop_kw: dict, *, workers: int, base_worker_id: int,
                     address: str | None, console) -> list[dict]:
    """Run ``workers`` Optuna workers as Ray tasks on the study's storage and wait for them.

    Each worker is :func:`_optimize` with ``worker_id = base_worker_id + i`` (its own TPE seed),
    one thread count and resources per worker like a cell's; the data goes to the object store
    once. SQLite storage is refused on a cluster of several nodes (its file is on one machine;
    use PostgreSQL). While waiting, each newly finished trial is reported; Ctrl-C cancels the
    workers (their running trials are failed and re-queued by the next ``tune`` through the
    heartbeat). Returns one dict per worker (``worker_id``, ``trials`` run, or ``error``)."""
    from optuna.trial import TrialState

    from mingle_bench.distributed.cluster import ClusterError, cell_threads, connect, resources

    try:
        ray = connect(address)
        threads, warning = cell_threads(ray)
    except ClusterError as exc:
        raise TuneError(str(exc)) from None
    if warning:
        console(warning)
    url = study_kw["storage_url"]
    nodes = resources(ray)["nodes"]
    if url.startswith("sqlite") and nodes > 1:
        raise TuneError(f"--storage {redact(url)}: this Ray cluster has {nodes} nodes and a SQLite file lives on "
                        "one of them; give a server database every node reaches, e.g. "
                        "--storage postgresql+psycopg2://user:pw@host/db (docs/distributed.md)")
    gpu = loop_kw["device"].startswith("cuda")
    task = ray.remote(_ray_worker).options(num_cpus=threads, num_gpus=1 if gpu else 0, max_retries=0,
                                           retry_exceptions=False)
    data_ref = ray.put(tdata)
    refs = {task.remote(data_ref, study_kw, loop_kw, base_worker_id + i, threads): base_worker_id + i
            for i in range(workers)}
    console(f"[{study.study_name}] {workers} Optuna worker(s) on Ray ({threads} thread(s) each)")
    done_states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    seen = {t.number for t in study.get_trials(deepcopy=False) if t.state in done_states}
    info: list[dict] = []
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=2.0)
            for t in study.get_trials(deepcopy=False):
                if t.state in done_states and t.number not in seen:
                    seen.add(t.number)
                    val = "" if t.value is None else f" val {loop_kw['monitor']} {t.value:.4f}"
                    console(f"[{study.study_name}] trial {t.number} {t.state.name}{val} "
                            f"(worker {t.user_attrs.get('worker_id', '?')})")
            for ref in ready:
                wid = refs.pop(ref)
                try:
                    info.append(ray.get(ref))
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # noqa: BLE001 - one worker's failure; the study goes on
                    cause = getattr(exc, "cause", None)
                    shown = cause if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError) else exc
                    msg = str(shown).strip().splitlines()[0] if str(shown).strip() else type(shown).__name__
                    if isinstance(shown, TuneError):  # e.g. the study belongs to another setup: every worker says so
                        raise TuneError(msg) from None
                    info.append({"worker_id": wid, "error": f"{type(shown).__name__}: {msg}"})
                    console(f"[{study.study_name}] worker {wid} FAILED: {type(shown).__name__}: {msg}")
    finally:
        for ref in refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001
                pass
    if info and all("error" in w for w in info):
        raise TuneError(f"every Ray tuning worker failed; first: {info[0]['error']}")
    return sorted(info, key=lambda w: w["worker_id"])


def save_best(study, out: str | Path, storage_url: str, defaults: dict, monitor: str, elapsed_s: float,
              command: str = "") -> TuneResult:
    """Write ``<out>/tuning/<study>.json`` (and the trials CSV) from the study's current state."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(1 for t in trials if t.state == s) for s in TrialState}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    folder = Path(out) / "tuning"
    if not complete:
        return TuneResult(study.study_name, redact(storage_url), None, {}, dict(defaults), counts, None, monitor)
    best = study.best_trial
    eval_every = best.params.get(EVAL_EVERY)  # a budget key, not a model hyperparameter
    best_params = {k: v for k, v in best.params.items() if k != EVAL_EVERY}
    hparams = {**defaults, **best_params}
    payload = {
        "study_name": study.study_name, "storage": redact(storage_url), "model": study.user_attrs.get("model"),
        "task": study.user_attrs.get("task"), "data": study.user_attrs.get("data"),
        "data_id": study.user_attrs.get("data_id"), "split_seed": study.user_attrs.get("split_seed"),
        "monitor": monitor, "direction": study.direction.name.lower(),
        "best_value": best.value, "best_trial": best.number, "best_params": best_params, "hparams": hparams,
        **({EVAL_EVERY: int(eval_every)} if eval_every is not None else {}),
        "counts": counts, "note": "validation metric only; the test split is never scored during tuning",
        "updated_at": P.utc_timestamp(), "command": command or P.command_line(),
    }
    path = folder / f"{study.study_name}.json"
    # nothing new (a finished study reused): the files keep their date
    if not stored_json_equals(path, payload, ignore=("updated_at", "command")):
        atomic_write_json(path, payload)
        try:
            df = study.trials_dataframe()
            atomic_write_text(folder / f"{study.study_name}_trials.csv", df.to_csv(index=False))
        except Exception:  # pragma: no cover - the CSV is a convenience
            pass
    return TuneResult(study.study_name, redact(storage_url), float(best.value), best_params, hparams, counts,
                      path, monitor, eval_every=None if eval_every is None else int(eval_every))




def _console(enabled: bool):
    if not enabled:
        return lambda msg: None
    from rich.console import Console

    c = Console(stderr=True, highlight=False)
    return c.print


def summary_line(res: TuneResult) -> str:
    c = res.counts
    counts = f"{c.get('complete', 0)} complete, {c.get('pruned', 0)} pruned, {c.get('fail', 0)} failed"
    if res.path is None:
        return f"Study {res.study_name} ({res.storage}): {counts}; no completed trial yet, nothing saved"
    ev = "" if res.eval_every is None else f" and eval_every {res.eval_every}"
    return (f"Study {res.study_name} ({res.storage}): {counts}; best validation {res.monitor} {res.best_value:.4f} "
            f"with {res.best_params}{ev}; saved to {res.path} (use `mingle-bench run --tuned {res.study_name}`)")


__all__ = ["tune", "tune_split_seeds", "default_study_name", "split_study_name", "TuneResult", "TuneError", "stale_trial_retry_kwargs", "make_storage", "save_best",
           "clean_stale_trials", "check_lost_study", "interrupted_line"]
