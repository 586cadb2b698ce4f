"""The executor protocol's job and failure types, and :class:`RayExecutor`: cells on a Ray cluster.

An executor takes the jobs and the prepared data and yields ``(job, outcome)`` as cells
finish, ``outcome`` being a :class:`mingle_bench.pipeline.CellOutcome` or a
:class:`CellFailure`; the driver (``runner.run_benchmark``) alone writes results, under its
folder lock. :class:`RayExecutor` puts the ``TaskData`` into Ray's object store once and runs
each cell as a Ray task calling :func:`mingle_bench.pipeline.train_cell`:

* **resources**: ``num_cpus`` = the cell's torch threads (:func:`~mingle_bench.distributed.cluster.cell_threads`:
  ``$MINGLE_RAY_CPUS_PER_CELL``, else the driver's ``torch.get_num_threads()``, which is what
  the local executor trains with), ``num_gpus=1`` when the device is CUDA. The task sets
  ``torch.set_num_threads`` to that count (Ray workers start with ``OMP_NUM_THREADS=1``), so
  on the same CPU a cell's metrics and predictions are bit-identical to a local run's.
* **failures**: a cell that raises, a worker that dies (``WorkerCrashedError``, the OOM
  killer), a cancelled task or a lost node becomes a :class:`CellFailure` naming the cell; the
  task is not retried (``max_retries=0``); the runner records it in ``failures.json`` and a
  rerun trains it (finished cells are skipped by their input hash).
* **progress**: each running cell gets its own line; the workers send their evaluations to a
  small actor the driver drains while it waits, so the lines move as in a local run.
* **interrupt**: closing the generator (Ctrl-C in the driver, an error in the runner) cancels
  the outstanding tasks.
"""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from mingle_bench import pipeline as P
from mingle_bench.distributed.cluster import ClusterError, cell_threads, connect, import_ray


@dataclass(frozen=True)
class CellJob:
    """One model x seed cell to train, with its hyperparameters and identity."""

    model: str
    seed: int
    hparams: dict
    input_hash: str
    budget: Any = None  # this cell's own budget (a tuned eval_every), else the run's


@dataclass(frozen=True)
class CellFailure:
    error: str
    traceback: str


#: seconds between drains of the workers' progress events while waiting for cells
POLL_S = 0.5


def _train_cell_task(model, seed, data, hparams, device, budget, monitor, threads, events, key):
    """One cell on a Ray worker: the local executor's thread count, then ``pipeline.train_cell``."""
    import torch

    torch.set_num_threads(int(threads))
    on_eval = None
    if events is not None:
        events.put.remote(("start", key, None, None))

        def on_eval(step, val_metrics):
            events.put.remote(("eval", key, int(step), {k: float(v) for k, v in val_metrics.items()
                                                         if isinstance(v, (int, float))}))
    try:
        return P.train_cell(model, seed, data, hparams, device, budget, monitor, on_eval)
    finally:
        if events is not None:
            # the puts above are fire-and-forget; one waited-for put after them (an actor runs one
            # caller's calls in order) makes sure they have all landed before the result is ready,
            # so the driver's drain after the cell finishes sees its last evaluation
            import ray

            ray.get(events.put.remote(("end", key, None, None)))


class _Events:
    """Progress events of the running cells (an actor without resources; the driver drains it)."""

    def __init__(self):
        self.items: list = []

    def put(self, item) -> None:
        self.items.append(item)

    def drain(self) -> list:
        out, self.items = self.items, []
        return out


def describe_failure(ray, exc: BaseException, job: CellJob) -> CellFailure:
    """A :class:`CellFailure` naming the cell and what happened on the worker."""
    ex = ray.exceptions
    where = f"{job.model} seed {job.seed} on Ray"
    if isinstance(exc, getattr(ex, "OutOfMemoryError", ())):
        err = f"{where}: the worker ran out of memory and was killed (OutOfMemoryError)"
    elif isinstance(exc, ex.WorkerCrashedError):
        err = f"{where}: the worker process died (WorkerCrashedError: killed, segfault or its node lost)"
    elif isinstance(exc, ex.TaskCancelledError):
        err = f"{where}: the task was cancelled (TaskCancelledError)"
    elif isinstance(exc, getattr(ex, "NodeDiedError", ())) or isinstance(exc, getattr(ex, "ObjectLostError", ())):
        err = f"{where}: its node died ({type(exc).__name__})"
    elif isinstance(exc, ex.RayTaskError):
        cause = getattr(exc, "cause", None)
        if cause is not None and not isinstance(cause, ex.RayError):
            return CellFailure(f"{type(cause).__name__}: {cause}",
                               f"raised on a Ray worker ({where}):\n{str(exc)[-4000:]}")
        err = f"{where}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    else:
        err = f"{where}: {type(exc).__name__}: {exc}"
    return CellFailure(err, "".join(traceback.format_exception_only(type(exc), exc))[-4000:])


