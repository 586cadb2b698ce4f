"""``mingle-bench run``: schedules every model x seed cell on one seeded patient-level split, the same
step budget for all, and writes the results folder.

Protocol (the same for every model, so the comparison is fair):

1. Load the cohort (``--data``), build the task's samples and features once
   (:func:`mingle_bench.features.build_task_data`) with one patient-level 7:1:2 split whose
   seed is ``split_seed`` (stored in ``config.json``; the manifest goes to ``splits.json``).
   ``split="meds"`` (``--split meds``) uses the MEDS subject splits of a ``meds:`` cohort
   instead; such runs record ``"split": "meds"`` in ``config.json`` and every ``runs.jsonl``
   record, and write to ``<out>/<task>/<data-id>-meds-split/``.
   Vocabularies, DeepWalk and projections are fitted on the train split only. The task's note
   policy (``notes``) decides which notes are inputs (tasks/base.py).
2. For each model and each training seed: train under the same budget in optimiser steps
   (``max_steps``), validate every ``eval_every`` steps, stop after ``patience`` evaluations
   without improvement of the validation ``monitor`` (AUPR by default), restore the best step
   (:func:`mingle_bench.training.fit`), and predict the test set. Each cell records how it
   stopped (``"early"`` on a plateau, or ``"budget"``) and its learning curve.
3. Test metrics (:func:`mingle_bench.metrics.compute_metrics`) on the whole test set, once per
   cell. The test set is never used for model selection, early stopping or tuning.
4. Tables of mean ± std over seeds in %, a paired comparison of MINGLE against the baseline
   with the best *validation* metric (per-seed signs and a patient-level bootstrap CI,
   :mod:`mingle_bench.report.comparison`), ROC/PR curves and learning curves.
5. The reference check (:mod:`mingle_bench.report.reference`): each cell is compared with the
   committed reference cell of the same inputs.

Results go to ``<out>/<task>/<data-id>/`` (:mod:`mingle_bench.results`). Every cell carries an
``input_hash`` over everything that shapes its training; a killed run resumes, reusing only
cells whose hash matches.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from mingle_bench import checkpoints as CK
from mingle_bench import pipeline as P
from mingle_bench import predictions as PR
from mingle_bench import results as R
from mingle_bench import runspec as RS
from mingle_bench import tracking as TR
from mingle_bench.distributed import cells as _cells
from mingle_bench.io import (atomic_write_json, atomic_write_text, machine_description, machine_info, peak_rss_mb,
                             stored_json_equals)
from mingle_bench.pipeline import RunError
from mingle_bench.report.finalize import DEFAULT_BOOTSTRAP, LEARNING_CURVES_FILE, finalize

#: wall times per stage and cell, and the peak RSS, of the last invocation on a results folder
TIMINGS_FILE = "timings.json"
# the default models and seeds, and the config keys that define a run (a results folder holds
# runs of one such configuration), are declared with every other option in the run specification
DEFAULT_MODELS, DEFAULT_SEEDS, FINGERPRINT_KEYS = RS.DEFAULT_MODELS, RS.DEFAULT_SEEDS, RS.FINGERPRINT_KEYS


@dataclass
class RunConfig:
    task: str = "mortality"
    data: str = "synthetic"
    models: Sequence[str] = DEFAULT_MODELS
    seeds: Sequence[int] = tuple(range(DEFAULT_SEEDS))
    split_seed: int = 0
    device: str = "auto"
    encoder: str | None = "default"
    tuned: Sequence[str] = ()
    tuned_anyway: bool = False                # use --tuned files tuned on another task or data (with a warning)
    out: str = P.DEFAULT_OUT
    max_steps: int = P.DEFAULT_MAX_STEPS
    eval_every: int = P.DEFAULT_EVAL_EVERY
    patience: int = P.DEFAULT_PATIENCE
    monitor: str = P.DEFAULT_MONITOR
    notes: str = P.DEFAULT_NOTES              # note policy of the task (tasks/base.py)
    max_notes_per_visit: int | None = None
    max_tokens: int | None = None
    graph_scope: str = "all"                  # hypergraph admissions: "all" (HypEHR/MINGLE) or "samples"
    code_types: Sequence[str] | None = None   # input code types; None = the task's default
    n_boot: int = DEFAULT_BOOTSTRAP
    fresh: bool = False
    progress: bool = True
    command: str = ""
    reference: str | None = "auto"          # committed reference root to check cells against; None: no check
    protocol: str = "default"               # "default" (papers' hyperparameters) or "tuned" (see reproduce)
    tuning_trials: int | None = None        # Optuna trials per model under the tuned protocol
    hparam_overrides: dict = field(default_factory=dict)  # model -> {name: value} (tests, reproduce)
    precision: str = P.DEFAULT_PRECISION    # encoder arithmetic (encoders.precision.PRECISIONS)
    executor: str = P.DEFAULT_EXECUTOR      # "local" (this process) or "ray" (cells and embedding on Ray)
    ray_address: str | None = None          # Ray cluster to join; None: RAY_ADDRESS, else a local Ray
    split: str = P.DEFAULT_SPLIT            # "random" (seeded 7:1:2) or "meds" (the cohort's MEDS subject splits)
    split_seeds: Sequence[int] | None = None  # repeated splits (run_split_seeds); None: the one split_seed
    save_checkpoints: bool = False          # each cell's best weights in <folder>/checkpoints/ (checkpoints.py)
    tracker: str = "none"                   # log every cell to mlflow or tensorboard (tracking.py); not fingerprinted

    def inputs(self) -> P.Inputs:
        """The options that shape the task's inputs (the run specification's ``inputs`` fields)."""
        return RS.inputs(self)


@dataclass
class RunSummary:
    folder: Path
    trained: list[tuple[str, int]]
    skipped: list[tuple[str, int]]
    failed: list[dict]
    rows: list[dict]
    comparison: dict | None
    files: list[Path]
    reference: dict | None = None


def input_hash(model: str, seed: int, hparams: dict, run_cfg: dict, source_id: str, digest: dict) -> str:
    """sha256 over everything that shapes one cell's training: the cohort content
    (``source_id``), the task's samples, labels, split, note selection, code inputs,
    vocabulary, graph and encoder identity (``digest``, :func:`mingle_bench.features.input_digest`),
    the model, seed and hyperparameters, the budget and monitor, and the pipeline and torch
    versions. Resume reuses a cell only when this hash matches."""
    import torch

    payload = {"pipeline": P.PIPELINE_VERSION, "torch": torch.__version__, "source_id": source_id,
               "inputs": digest, "model": model, "seed": int(seed), "hparams": hparams,
               "run": {k: run_cfg.get(k) for k in FINGERPRINT_KEYS if k in run_cfg and k not in ("data", "data_id")}}
    return R.stable_hash(payload, n=64)


#: the most training seeds one run may ask for (``--seeds 1000000000000`` is a typo, not a plan)
MAX_SEEDS = 1000
#: seeds are below 2**32: the trainer seeds NumPy with ``seed % 2**32`` (training.seed_everything),
#: so seed 2**32 would train exactly like seed 0 and be counted as another seed
SEED_LIMIT = 2 ** 32


def folder_id(data: str, split: str = P.DEFAULT_SPLIT, protocol: str = "default", encoder: str | None = "default") -> str:
    """``<data-id>[-<protocol>][-enc-<encoder>]``: the name a run's folders share under every task
    and under ``paper/`` (``-meds-split`` in the data id under ``--split meds``)."""
    name = P.results_data_id(data, split) + ("" if protocol == "default" else f"-{protocol}")
    return name + P.encoder_suffix(encoder)


def _folder_name(cfg: RunConfig) -> str:
    return folder_id(cfg.data, cfg.split, cfg.protocol, cfg.encoder)


def results_folder(cfg: RunConfig) -> Path:
    """``<out>/<task>/<folder id>`` (:func:`folder_id`): the folder of one split's cells. Under repeated
    splits (``cfg.split_seeds``) split seed ``s`` > 0 writes to ``...-split<s>``, so split seed 0
    shares the single-split folder (and its finished cells and reference)."""
    name = _folder_name(cfg)
    if cfg.split_seeds is not None:
        name = RS.split_name(name, cfg.split_seed)
    return Path(cfg.out) / cfg.task / name


def pooled_folder(cfg: RunConfig) -> Path:
    """``<out>/<task>/<folder id>-splits``: the pooled report over repeated splits."""
    return Path(cfg.out) / cfg.task / f"{_folder_name(cfg)}-splits"


@dataclass
class SplitsSummary:
    """What :func:`run_split_seeds` did: one :class:`RunSummary` per split seed and the pooled report."""

    runs: list[RunSummary]
    pooled_folder: Path
    pooled: dict


def run_split_seeds(cfg: RunConfig, executor=None) -> SplitsSummary:
    """Repeated splits: :func:`run_benchmark` once per split seed of ``cfg.split_seeds`` (each a
    complete results folder, resumable, checked against its reference), then the pooled report
    over every split x training-seed cell (:mod:`mingle_bench.report.pooled`)."""
    from mingle_bench.report.pooled import write_pooled

    split_seeds = parse_seeds(cfg.split_seeds, flag="--split-seeds")
    if cfg.split != P.DEFAULT_SPLIT:
        raise RunError(f"--split-seeds repeats the seeded random split; --split {cfg.split} has one fixed split")
    runs = []
    for s in split_seeds:  # each split trains with the parameters tuned on its own validation patients
        runs.append(run_benchmark(dataclasses.replace(cfg, split_seed=int(s), split_seeds=tuple(split_seeds),
                                                      tuned=[tuned_for_split(t, s) for t in cfg.tuned]), executor))
    folder = pooled_folder(cfg)
    pooled = write_pooled([r.folder for r in runs], folder, monitor=cfg.monitor, n_boot=cfg.n_boot,
                          command=cfg.command or P.command_line())
    return SplitsSummary(runs, folder, pooled)


def parse_seeds(value: str | int | Sequence[int], flag: str = "--seeds") -> list[int]:
    """``5`` -> seeds 0..4; ``"0,3,7"`` -> those seeds.

    Refused with one line naming ``flag``: a count below 1 or above :data:`MAX_SEEDS`, a seed
    outside ``0 <= seed < 2**32`` (:data:`SEED_LIMIT`; larger seeds alias smaller ones in NumPy's
    seeding), a repeated seed, anything but integers."""
    if isinstance(value, bool):
        raise RunError(f"{flag} takes a count (5) or a comma list (0,3,7), got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            count = int(text) if "," not in text else None
            seeds = [int(s) for s in text.split(",") if s.strip()] if count is None else []
        except ValueError:
            raise RunError(f"{flag} takes a count (5) or a comma list (0,3,7), got {value!r}") from None
        if count is not None:
            return parse_seeds(count, flag)
    elif isinstance(value, int):
        if value < 1:
            raise RunError(f"{flag} must be >= 1, got {value}")
        if value > MAX_SEEDS:
            raise RunError(f"{flag} {value}: at most {MAX_SEEDS} seeds per run (a count N trains seeds 0..N-1)")
        return list(range(value))
    else:
        seeds = list(value)
        if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in seeds):
            raise RunError(f"{flag} must be integers, got {seeds!r}")
        seeds = [int(s) for s in seeds]
    if not seeds:
        raise RunError(f"{flag} is empty")
    if len(seeds) > MAX_SEEDS:
        raise RunError(f"{flag}: {len(seeds)} seeds, at most {MAX_SEEDS} per run")
    check_seed(*seeds, flag=flag)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise RunError(f"{flag} must be distinct, got {', '.join(map(str, repeated))} more than once")
    return seeds


def check_seed(*seeds: int, flag: str = "--seed") -> None:
    """Refuse a seed outside ``0 <= seed < 2**32`` with one line naming ``flag`` and why."""
    for s in seeds:
        if not 0 <= s < SEED_LIMIT:
            raise RunError(f"{flag}: seed {s} is out of range; seeds must be in 0..{SEED_LIMIT - 1} (NumPy is "
                           f"seeded with seed mod 2**32, so a larger seed would train exactly like a smaller one)")


#: what a tuned file records about its study and what a run compares it with
TUNED_CHECKS = ("task", "data", "split_seed")


def tuned_for_split(spec: str, split_seed: int) -> str:
    """The ``--tuned`` spec of split seed ``split_seed`` under repeated splits: the study name or
    JSON file of ``spec`` tuned on that split (``tune --split-seeds`` names them ``<study>-split<s>``,
    :func:`mingle_bench.tuning.split_study_name`); ``spec`` itself for split seed 0."""
    p = Path(spec)
    if p.suffix != ".json":
        return RS.split_name(spec, split_seed)
    return str(p.with_name(RS.split_name(p.stem, split_seed) + ".json")) if int(split_seed) else spec


def load_tuned(spec: str, out: str | os.PathLike) -> dict:
    """A tuned-hyperparameter file: a JSON path, or a study name saved under ``<out>/tuning/``.

    Refused with one line naming ``--tuned`` and the file: not UTF-8, not JSON, not an object,
    no ``model``, or ``best_params`` that is not an object of names to values."""
    p = Path(spec)
    candidates = [p] if p.suffix == ".json" else [Path(out) / "tuning" / f"{spec}.json", p]
    for c in candidates:
        if c.is_file():
            try:
                d = R.read_json(c)
            except UnicodeDecodeError as exc:
                raise RunError(f"--tuned {spec}: {c} is not UTF-8 text (byte {exc.start}); not a tuning result"
                               ) from None
            except ValueError as exc:
                raise RunError(f"--tuned {spec}: {exc}") from None
            if not isinstance(d, dict) or "model" not in d or "best_params" not in d:
                raise RunError(f"--tuned {spec}: {c} is not a tuning result (needs 'model' and 'best_params')")
            if not isinstance(d["best_params"], dict):
                raise RunError(f"--tuned {spec}: {c}: 'best_params' must be an object of hyperparameter names to "
                               f"values, found a {type(d['best_params']).__name__}")
            if not isinstance(d["model"], str):
                raise RunError(f"--tuned {spec}: {c}: 'model' must be a model name, found {d['model']!r}")
            d["_path"] = str(c)
            return d
    known = sorted(x.stem for x in (Path(out) / "tuning").glob("*.json")) if (Path(out) / "tuning").is_dir() else []
    raise RunError(f"--tuned {spec}: no {candidates[0]} (run `mingle-bench tune ... --study-name {spec}` first"
                   + (f"; saved studies: {', '.join(known)})" if known else ")"))


def tuned_mismatches(tuned: dict, task: str, data: str, split: str = P.DEFAULT_SPLIT,
                     split_seed: int | None = None) -> list[str]:
    """How a tuned file's study differs from this run: ``["task: tuned on 'mortality', this run 'los'",
    ...]`` for the task, the data (compared by data id, so ``synthetic`` and ``synthetic:default``
    agree; by the spec where the file records no id) and, under the seeded random split, the split
    seed: parameters chosen on another split's validation patients have seen some of this split's
    test patients."""
    diffs = []
    if (split == P.DEFAULT_SPLIT and split_seed is not None and tuned.get("split_seed") is not None
            and int(tuned["split_seed"]) != int(split_seed)):
        diffs.append(f"split seed: tuned on split seed {tuned['split_seed']}'s validation patients, this run split "
                     f"seed {split_seed} (some of its test patients; tune each split with `tune --split-seeds`)")
    if tuned.get("task") is not None and tuned["task"] != task:
        diffs.append(f"task: tuned on {tuned['task']!r}, this run {task!r}")
    if tuned.get("data_id") is not None:
        here = P.results_data_id(data, split)
        if tuned["data_id"] != here:
            diffs.append(f"data: tuned on {tuned['data_id']!r} ({tuned.get('data')}), this run {here!r} ({data})")
    elif tuned.get("data") is not None and tuned["data"] != data:
        diffs.append(f"data: tuned on {tuned['data']!r}, this run {data!r}")
    return diffs


# ---------------------------------------------------------------------------------------------
# scheduling


# the executor protocol's types live beside the Ray executor (which cannot import this module)
CellJob, CellFailure = _cells.CellJob, _cells.CellFailure


class LocalExecutor:
    """Trains the cells one after another in this process (the default executor).

    An executor takes the jobs and the prepared data and yields ``(job, outcome)`` as cells
    finish, where ``outcome`` is a :class:`mingle_bench.pipeline.CellOutcome` or a
    :class:`CellFailure`; the driver (:func:`run_benchmark`) alone writes results. A broken cell
    becomes a failure, so it never loses the others (``MINGLE_DEBUG=1`` raises instead).
    """

    name = "local"

    def run(self, jobs: Sequence[CellJob], data, *, device: str, budget, monitor: str, progress
            ) -> Iterator[tuple[CellJob, P.CellOutcome | CellFailure]]:
        for job in jobs:
            on_eval = progress.start_cell(job.model, job.seed, budget.max_steps)
            try:
                out = P.train_cell(job.model, job.seed, data, job.hparams, device, job.budget or budget, monitor, on_eval,
                                   return_state=getattr(self, "return_state", False))  # run --save-checkpoints
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:
                if os.environ.get("MINGLE_DEBUG"):
                    raise
                yield job, CellFailure(f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=6))
                continue
            yield job, out


def make_executor(name: str, ray_address: str | None = None):
    """The cell executor called ``name`` (``local`` or ``ray``)."""
    P.check_executor(name)
    if name == "ray":
        return _cells.RayExecutor(address=ray_address)
    return LocalExecutor()


def solver_fitted(models: Sequence[str]) -> set[str]:
    """The models of ``models`` fitted by their solver (``sklearn`` class attribute: logreg, prior,
    tfidf-lr, codes-notes-lr, gbm): no optimiser steps, so no step bar."""
    from mingle_bench.zoo import get_model

    out = set()
    for m in models:
        try:
            if getattr(get_model(m), "sklearn", False):
                out.add(m)
        except (KeyError, ValueError):  # a name only a test's fake pipeline knows
            pass
    return out


def check_arguments(cfg: RunConfig) -> None:
    """The checks of :func:`run_benchmark` that need no data, done before any folder, lock or bar
    exists: a bad value is one line naming the flag (``--task 'mortalty': unknown task; ...``)."""
    P.check_monitor(cfg.monitor)
    P.check_notes(cfg.notes)
    P.check_split(cfg.split)
    P.check_executor(cfg.executor)
    P.make_budget(cfg.max_steps, cfg.eval_every, cfg.patience)
    P.resolve_models(cfg.models)
    parse_seeds(cfg.seeds)
    from mingle_bench.tasks import list_tasks

    try:
        if cfg.task not in list_tasks():  # the registry's names; a test's fake pipeline may know more
            P.get_task(cfg.task, cfg.code_types, cfg.notes)
    except (KeyError, ValueError) as exc:
        msg = str(exc).strip("'\"").replace(f"unknown task {cfg.task!r}", "unknown task")
        raise RunError(msg if msg.startswith("--") else f"--task {cfg.task!r}: {msg}") from None
    from mingle_bench.data.sources import parse_spec as parse_data_spec

    parse_data_spec(cfg.data)  # --data syntax (synthtic:small, mimic3 without a folder)
    if cfg.encoder not in (None, "none"):
        from mingle_bench.encoders.registry import parse_spec

        try:
            parse_spec(cfg.encoder)
        except ValueError as exc:
            msg = str(exc)
            raise RunError(msg if msg.startswith("--encoder") else f"--encoder: {msg}") from None


def run_benchmark(cfg: RunConfig, executor=None) -> RunSummary:
    """Run (or resume) every model x seed cell of ``cfg`` and write the results folder."""
    from mingle_bench.progress import TRAINING, CellProgress

    started = time.perf_counter()
    check_arguments(cfg)  # every argument, before any folder, lock or progress line
    precision = P.effective_precision(cfg.precision, cfg.encoder)
    if precision != cfg.precision:
        cfg = dataclasses.replace(cfg, precision=precision)
    executor = executor or make_executor(cfg.executor, cfg.ray_address)
    if cfg.save_checkpoints:
        CK.request_state(executor)
    P.tame_library_logging()
    budget = P.make_budget(cfg.max_steps, cfg.eval_every, cfg.patience)
    TR.check_tracker(cfg.tracker)
    device = str(P.resolve_device(cfg.device))
    models = P.resolve_models(cfg.models)
    seeds = parse_seeds(cfg.seeds)
    tuned = {}
    for spec in cfg.tuned:
        t = load_tuned(spec, cfg.out)
        if t["model"] not in models:
            raise RunError(f"--tuned {spec} holds hyperparameters for {t['model']!r}, which is not in --models ({', '.join(models)})")
        if t["model"] in tuned:
            raise RunError(f"--tuned: two studies for model {t['model']!r}")
        diffs = tuned_mismatches(t, cfg.task, cfg.data, cfg.split, cfg.split_seed)
        if diffs and not cfg.tuned_anyway:
            raise RunError(f"--tuned {spec}: {t['_path']} was tuned for another setup ({'; '.join(diffs)}); "
                           "tune on this task, data and split, or pass --tuned-anyway to use it regardless")
        if diffs:
            import sys

            print(f"warning: --tuned {spec}: using {t['_path']} although it was tuned for another setup "
                  f"({'; '.join(diffs)}) (--tuned-anyway)", file=sys.stderr)
        ev = t.get("eval_every")
        if ev is not None and (isinstance(ev, bool) or not isinstance(ev, int) or not 1 <= ev <= cfg.max_steps):
            raise RunError(f"--tuned {spec}: {t['_path']}: 'eval_every' must be an integer from 1 to --max-steps "
                           f"({cfg.max_steps}), found {ev!r}")
        t["_mismatch"] = diffs
        tuned[t["model"]] = t
    # the hyperparameters every model trains with (its defaults, updated by a --tuned file) are
    # checked before any data loads; hparam_overrides are the caller's own (tests, reproduce)
    for m in models:
        where = f"--tuned {tuned[m]['_path']}" if m in tuned else f"--models {m}"
        P.check_hparams(m, {**P.model_defaults(m), **(tuned[m]["best_params"] if m in tuned else {})}, where=where)

    data_id = P.results_data_id(cfg.data, cfg.split)  # "-meds-split" suffix under --split meds
    folder = results_folder(cfg)
    # the run specification's fingerprint keys (precision and split only when not fp32 / random,
    # so the folders and input hashes written before those options existed stay valid)
    run_cfg = RS.fingerprint_dict({**vars(cfg), "pipeline": P.PIPELINE_VERSION, "data_id": data_id,
                                   **budget.as_dict()})
    fingerprint = RS.fingerprint(run_cfg)
    # one run per folder at a time: a second one fails at once (results.folder_lock)
    with R.folder_lock(folder):
        _check_folder(folder, run_cfg, fingerprint, fresh=cfg.fresh)

        hparams = {}
        for m in models:
            hp = P.model_defaults(m)
            if m in tuned:
                hp.update(tuned[m]["best_params"])
            hp.update(cfg.hparam_overrides.get(m, {}))
            hparams[m] = hp
        # a tuned eval_every is the cell's own budget; it enters the cell's identity only then, so
        # every other input hash is unchanged
        cell_budget = {m: P.make_budget(cfg.max_steps, tuned[m]["eval_every"], cfg.patience)
                       for m in models if m in tuned and tuned[m].get("eval_every") not in (None, cfg.eval_every)}
        hashed = {m: {**hparams[m], "eval_every": cell_budget[m].eval_every} if m in cell_budget else hparams[m]
                  for m in models}
        # seed-major order: an interrupted run already holds every model for its first seeds
        cells = [(m, s) for s in seeds for m in models]

        prog = CellProgress(cfg.progress, len(cells), cfg.monitor, solver_models=solver_fitted(models))
        trained, failed, cell_times = [], [], []

        def on_source(sid: str) -> None:  # the cohort is loaded; the features stage follows
            _check_source(folder, sid)
            prog.stage("features and embeddings")

        with prog, TR.open_tracker(cfg.tracker, folder, run_cfg) as tracker:
            prog.stage(f"load data ({cfg.data})")
            prep = P.prepare(cfg.inputs(), progress=cfg.progress, on_source=on_source,
                             executor=executor.name, ray_address=cfg.ray_address,
                             views=P.needed_views(models))
            prog.stage(TRAINING)
            data, source_id = prep.data, prep.source_id
            label_warnings = P.check_labels(data, cfg.monitor)  # one class overall: RunError before any cell
            for line in label_warnings:
                prog.log(f"[yellow]warning[/yellow]: {line}")
            digest = dict(getattr(data, "digest", None) or {})
            keys = {(m, s): input_hash(m, s, hashed[m], run_cfg, source_id, digest) for m, s in cells}
            done = R.finished_cells(folder) if folder.exists() else {}
            if cfg.save_checkpoints:  # a finished cell without its checkpoint is trained again
                done = {k: r for k, r in done.items() if CK.has_checkpoint(folder, r["model"], r["seed"])}
            todo = [CellJob(m, s, hparams[m], keys[(m, s)], cell_budget.get(m)) for m, s in cells
                    if keys[(m, s)] not in done]
            skipped = [c for c in cells if keys[c] in done]
            if skipped:
                prog.log(f"resuming {folder}: {len(skipped)} of {len(cells)} model x seed cells already finished "
                         "with the same inputs, skipping them")
                prog.skip(len(skipped))
            _write_split(folder, data.manifest.to_json())
            test_idx, y_test = P.test_arrays(data)
            patients = data.samples["patient_id"].to_numpy()[test_idx] if "patient_id" in data.samples else test_idx
            groups = np.unique(patients.astype(str), return_inverse=True)[1].astype(np.int64)
            R.save_array(R.labels_path(folder), {"y_true": y_test, "test_idx": test_idx, "patient_group": groups})
            test_samples = PR.write_test_samples(folder, data, test_idx)  # ids of the MEDS prediction files
            config = {
                **run_cfg, "fingerprint": fingerprint, "models": models, "seeds": seeds, "device": device,
                "source_id": source_id, "input_digest": digest, "tuned": {m: t["_path"] for m, t in tuned.items()},
                "hparams": hparams, "command": cfg.command or P.command_line(), "machine": machine_description(device),
                **({"tuned_eval_every": {m: b.eval_every for m, b in cell_budget.items()}} if cell_budget else {}),
                "machine_info": machine_info(device),
                "n_samples": {k: int(len(v)) for k, v in data.split_idx.items()}, "label_names": list(data.label_names),
                "data_report": data.report if isinstance(getattr(data, "report", None), dict) else {},
                "label_warnings": label_warnings,
                "updated_at": P.utc_timestamp(),
            }
            # a resume that trains nothing leaves the config of the run that trained its cells
            if todo or not stored_json_equals(folder / R.CONFIG_FILE, config, ignore=_VOLATILE_CONFIG):
                atomic_write_json(folder / R.CONFIG_FILE, config)

            for job, out in executor.run(todo, data, device=device, budget=budget, monitor=cfg.monitor,
                                         progress=tracker.watch(prog, todo)):
                if isinstance(out, CellFailure):
                    kind = "diverged" if out.error.startswith("TrainingDiverged") else "error"
                    failed.append({"model": job.model, "seed": job.seed, "kind": kind, "error": out.error,
                                   "traceback": out.traceback})
                    prog.log(f"[red]FAILED[/red] {job.model} seed {job.seed}: {out.error}")
                    prog.end_cell(f"{job.model}/{job.seed} failed")
                    continue
                record = {
                    "model": job.model, "seed": int(job.seed), "split_seed": int(cfg.split_seed), "metrics": out.metrics, "val_metrics": out.val_metrics,
                    "impl": out.impl, "train_s": out.train_s, "device": device, "executor": executor.name,
                    "steps_run": out.steps_run,
                    "best_step": out.best_step, "max_steps": int(budget.max_steps), "stopped": out.stopped,
                    "curve": out.curve, "n_params": out.n_params,
                    "monitor_used": out.monitor_used or cfg.monitor, "flags": out.flags,
                    "config": {**run_cfg, **(job.budget.as_dict() if job.budget else {}), "hparams": job.hparams,
                               "tuned_from": tuned[job.model]["_path"] if job.model in tuned else None},
                    "input_hash": job.input_hash, "preds_sha256": R.array_sha256(out.probs),
                    # the last bits of the embeddings it read (not in input_hash; the reference check's diagnosis)
                    "computed_sha256": (data.computed_sha256(P.model_fields(job.model))
                                        if hasattr(data, "computed_sha256") else {}),
                    "machine_info": config["machine_info"],  # the driver's (a Ray worker's CPU is not sent back)
                    "finished_at": P.utc_timestamp(),
                }
                # predictions first, record second: a record always has its predictions
                R.save_array(R.preds_path(folder, job.model, job.seed), {"probs": out.probs})
                PR.write_cell_predictions(folder, job.model, job.seed, test_samples, y_test, out.probs, data.label_names)
                if cfg.save_checkpoints and out.state is not None:
                    CK.save_cell(folder, record, out.state, out.fitted_state, config)
                R.add_run(folder, record)
                tracker.log_cell(record)
                for f in out.flags:
                    if f.get("kind") != "monitor_fallback":  # said once for the run, above
                        prog.log(f"[yellow]flagged[/yellow] {job.model} seed {job.seed}: {f.get('kind')}: {f.get('message')}")
                trained.append((job.model, job.seed))
                cell_times.append({"model": job.model, "seed": int(job.seed), "train_s": out.train_s,
                                   "steps_run": out.steps_run, "best_step": out.best_step, "stopped": out.stopped})
                shown = cfg.monitor if cfg.monitor in out.metrics else P.DEFAULT_MONITOR  # no test loss is kept
                prog.end_cell(f"{job.model}/{job.seed} test {shown} {out.metrics[shown]:.4f}, "
                              f"best step {out.best_step}/{out.steps_run} ({out.stopped})")

        if failed:
            atomic_write_json(folder / "failures.json", failed)
        elif (folder / "failures.json").exists():
            (folder / "failures.json").unlink()
        rows, comp, files = finalize(folder, cfg.monitor, cfg.n_boot)
        ref = None
        (folder / "reference_check.json").unlink(missing_ok=True)
        if cfg.reference is not None:
            from mingle_bench.report.reference import check_reference

            ref = check_reference(folder, [keys[c] for c in cells], cfg.reference)
        # this invocation's wall times and memory (they vary run to run, so they stay out of
        # config.json and the records); `scripts/scale_report.py` reads them. An invocation that
        # trained nothing keeps those of the one that did.
        if todo or not (folder / TIMINGS_FILE).exists():
            atomic_write_json(folder / TIMINGS_FILE, {
                "command": config["command"], "machine": config["machine"], "executor": executor.name,
                "stage_seconds": prep.seconds, "cells": cell_times, "cells_resumed": len(skipped),
                "cells_failed": len(failed), "wall_s": round(time.perf_counter() - started, 1),
                "peak_rss_mb": peak_rss_mb(), "finished_at": P.utc_timestamp()})
        return RunSummary(folder, trained, skipped, failed, rows, comp, files, ref)


# ---------------------------------------------------------------------------------------------
# the results folder


#: what differs between two invocations of the same run without changing what it trained
_VOLATILE_CONFIG = ("updated_at", "command", "data_report", "machine", "machine_info")


def _check_folder(folder: Path, run_cfg: dict, fingerprint: str, fresh: bool) -> None:
    cfg_path = folder / R.CONFIG_FILE
    if fresh and folder.exists():
        for name in (R.RUNS_FILE, R.CONFIG_FILE, R.SPLITS_FILE, R.COMPARISON_FILE, "failures.json", "curves.png", TIMINGS_FILE,
                     LEARNING_CURVES_FILE, "reference_check.json", "table.md", "table.tex", "table.csv",
                     "report.html"):
            (folder / name).unlink(missing_ok=True)
        preds = folder / R.PREDS_DIR
        if preds.is_dir():
            for f in preds.glob("*.safetensors"):
                f.unlink()
        PR.discard(folder)
        CK.discard(folder)
        return
    if cfg_path.exists():
        old = R.read_json_object(cfg_path)
        if old.get("pipeline") != run_cfg["pipeline"]:
            raise RunError(f"{folder} holds results of pipeline version {old.get('pipeline') or '0.1 (epoch budgets)'}; "
                           f"this is {run_cfg['pipeline']}, whose cells are not comparable with them. Rerun with "
                           "--fresh to discard them, or pick another --out")
        if old.get("fingerprint") != fingerprint:
            diff = {k: (old.get(k), run_cfg.get(k)) for k in FINGERPRINT_KEYS if old.get(k) != run_cfg.get(k)}
            desc = ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in ((k, *v) for k, v in diff.items()))
            raise RunError(f"{folder} holds results of another configuration ({desc or 'older format'}); "
                           "rerun with --fresh to discard them, or pick another --out")


def _check_source(folder: Path, source_id: str) -> None:
    """Refuse to mix cells trained on different data under one data id (e.g. a new generator)."""
    cfg_path = folder / R.CONFIG_FILE
    if not source_id or not cfg_path.exists() or not R.load_runs(folder):
        return
    old = R.read_json_object(cfg_path).get("source_id")
    if old and old != source_id:
        raise RunError(f"{folder}: the data changed since the finished cells were trained (source content "
                       f"{old[:12]} -> {source_id[:12]}); rerun with --fresh or pick another --out")


def _write_split(folder: Path, manifest_json) -> None:
    """Write splits.json; refuse to mix cells trained on different splits."""
    text = manifest_json if isinstance(manifest_json, str) else json.dumps(manifest_json, indent=2)
    path = folder / R.SPLITS_FILE
    if path.exists() and R.load_runs(folder):
        old = R.read_json_object(path)
        new = json.loads(text)
        if old.get("sha256") and new.get("sha256") and old["sha256"] != new["sha256"]:
            raise RunError(f"{path}: the split changed since the finished cells were trained "
                           f"(sha256 {old['sha256'][:12]} -> {new['sha256'][:12]}); rerun with --fresh")
    atomic_write_text(path, text if text.endswith("\n") else text + "\n")


def summary_line(s: RunSummary) -> str:
    n = len(s.trained) + len(s.skipped)
    parts = [f"{n} model x seed cells ({len(s.trained)} trained, {len(s.skipped)} resumed"]
    if s.failed:
        parts[0] += f", {len(s.failed)} FAILED: see {s.folder / 'failures.json'}"
    parts[0] += ")"
    return f"Results in {s.folder}/ (table.md, table.tex, table.csv, runs.jsonl, splits.json, config.json, curves.png, learning_curves.png): " + parts[0]


__all__ = ["RunConfig", "RunSummary", "RunError", "CellJob", "CellFailure", "LocalExecutor", "make_executor",
           "run_benchmark", "summary_line",
           "DEFAULT_MODELS"]
