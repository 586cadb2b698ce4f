"""``load_encoder(spec)``: parse an ``--encoder`` spec and build the encoder.

Spec grammar::

    default                                   bundled all-MiniLM-L6-v2 (alias: minilm)
    hf:PATH[?pooling=mean|max|cls&chunking=tokens|sentence&batching=padded|exact&max_length=N&device=D&dtype=T&batch_tokens=N&precision=P]
    openai:MODEL[?dimensions=N&batch_size=N&max_length=N&max_retries=N&backoff_s=F]
    tfidf[?dim=N&min_df=K&ngram=1|2&max_features=N]   TF-IDF + SVD, fitted on the train split's texts

``default`` takes the ``hf`` options too (e.g. ``default?pooling=max``). ``pooling``: mean over
the tokens (the default), element-wise max over the tokens (new), or the first token;
``chunking=sentence`` embeds each sentence of a note and pools them per note (default
``tokens``: fixed token windows). ``batching=exact`` lets only texts of one token length share a
forward pass, so a text's vector does not depend on what else is embedded with it or on the
cache's history (default ``padded``; :class:`~mingle_bench.encoders.hf.HFEncoder`). All three are
part of the encoder's params, so of the cache key.
``tfidf`` must be fitted before it encodes (:mod:`mingle_bench.encoders.tfidf`).

Options may also be given as keyword arguments (they override the query string).

The backends are one registry (:class:`Backend`, :func:`register_backend`, :func:`list_backends`):
a plugin adds ``NAME:TARGET[?options]`` with a factory (entry-point group
``mingle_bench.encoders`` or ``--plugin``; docs/extending.md).

``precision`` (``fp32`` | ``bf16`` | ``auto``, default ``fp32``) is the compute precision of a
local model (see :mod:`mingle_bench.encoders.hf`). An OpenAI-compatible endpoint computes its
vectors remotely, so it is fp32 only: ``auto`` and ``fp32`` are accepted (``auto`` resolves to
fp32) and ``bf16`` raises ``ValueError``.
"""
from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable

from mingle_bench.encoders.base import Encoder
from mingle_bench.encoders.hf import BATCHINGS, CHUNKINGS, POOLINGS
from mingle_bench.encoders.precision import PRECISIONS
from mingle_bench.plugins import load_group

_HF_OPTIONS = {"pooling": str, "max_length": int, "device": str, "dtype": str, "batch_tokens": int,
               "precision": str, "chunking": str, "batching": str}
_TFIDF_OPTIONS = {"dim": int, "min_df": int, "ngram": int, "max_features": int}
#: options with a closed set of values, checked when the spec is parsed
_CHOICES = {"pooling": POOLINGS, "chunking": CHUNKINGS, "batching": BATCHINGS, "precision": PRECISIONS,
            "ngram": (1, 2)}
#: integer options that must be >= 1
_POSITIVE = ("dim", "min_df", "max_features", "max_length", "batch_tokens", "dimensions", "batch_size")
_OPENAI_OPTIONS = {"dimensions": int, "batch_size": int, "max_length": int, "max_retries": int,
                   "backoff_s": float, "timeout_s": float, "max_request_tokens": int}


@dataclass(frozen=True)
class Backend:
    """One encoder backend, the one registry of ``--encoder`` kinds: ``NAME:TARGET[?options]``
    (``target=True``) or ``NAME[?options]``. ``options`` maps each option to its type;
    ``factory(target, **options)`` builds the :class:`~mingle_bench.encoders.base.Encoder`
    (``None`` for the built-in backends, which :func:`load_encoder` builds itself)."""

    name: str
    usage: str
    options: dict[str, type] = field(default_factory=dict)
    target: bool = True
    factory: Callable[..., Encoder] | None = None


_BACKENDS: dict[str, Backend] = {}


def register_backend(name: str, factory: Callable[..., Encoder] | None = None, *, options: dict[str, type] | None = None,
                     target: bool = True, usage: str | None = None, builtin: bool = False) -> Backend:
    """Register an encoder backend: ``--encoder NAME:TARGET?key=value`` then builds
    ``factory(TARGET, key=value, ...)`` (``target=False``: ``--encoder NAME?key=value`` and
    ``factory("", ...)``). Its ``name`` and ``params`` make the embedding cache key, as for every
    encoder (encoders/base.py). A name is registered once (``ValueError`` otherwise)."""
    if not name or name != name.strip().lower() or any(c in name for c in ":?"):
        raise ValueError(f"encoder backend must be a lower-case name without ':' or '?', got {name!r}")
    if name in _BACKENDS or name == "minilm":
        raise ValueError(f"encoder backend {name!r} is already registered")
    if factory is None and not builtin:
        raise ValueError(f"encoder backend {name!r}: register_backend needs factory(target, **options)")
    b = Backend(name, usage or (f"{name}:TARGET" if target else name), dict(options or {}), target, factory)
    _BACKENDS[name] = b
    return b


def list_backends() -> list[str]:
    """The registered backends (plugins' included), built-in ones first."""
    load_group("mingle_bench.encoders")
    return list(_BACKENDS)


register_backend("default", options=_HF_OPTIONS, target=False, builtin=True,
                 usage="default[?pooling=mean|max|cls&chunking=sentence&batching=exact]")
register_backend("hf", options=_HF_OPTIONS, builtin=True, usage="hf:PATH[?...]")
register_backend("openai", options=_OPENAI_OPTIONS, builtin=True, usage="openai:MODEL")
register_backend("tfidf", options=_TFIDF_OPTIONS, target=False, builtin=True, usage="tfidf[?dim=N&min_df=K&ngram=1|2]")