class RayExecutor:
    """Trains the cells as Ray tasks, as many at once as the cluster's CPUs (or GPUs) allow.

    ``address``: the cluster to join (``None``: ``$RAY_ADDRESS``, else a local Ray);
    :func:`~mingle_bench.distributed.cluster.connect` runs at the first :meth:`run`. See the
    module docstring for the resources, failures and progress.
    """

    name = "ray"
    #: what each Ray task runs (a test may substitute a module-level function of the same signature)
    cell_function = staticmethod(_train_cell_task)

    def __init__(self, address: str | None = None):
        try:
            import_ray()  # fail before any data loads when Ray is missing
        except ClusterError as exc:
            raise P.RunError(str(exc)) from None
        self.address = address

    def run(self, jobs: Sequence[CellJob], data, *, device: str, budget, monitor: str, progress
            ) -> Iterator[tuple[CellJob, "P.CellOutcome | CellFailure"]]:
        jobs = list(jobs)
        if not jobs:
            return
        try:
            ray = connect(self.address)
            threads, warning = cell_threads(ray)
        except ClusterError as exc:
            raise P.RunError(str(exc)) from None
        if warning:
            progress.log(f"[yellow]{warning}[/yellow]")
        gpu = str(device).startswith("cuda")
        task = ray.remote(self.cell_function).options(num_cpus=threads, num_gpus=1 if gpu else 0, max_retries=0,
                                                    retry_exceptions=False)
        # live progress costs one small actor (a worker process): only when someone watches
        events = ray.remote(_Events).options(num_cpus=0).remote() if getattr(progress, "enabled", True) else None
        data_ref = ray.put(data)  # once; every task reads the same object
        pending = {}
        for i, job in enumerate(jobs):
            ref = task.remote(job.model, job.seed, data_ref, job.hparams, device, job.budget or budget, monitor,
                              threads, events, i)
            pending[ref] = i
        callbacks: dict[int, object] = {}
        concurrent = hasattr(progress, "finish_cell")

        def pump() -> None:
            if events is None:
                return
            try:
                items = ray.get(events.drain.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - progress only
                return
            for kind, i, step, vm in items:
                if kind == "start" and i not in callbacks:
                    job = jobs[i]
                    callbacks[i] = (progress.start_cell(job.model, job.seed, budget.max_steps, concurrent=True)
                                    if concurrent else progress.start_cell(job.model, job.seed, budget.max_steps))
                elif kind == "eval" and i in callbacks:
                    callbacks[i](step, vm)
            if hasattr(progress, "running"):
                progress.running(len([j for j in callbacks if j in pending.values()]))

        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                pump()
                for ref in done:
                    i = pending.pop(ref)
                    job = jobs[i]
                    try:
                        out = ray.get(ref)
                    except (KeyboardInterrupt, SystemExit):
                        raise
                    except Exception as exc:  # noqa: BLE001 - every failure of one cell becomes its CellFailure
                        if os.environ.get("MINGLE_DEBUG"):
                            raise
                        out = describe_failure(ray, exc, job)
                    if concurrent:
                        progress.finish_cell(job.model, job.seed)
                    callbacks.pop(i, None)
                    yield job, out
            if hasattr(progress, "running"):
                progress.running(0)
        finally:
            for ref in pending:  # Ctrl-C, or the runner stopped early: stop the cells still queued or running
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - already finished or gone
                    pass
            if events is not None:
                try:
                    ray.kill(events)
                except Exception:  # noqa: BLE001
                    pass
            del data_ref


__all__ = ["CellJob", "CellFailure", "RayExecutor", "describe_failure"]
