"""Name -> model registry: each entry holds the model's facts.

A model module decorates its class with :func:`register_model`; the entry (:class:`ModelEntry`)
holds the registered name, the class to build, the display name used in tables, the family and
the fixed switches of a variant. The class's merged ``default_hparams`` and ``search_ranges``
(see :mod:`mingle_bench.models.base`) travel with it.

This module imports no model: what is registered is what has been imported. The explicit list
of model modules lives above ``models/`` and ``baselines/`` in :mod:`mingle_bench.zoo`, which
imports them all and re-exports the lookups below; import ``get_model``, ``list_models``,
``model_family`` and ``display_name`` from there.

Families (:data:`FAMILIES`):

* ``mingle``: MINGLE and its ablations / fusion variants;
* ``baseline``: the paper's baselines (RETAIN, GRAM, HyperGAT, HypEHR);
* ``reference``: simple reference models outside the paper (logistic regression, note MLP,
  set Transformer).

A *variant* is the same class under another name with some hyperparameters fixed, e.g. the
ablation ``mingle-no-notes`` is :class:`~mingle_bench.models.mingle.Mingle` with
``use_notes=False``. :func:`get_model` returns a subclass whose ``default_hparams`` carry the
overrides and whose ``search_space`` no longer proposes them, so ``get_model(name)(data, **hp)``
is the one way to build any registered model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from mingle_bench.plugins import load_group

T = TypeVar("T", bound=type)

FAMILIES: tuple[str, ...] = ("mingle", "baseline", "reference")


@dataclass(frozen=True)
class ModelEntry:
    """One registered name and its facts."""

    name: str
    cls: type                                   # the (variant) class: cls(data, **hparams)
    display: str                                # the name in tables ("MINGLE", "RETAIN", ...)
    family: str                                 # one of FAMILIES
    fixed: dict[str, Any] = field(default_factory=dict)   # a variant's fixed hyperparameters


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, family: str | None = None, display: str | None = None,
                   **variant_overrides: Any) -> Callable[[T], T]:
    """Class decorator: register ``cls`` as ``name`` (with ``variant_overrides`` fixed).

    ``family`` defaults to the class attribute ``family``; ``display`` to ``name``. Stack it to
    register several variants of one class, or call it on an imported class to register a
    variant elsewhere::

        @register_model("mingle-no-notes", use_notes=False, display="MINGLE w/o note semantics")
        @register_model("mingle", display="MINGLE")
        class Mingle(EHRModel): ...

        register_model("hypehr", family="baseline", display="HypEHR",
                       use_concept=False, use_notes=False)(Mingle)

    A name can be registered once; registering it again raises ``ValueError``.
    """
    if not name or name != name.strip().lower():
        raise ValueError(f"model name must be non-empty lower case, got {name!r}")

    def decorator(cls: T) -> T:
        fam = family or getattr(cls, "family", "")
        if fam not in FAMILIES:
            raise ValueError(f"model {name!r}: family must be one of {FAMILIES}, got {fam!r}")
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered by {_REGISTRY[name].cls.__qualname__}")
        unknown = set(variant_overrides) - set(getattr(cls, "default_hparams", {}))
        if unknown:
            raise ValueError(f"variant {name!r} overrides unknown hyperparameters {sorted(unknown)} of {cls.__name__}")
        entry = ModelEntry(name, _make_variant(cls, name, fam, display or name, variant_overrides),
                           display or name, fam, dict(variant_overrides))
        _REGISTRY[name] = entry
        return cls

    return decorator


def _make_variant(cls: type, name: str, family: str, display: str, overrides: dict[str, Any]) -> type:
    fixed = dict(overrides)
    attrs = {
        "name": name, "family": family, "display": display, "variant_overrides": fixed,
        "__module__": cls.__module__, "__doc__": cls.__doc__, "__qualname__": f"{cls.__qualname__}[{name}]",
    }
    variant = type(f"{cls.__name__}[{name}]", (cls,), attrs)
    # set after creation, so EHRModel.__init_subclass__ does not merge them over the parent's again
    variant.default_hparams = {**cls.default_hparams, **fixed}
    variant.search_ranges = {k: r for k, r in getattr(cls, "search_ranges", {}).items() if k not in fixed}
    return variant


def _entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        load_group("mingle_bench.models")  # installed plugins register on the first miss
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())} "
                         "(every model is registered once mingle_bench.zoo is imported)") from None


def get_model(name: str) -> type:
    """The model class registered as ``name`` (build it with ``cls(data, **hparams)``)."""
    return _entry(name).cls


def model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``: class, display name, family, fixed switches."""
    return _entry(name)


def list_models(family: str | None = None) -> list[str]:
    """Registered model names, sorted; only those of ``family`` when given."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; families: {', '.join(FAMILIES)}")
    load_group("mingle_bench.models")
    return sorted(n for n, e in _REGISTRY.items() if family is None or e.family == family)


def model_family(name: str) -> str:
    """``"mingle"``, ``"baseline"`` or ``"reference"`` (``ValueError`` for an unknown name)."""
    return _entry(name).family


def display_name(name: str) -> str:
    """The model's name in tables; an unregistered name is returned as is."""
    entry = _REGISTRY.get(name)
    return name if entry is None else entry.display
