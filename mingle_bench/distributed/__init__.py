"""Scale-out on Ray: model x seed cells, Optuna workers and embedding shards on a Ray cluster.

``--executor ray`` (``run``, ``tune``, ``reproduce``) sends the work that the local executor
does in this process to Ray tasks and actors; docs/distributed.md has the model, the cluster
recipes and what happens when a worker dies. The pieces:

* :mod:`mingle_bench.distributed.cluster`: :func:`connect` (join ``--ray-address``,
  ``$RAY_ADDRESS``, or start a local Ray), the driver/worker version check, the per-cell
  resources (``MINGLE_RAY_CPUS_PER_CELL``) and :class:`ClusterError`;
* :mod:`mingle_bench.distributed.encoding`: :class:`ShardedEncoder`, an encoder whose cache
  misses are embedded by Ray actors (one model load per actor);
* :mod:`mingle_bench.distributed.cells`: :class:`~mingle_bench.distributed.cells.RayExecutor`,
  the cell executor (``runner.make_executor("ray")``), and the executor protocol's
  ``CellJob`` / ``CellFailure``.

Layering: this package and its ``cluster`` and ``encoding`` modules sit below the pipeline
facade (``pipeline.open_encoder`` wraps an encoder in :class:`ShardedEncoder`), so they import
only the bottom modules and the encoders; ``cells`` imports the facade (it runs
``pipeline.train_cell`` on the workers) and is imported by the runner and tuning only.
Ray itself is imported inside functions: ``import mingle_bench`` and every local command work
without it (``pip install -e '.[distributed]'`` installs it).
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"ClusterError": "mingle_bench.distributed.cluster", "connect": "mingle_bench.distributed.cluster",
            "ShardedEncoder": "mingle_bench.distributed.encoding"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # lazy: importing the package costs neither torch nor ray
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mingle_bench.distributed' has no attribute {name!r}")
