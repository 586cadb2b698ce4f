"""Task registry: ``get_task(name)`` and ``list_tasks()``, the one list of tasks.

This module imports no task: each task module registers itself with :func:`register_task`, and
the package's ``__init__`` imports every task module from one explicit list, so a lookup through
``mingle_bench.tasks`` (or any of its modules) sees them all. Third-party tasks register the same
way from a plugin (entry-point group ``mingle_bench.tasks``, loaded on the first lookup, or
``--plugin PATH.py``; :mod:`mingle_bench.plugins`). The CLI's ``--task`` choices, the oracle's
task list and the docs' task table read :func:`list_tasks`.
"""
from __future__ import annotations

from typing import Any

from mingle_bench.plugins import load_group

_REGISTRY: dict[str, type] = {}


def register_task(cls: type) -> type:
    """Class decorator: register a task under its ``name``."""
    name = getattr(cls, "name", "")
    if not name:
        raise ValueError(f"{cls.__name__} has no task name")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"task name {name!r} is registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
    _REGISTRY[name] = cls
    return cls


def list_tasks() -> list[str]:
    """Names of all registered tasks (plugins' included), sorted."""
    load_group("mingle_bench.tasks")
    return sorted(_REGISTRY)


def get_task(name: str, **kwargs: Any):
    """An instance of the task registered as ``name`` (kwargs go to its constructor)."""
    load_group("mingle_bench.tasks")
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)
