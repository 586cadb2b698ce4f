"""Plugins: third-party models, tasks, data sources and text-encoder backends.

A plugin is a Python module that registers what it brings with the public registration
functions when it is imported:

=====================  ==============================  ==========================================
entry-point group      registers with                  registry
=====================  ==============================  ==========================================
``mingle_bench.models``    ``@register_model(name, ...)``  ``mingle_bench.models.registry``
``mingle_bench.tasks``     ``@register_task``              ``mingle_bench.tasks.registry``
``mingle_bench.sources``   ``register_source(kind, ...)``  ``mingle_bench.data.sources``
``mingle_bench.encoders``  ``register_backend(name, ...)`` ``mingle_bench.encoders.registry``
=====================  ==============================  ==========================================

Two ways in:

* **installed packages** declare an entry point in one of the groups above (``pyproject.toml``:
  ``[project.entry-points."mingle_bench.models"] my_model = "my_pkg.my_model"``). Each group is
  loaded once, the first time its registry is read (:func:`load_group`); the value may name a
  module or an object in it (``my_pkg.my_model:MyModel``), loading it runs the registration;
* **a file or module on the command line**: ``mingle-bench --plugin PATH.py|module <command>``
  (or ``--plugin`` after the command; repeatable), loaded by the CLI before it builds its
  parsers, so the plugin's names are valid ``--models`` / ``--task`` / ``--data`` / ``--encoder``
  values (:func:`load_plugin`).

A plugin that fails to load is one line naming it (:class:`PluginError`, a ``ValueError``); an
entry point of an installed package that fails is a warning on stderr, so one broken package
does not stop every command. This module imports nothing of the package (the registries import it).
"""
from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Sequence

#: the entry-point groups, by registry
GROUPS: dict[str, str] = {"models": "mingle_bench.models", "tasks": "mingle_bench.tasks",
                          "sources": "mingle_bench.sources", "encoders": "mingle_bench.encoders"}

_loaded_groups: set[str] = set()
_loaded_plugins: dict[str, ModuleType] = {}


class PluginError(ValueError):
    """A plugin that cannot be loaded (one line naming it)."""


def load_group(group: str) -> list[str]:
    """Load every entry point of ``group`` (once per process); returns the names loaded now."""
    if group in _loaded_groups:
        return []
    _loaded_groups.add(group)
    from importlib.metadata import entry_points

    names = []
    for ep in entry_points(group=group):
        try:
            ep.load()
        except Exception as exc:  # a broken third-party package must not stop every command
            warnings.warn(f"plugin entry point {ep.name} = {ep.value} ({group}) failed to load: "
                          f"{type(exc).__name__}: {exc}", stacklevel=2)
            continue
        names.append(ep.name)
    return names


def load_plugin(spec: str) -> ModuleType:
    """Import a plugin given as ``PATH.py`` (a file) or a module name (importable from ``sys.path``
    or the current folder), once; its import registers its models, tasks, sources or encoders."""
    if spec in _loaded_plugins:
        return _loaded_plugins[spec]
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise PluginError(f"--plugin {spec}: no such file")
        name = f"mingle_bench_plugin_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path.resolve())
    else:
        if str(Path.cwd()) not in sys.path and "" not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        try:
            module_spec = importlib.util.find_spec(spec)
        except (ImportError, ValueError) as exc:
            raise PluginError(f"--plugin {spec}: {exc}") from None
        name = spec
        if module_spec is None:
            raise PluginError(f"--plugin {spec}: no such file or importable module")
    if name in sys.modules:  # already imported (e.g. by a test): its registrations are done
        _loaded_plugins[spec] = sys.modules[name]
        return sys.modules[name]
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[name]
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise PluginError(f"--plugin {spec}: {type(exc).__name__}: {exc}") from exc
    _loaded_plugins[spec] = module
    return module


def take_plugin_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``--plugin X`` / ``--plugin=X`` (anywhere on the command line) from the other
    arguments: ``(plugins, rest)``. The CLI loads the plugins before it builds its parsers."""
    plugins, rest = [], []
    it = iter(argv)
    for a in it:
        if a == "--plugin":
            value = next(it, None)
            if value is None:
                raise PluginError("--plugin needs a PATH.py or a module name")
            plugins.append(value)
        elif a.startswith("--plugin="):
            plugins.append(a.split("=", 1)[1])
        elif a == "--":
            rest.append(a)
            rest.extend(it)
        else:
            rest.append(a)
    return plugins, rest


__all__ = ["GROUPS", "PluginError", "load_group", "load_plugin", "take_plugin_args"]
