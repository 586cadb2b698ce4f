"""Name -> model class registry.

Every model module decorates its class with :func:`register_model`; importing
:mod:`mingle_bench.models` imports every model module (including ``mingle_bench.baselines``),
so :func:`list_models` sees them all. Adding a model means adding one file that registers itself.

A *variant* is the same class under another name with some hyperparameters fixed, e.g. the
ablation ``mingle-no-notes`` is :class:`~mingle_bench.models.mingle.Mingle` with
``use_notes=False``. :func:`get_model` returns a subclass whose ``default_hparams`` carry the
overrides and whose ``search_space`` no longer proposes them, so ``get_model(name)(data, **hp)``
is the one way to build any registered model.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

T = TypeVar("T", bound=type)

_REGISTRY: dict[str, type] = {}


def register_model(name: str, **variant_overrides: Any) -> Callable[[T], T]:
    """Class decorator: register ``cls`` as ``name`` (with ``variant_overrides`` fixed).

    Stack it to register several variants of one class::

        @register_model("hypehr", use_concept=False, use_notes=False)
        @register_model("mingle")
        class Mingle(EHRModel): ...
    """
    if not name or name != name.strip().lower():
        raise ValueError(f"model name must be non-empty lower case, got {name!r}")

    def decorator(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name].__qualname__ != _variant_qualname(cls, name, variant_overrides):
            raise ValueError(f"model name {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        unknown = set(variant_overrides) - set(getattr(cls, "default_hparams", {}))
        if unknown:
            raise ValueError(f"variant {name!r} overrides unknown hyperparameters {sorted(unknown)} of {cls.__name__}")
        _REGISTRY[name] = _make_variant(cls, name, variant_overrides)
        return cls

    return decorator


def _variant_qualname(cls: type, name: str, overrides: dict) -> str:
    return f"{cls.__qualname__}[{name}]"


def _make_variant(cls: type, name: str, overrides: dict[str, Any]) -> type:
    base_space = cls.search_space
    fixed = dict(overrides)

    def search_space(trial) -> dict:
        return {k: v for k, v in base_space(trial).items() if k not in fixed}

    attrs = {
        "name": name,
        "variant_overrides": fixed,
        "default_hparams": {**cls.default_hparams, **fixed},
        "search_space": staticmethod(search_space),
        "__module__": cls.__module__,
        "__doc__": cls.__doc__,
        "__qualname__": _variant_qualname(cls, name, fixed),
    }
    return type(f"{cls.__name__}[{name}]", (cls,), attrs)


def get_model(name: str) -> type:
    """The model class registered as ``name`` (build it with ``cls(data, **hparams)``)."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}") from None


def list_models() -> list[str]:
    """All registered model names, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def _ensure_loaded() -> None:
    import mingle_bench.models  # noqa: F401  (imports every model module)
