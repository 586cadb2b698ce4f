"""Experiment tracking of a run's cells (``mingle-bench run --tracker mlflow|tensorboard|none``).

Every model x seed cell the run trains is logged as it trains:

- its **parameters**: model, seed, split seed, input hash, the run's budget, monitor, encoder,
  note policy and protocol, and every hyperparameter (``hp.<name>``);
- its **validation curve**, live: the trainer's evaluation callback (the ``on_eval`` that
  :meth:`mingle_bench.progress.CellProgress.start_cell` returns) is wrapped, so each evaluation
  logs every validation metric (``val_<metric>``) at its optimiser step. A cell trained where no
  evaluation reaches this process (a solver fit, a Ray worker without progress events) gets the
  curve of its run record instead;
- its **final metrics**: the test metrics (``test_<metric>``), the validation metrics at the
  best step (``best_val_<metric>``), ``best_step``, ``steps_run`` and ``train_s``.

Backends:

- ``mlflow`` (extra ``mingle-bench[mlflow]``): one MLflow run per cell, named ``<model>-seed<seed>``
  and tagged with the results folder, in the experiment ``<task>/<data-id>``. The store is
  ``$MLFLOW_TRACKING_URI`` when set, else a local SQLite store in the results folder,
  ``sqlite:///<folder>/mlruns/mlflow.db`` (artifacts in ``<folder>/mlruns/artifacts``): MLflow 3
  refuses its plain-file store unless opted in, and recommends a database. Browse it with
  ``mlflow ui --backend-store-uri sqlite:///<folder>/mlruns/mlflow.db`` (the UI comes with the
  full ``mlflow`` package). A cell that fails ends its MLflow run as ``FAILED``; an interrupted
  run leaves ``KILLED``.
- ``tensorboard`` (extra ``mingle-bench[tensorboard]``): event files in
  ``<folder>/tensorboard/<model>-<seed>/`` through :class:`torch.utils.tensorboard.SummaryWriter`
  (scalars ``val/<metric>`` by step; the parameters and test metrics in the HParams tab). A cell
  trained again replaces its folder. Browse with ``tensorboard --logdir <folder>/tensorboard``.

Tracking never changes what is trained or recorded: ``tracker`` is not part of the run's
fingerprint or of any input hash. A failure to log (a full disk, a store that went away) is one
warning line, after which that cell is no longer tracked; the training goes on.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from mingle_bench.pipeline import RunError

#: the values of ``--tracker``
TRACKERS: tuple[str, ...] = ("none", "mlflow", "tensorboard")
#: tracker -> (the module it needs, the extra that installs it)
_NEEDS = {"mlflow": ("mlflow", "mlflow"), "tensorboard": ("tensorboard", "tensorboard")}
#: run settings logged as parameters of every cell
RUN_PARAMS = ("task", "data", "data_id", "encoder", "max_steps", "eval_every", "patience", "monitor", "notes",
              "graph_scope", "protocol", "precision", "split")


def check_tracker(name: str) -> str:
    """``name`` if it is a known tracker whose package is installed; else a :class:`RunError`
    naming ``--tracker`` and the extra to install."""
    if name not in TRACKERS:
        raise RunError(f"--tracker {name!r}: expected one of {', '.join(TRACKERS)}")
    if name in _NEEDS:
        module, extra = _NEEDS[name]
        if importlib.util.find_spec(module) is None:
            raise RunError(f"--tracker {name} needs the {module} package: pip install 'mingle-bench[{extra}]'")
    return name


def open_tracker(name: str, folder: str | Path, run_cfg: Mapping[str, Any]) -> "Tracker":
    """The tracker called ``name`` for the results folder ``folder`` of a run whose settings are
    ``run_cfg`` (the runner's fingerprinted configuration); a context manager. Nothing is
    created until the first cell starts."""
    check_tracker(name)
    if name == "mlflow":
        return MlflowTracker(Path(folder), run_cfg)
    if name == "tensorboard":
        return TensorBoardTracker(Path(folder), run_cfg)
    return Tracker(Path(folder), run_cfg)


def _numbers(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """The finite numeric entries of a metrics dict."""
    out = {}
    for k, v in (metrics or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
            out[str(k)] = float(v)
    return out


class Tracker:
    """The tracker protocol, and ``--tracker none`` (logs nothing).

    ``with open_tracker(...) as tracker``: pass ``tracker.watch(progress, jobs)`` to the executor
    in place of the progress display (its ``start_cell`` then also starts the cell's tracked run
    and returns an ``on_eval`` that logs each evaluation), call :meth:`log_cell` with each
    finished cell's run record, and leaving the block ends the runs of cells that never
    finished (failed, or interrupted).
    """

    name = "none"

    def __init__(self, folder: Path, run_cfg: Mapping[str, Any]):
        self.folder = folder
        self.run_cfg = dict(run_cfg)
        self._jobs: dict[tuple[str, int], Any] = {}
        self._live: dict[tuple[str, int], int] = {}  # cells started here -> evaluations logged live
        self._broken = False

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001 - the context protocol
        self.close(interrupted=exc_type is not None)

    def watch(self, progress: Any, jobs: Iterable[Any] = ()) -> Any:
        """``progress`` (a :class:`mingle_bench.progress.CellProgress`) with its ``start_cell``
        wrapped to track each cell; ``jobs`` (``runner.CellJob``) give the cells' hyperparameters
        and input hashes. ``--tracker none`` returns ``progress`` itself."""
        if self.name == "none":
            return progress
        self._jobs.update({(j.model, int(j.seed)): j for j in jobs})
        return _Watched(progress, self)

    def log_cell(self, record: Mapping[str, Any]) -> None:
        """Log a finished cell from its ``runs.jsonl`` record and end its tracked run."""
        if self.name == "none" or self._broken:
            return
        key = (record["model"], int(record["seed"]))
        try:
            if key not in self._live:
                self._begin(*key)
                self._live[key] = 0
            if not self._live[key]:  # nothing came live: the record's curve
                monitor = record.get("monitor_used") or self.run_cfg.get("monitor", "aupr")
                for step, value in record.get("curve") or []:
                    self._evaluation(key, int(step), _numbers({monitor: value}))
            self._finish(key, record)
            self._live.pop(key, None)
        except Exception as exc:  # noqa: BLE001 - tracking must not lose a trained cell
            self._warn(exc)

    def close(self, interrupted: bool = False) -> None:
        """End the tracked runs of cells that started but never finished."""
        for key in list(self._live):
            try:
                self._abandon(key, "KILLED" if interrupted else "FAILED")
            except Exception:  # noqa: BLE001 - closing after a failure: best effort
                pass
        self._live.clear()

    # -- what a backend implements ------------------------------------------------------------

    def _begin(self, model: str, seed: int) -> None:
        """Start the cell's tracked run and log its parameters."""

    def _evaluation(self, key: tuple[str, int], step: int, metrics: dict[str, float]) -> None:
        """Log one evaluation's validation metrics at ``step``."""

    def _finish(self, key: tuple[str, int], record: Mapping[str, Any]) -> None:
        """Log the cell's final metrics and end its run."""

    def _abandon(self, key: tuple[str, int], status: str) -> None:
        """End the run of a cell that did not finish (``FAILED`` or ``KILLED``)."""

    # -- shared -------------------------------------------------------------------------------

    def params(self, model: str, seed: int) -> dict[str, Any]:
        """The parameters logged for a cell: model, seed, split seed, input hash, the run's
        settings (:data:`RUN_PARAMS`) and the hyperparameters as ``hp.<name>``."""
        job = self._jobs.get((model, seed))
        p: dict[str, Any] = {"model": model, "seed": seed, "split_seed": self.run_cfg.get("split_seed")}
        if job is not None:
            p["input_hash"] = job.input_hash
        p.update({k: self.run_cfg[k] for k in RUN_PARAMS if k in self.run_cfg})
        if job is not None:
            p.update({f"hp.{k}": v for k, v in sorted(job.hparams.items())})
        return p

    def _on_start(self, model: str, seed: int) -> Callable[[int, dict], None]:
        """Start tracking a cell; the callback logs one evaluation."""
        key = (model, int(seed))
        if self._broken:
            return lambda step, vm: None
        try:
            self._begin(*key)
            self._live[key] = 0
        except Exception as exc:  # noqa: BLE001
            self._warn(exc)
            return lambda step, vm: None

        def on_eval(step: int, val_metrics: dict) -> None:
            if self._broken or key not in self._live:
                return
            try:
                self._evaluation(key, int(step), _numbers(val_metrics))
                self._live[key] += 1
            except Exception as exc:  # noqa: BLE001
                self._warn(exc)
        return on_eval

    def _warn(self, exc: Exception) -> None:
        import sys

        if not self._broken:
            print(f"mingle-bench: warning: --tracker {self.name}: {type(exc).__name__}: {exc}; tracking stopped "
                  "(training goes on)", file=sys.stderr)
        self._broken = True


class _Watched:
    """A progress display whose ``start_cell`` also starts tracking the cell (every other
    attribute is the display's)."""

    def __init__(self, progress: Any, tracker: Tracker):
        self._progress, self._tracker = progress, tracker

    @property
    def enabled(self) -> bool:  # someone watches: a Ray executor sends its workers' evaluations
        return True

    def start_cell(self, model: str, seed: int, max_steps: int, **kw: Any) -> Callable[[int, dict], None]:
        shown = self._progress.start_cell(model, seed, max_steps, **kw)
        tracked = self._tracker._on_start(model, seed)

        def on_eval(step: int, val_metrics: dict) -> None:
            shown(step, val_metrics)
            tracked(step, val_metrics)
        return on_eval

    def __getattr__(self, name: str) -> Any:
        return getattr(self._progress, name)


class MlflowTracker(Tracker):
    """One MLflow run per cell (module docstring), through :class:`mlflow.tracking.MlflowClient`."""

    name = "mlflow"

    def __init__(self, folder: Path, run_cfg: Mapping[str, Any]):
        super().__init__(folder, run_cfg)
        import os

        self.store = folder.resolve() / "mlruns"
        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.store / 'mlflow.db'}"
        self.experiment = f"{self.run_cfg.get('task')}/{self.run_cfg.get('data_id') or self.run_cfg.get('data')}"
        self._client = None
        self._experiment_id: str | None = None
        self._runs: dict[tuple[str, int], str] = {}

    def client(self):  # noqa: ANN201 - mlflow's MlflowClient, imported lazily
        """The client and the experiment, created on first use (quietly: MLflow and Alembic log
        their database migrations at INFO)."""
        if self._client is None:
            for name in ("mlflow", "alembic"):
                logging.getLogger(name).setLevel(logging.WARNING)
            from mlflow.tracking import MlflowClient

            local = self.uri.startswith("sqlite:///") and self.uri.endswith(str(self.store / "mlflow.db"))
            if local:
                self.store.mkdir(parents=True, exist_ok=True)
            client = MlflowClient(self.uri)
            exp = client.get_experiment_by_name(self.experiment)
            if exp is None:
                self._experiment_id = client.create_experiment(
                    self.experiment, artifact_location=(self.store / "artifacts").as_uri() if local else None,
                    tags={"mingle.task": str(self.run_cfg.get("task")), "mingle.data_id": str(self.run_cfg.get("data_id"))})
            else:
                self._experiment_id = exp.experiment_id
            self._client = client
        return self._client

    def _begin(self, model: str, seed: int) -> None:
        from mlflow.entities import Param

        client = self.client()
        job = self._jobs.get((model, seed))
        tags = {"mingle.folder": str(self.folder.resolve()), "mingle.model": model, "mingle.seed": str(seed)}
        if job is not None:
            tags["mingle.input_hash"] = job.input_hash
        run = client.create_run(self._experiment_id, run_name=f"{model}-seed{seed}", tags=tags)
        self._runs[(model, seed)] = run.info.run_id
        params = [Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v))
                  for k, v in self.params(model, seed).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            client.log_batch(run.info.run_id, params=params[i:i + 100])

    def _log(self, key: tuple[str, int], metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        if metrics:
            now = int(time.time() * 1000)
            self.client().log_batch(self._runs[key], metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def _evaluation(self, key: tuple[str, int], step: int, metrics: dict[str, float]) -> None:
        self._log(key, {f"val_{k}": v for k, v in metrics.items()}, step)

    def _finish(self, key: tuple[str, int], record: Mapping[str, Any]) -> None:
        best = int(record.get("best_step") or 0)
        final = {f"test_{k}": v for k, v in _numbers(record.get("metrics")).items()}
        final.update({f"best_val_{k}": v for k, v in _numbers(record.get("val_metrics")).items()})
        final.update(_numbers({k: record.get(k) for k in ("best_step", "steps_run", "train_s", "n_params")}))
        self._log(key, final, best)
        run_id = self._runs.pop(key)
        client = self.client()
        for k in ("stopped", "impl", "device", "preds_sha256"):
            if record.get(k) is not None:
                client.set_tag(run_id, f"mingle.{k}", str(record[k]))
        client.set_terminated(run_id, "FINISHED")

    def _abandon(self, key: tuple[str, int], status: str) -> None:
        run_id = self._runs.pop(key, None)
        if run_id is not None:
            self.client().set_terminated(run_id, status)


class TensorBoardTracker(Tracker):
    """Event files per cell under ``<folder>/tensorboard/<model>-<seed>/`` (module docstring)."""

    name = "tensorboard"

    def __init__(self, folder: Path, run_cfg: Mapping[str, Any]):
        super().__init__(folder, run_cfg)
        self.root = folder / "tensorboard"
        self._writers: dict[tuple[str, int], Any] = {}

    def _begin(self, model: str, seed: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        logdir = self.root / f"{model}-{seed}"
        if logdir.exists():  # an earlier, unfinished or superseded training of this cell
            shutil.rmtree(logdir)
        writer = SummaryWriter(str(logdir))
        params = self.params(model, seed)
        writer.add_text("params", "\n".join(f"    {k}: {v}" for k, v in params.items()))
        self._writers[(model, seed)] = writer

    def _evaluation(self, key: tuple[str, int], step: int, metrics: dict[str, float]) -> None:
        writer = self._writers[key]
        for k, v in metrics.items():
            writer.add_scalar(f"val/{k}", v, step)

    def _finish(self, key: tuple[str, int], record: Mapping[str, Any]) -> None:
        writer = self._writers.pop(key)
        try:
            hp = {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v)
                  for k, v in self.params(*key).items() if v is not None}
            final = {f"test/{k}": v for k, v in _numbers(record.get("metrics")).items()}
            final.update(_numbers({k: record.get(k) for k in ("best_step", "steps_run", "train_s")}))
            writer.add_hparams(hp, final, run_name=".")  # ".": in the cell's own folder, beside its curve
        finally:
            writer.close()

    def _abandon(self, key: tuple[str, int], status: str) -> None:
        writer = self._writers.pop(key, None)
        if writer is not None:
            writer.add_text("status", status)
            writer.close()
