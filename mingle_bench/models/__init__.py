"""Models: MINGLE and its ablations, shared layers, the registry; baselines register on import.

Importing this package imports every model module, so ``list_models()`` sees them all.
"""
from __future__ import annotations

import importlib
import pkgutil

from mingle_bench.models.base import EHRModel
from mingle_bench.models.registry import get_model, list_models, register_model

__all__ = ["EHRModel", "get_model", "list_models", "register_model"]

_SKIP = {"base", "registry", "layers", "toy", "sequence", "profiling"}


def _import_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _SKIP and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    import mingle_bench.baselines as baselines

    for info in pkgutil.iter_modules(baselines.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"mingle_bench.baselines.{info.name}")


_import_all()
