"""Task registry: ``get_task(name)`` and ``list_tasks()``.

Adding a task means adding one file to this package with a :class:`~.base.Task` subclass
decorated by :func:`register_task`; every module of the package is imported on first lookup.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

_REGISTRY: dict[str, type] = {}
_NON_TASK_MODULES = {"base", "registry", "phenotype_defs"}


def register_task(cls: type) -> type:
    """Class decorator: register a task under its ``name``."""
    name = getattr(cls, "name", "")
    if not name:
        raise ValueError(f"{cls.__name__} has no task name")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"task name {name!r} is registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
    _REGISTRY[name] = cls
    return cls


def _discover() -> None:
    from . import __path__ as pkg_path

    for mod in pkgutil.iter_modules(pkg_path):
        if mod.name not in _NON_TASK_MODULES and not mod.name.startswith("_"):
            importlib.import_module(f"{__package__}.{mod.name}")


def list_tasks() -> list[str]:
    """Names of all registered tasks, sorted."""
    _discover()
    return sorted(_REGISTRY)


def get_task(name: str, **kwargs: Any):
    """An instance of the task registered as ``name`` (kwargs go to its constructor)."""
    _discover()
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)