def spec_help() -> str:
    """Every backend's usage, for messages and ``--help``."""
    return " | ".join(_BACKENDS[b].usage for b in list_backends())


def parse_spec(spec: str) -> tuple[str, str, dict[str, Any]]:
    """Split a spec into (backend, target, options) with typed option values.

    >>> parse_spec("hf:/models/sapbert?pooling=cls")
    ('hf', '/models/sapbert', {'pooling': 'cls'})
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"--encoder must be one of: {spec_help()}")
    spec = spec.strip()
    if spec in ("default", "minilm"):
        return "default", "", {}
    name, qmark, query = spec.partition("?")
    no_target = {"minilm"} | {b for b in list_backends() if not _BACKENDS[b].target}
    if name in no_target:  # no target: options follow the name directly
        backend, target = ("default" if name == "minilm" else name), ""
        if qmark and "=" not in query:
            raise ValueError(f"encoder spec {spec!r}: options go after '?' as key=value pairs")
    else:
        backend, sep, rest = spec.partition(":")
        if not sep or backend not in _BACKENDS:
            raise ValueError(f"unknown encoder spec {spec!r}; expected one of: {spec_help()}")
        target, query = rest, ""
        if "?" in rest:
            head, _, tail = rest.rpartition("?")
            if "=" in tail:
                target, query = head, tail
    allowed = _BACKENDS[backend].options
    options: dict[str, Any] = {}
    for key, values in urllib.parse.parse_qs(query, keep_blank_values=True).items():
        if key not in allowed:
            raise ValueError(f"encoder spec {spec!r}: unknown option {key!r} (allowed: {', '.join(allowed)})")
        try:
            options[key] = allowed[key](values[-1])
        except ValueError:
            raise ValueError(f"encoder spec {spec!r}: option {key}={values[-1]!r} is not a valid "
                             f"{allowed[key].__name__}") from None
        check_option(spec, key, options[key])
    return backend, target, options


def check_option(spec: str, key: str, value: Any) -> None:
    """One line naming the spec and the option when ``value`` is not one it takes."""
    choices = _CHOICES.get(key)
    if choices is not None and value not in choices:
        raise ValueError(f"encoder spec {spec!r}: option {key}={value!r} must be one of "
                         f"{', '.join(map(str, choices))}")
    if key in _POSITIVE and value < 1:
        raise ValueError(f"encoder spec {spec!r}: option {key}={value!r} must be >= 1")


def load_encoder(spec: str = "default", precision: str | None = None, **overrides: Any) -> Encoder:
    """Build the encoder a spec names (see the module docstring for the grammar).

    ``precision``: ``"fp32"`` (default), ``"bf16"`` or ``"auto"``; local models only (an
    endpoint takes ``fp32``/``auto`` and refuses ``bf16``). ``overrides`` (e.g.
    ``pooling="cls"``, ``device="cpu"``) win over query-string options; ``None`` values are ignored.
    """
    backend, target, options = parse_spec(spec)
    options.update({k: v for k, v in overrides.items() if v is not None})
    for key in overrides.keys() & options.keys():
        check_option(spec, key, options[key])
    if precision is not None:
        options["precision"] = precision
    if "precision" in options and options["precision"] not in PRECISIONS:
        raise ValueError(f"encoder {spec!r}: precision must be one of {', '.join(PRECISIONS)}, "
                         f"got {options['precision']!r}")
    if backend == "tfidf" and "precision" in options:
        if options.pop("precision") == "bf16":
            raise ValueError(f"encoder {spec!r}: precision bf16 applies to transformer encoders only; tfidf "
                             "computes in float64 (use fp32 or auto)")
    if backend == "openai" and "precision" in options:
        if options.pop("precision") == "bf16":
            raise ValueError(f"encoder {spec!r}: precision bf16 applies to local models only; an "
                             "OpenAI-compatible endpoint computes its vectors remotely (use fp32 or auto)")
    plugin = _BACKENDS[backend].factory
    if plugin is not None:  # a plugin's backend (its options are its own; it computes in fp32)
        if options.pop("precision", None) == "bf16" and "precision" not in _BACKENDS[backend].options:
            raise ValueError(f"encoder {spec!r}: the {backend} backend takes no precision bf16 (use fp32 or auto)")
        _check_options(spec, options, _BACKENDS[backend].options)
        return plugin(target, **options)
    if backend == "default":
        from mingle_bench.encoders.hf import load_default_encoder

        _check_options(spec, options, _HF_OPTIONS)
        return load_default_encoder(**options)
    if backend == "hf":
        from mingle_bench.encoders.hf import HFEncoder

        _check_options(spec, options, _HF_OPTIONS)
        return HFEncoder(target, **options)
    if backend == "tfidf":
        from mingle_bench.encoders.tfidf import TfidfEncoder

        _check_options(spec, options, {**_TFIDF_OPTIONS, "cache_dir": str})
        return TfidfEncoder(**options)
    from mingle_bench.encoders.openai_api import OpenAIEncoder

    _check_options(spec, options, _OPENAI_OPTIONS)
    return OpenAIEncoder(target, **options)


def _check_options(spec: str, options: dict[str, Any], allowed: dict[str, type]) -> None:
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise ValueError(f"encoder {spec!r} does not take option(s) {bad} (allowed: {', '.join(allowed)})")
