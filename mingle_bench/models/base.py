"""The model contract every MINGLE variant and baseline implements.

A model is built as ``cls(data: TaskData, **hparams)`` and called as
``model(batch) -> {"logits": [B, n_labels], "loss": scalar}`` with
``batch = {"idx": int64 [B] sample indices, "labels": float32 [B, n_labels]}``; ``loss`` is
binary cross-entropy with logits (mean over the B x n_labels cells, paper Eq. 4) and is present
whenever ``labels`` is.

Hyperparameters are one flat dict: the model's own (``hidden``, ``heads``, ...) plus the
trainer's (:data:`TRAIN_KEYS`: ``lr``, ``weight_decay``, ``batch_size``), so a tuned dict from
Optuna can be passed as is. ``default_hparams`` holds the original papers' / repositories'
defaults (cited in each model's docstring); ``search_space(trial)`` proposes values for tuning.

The trainer keys' defaults (:data:`TRAIN_DEFAULTS`) and Optuna ranges (:data:`TRAIN_SEARCH`) are
written once, here: a model class lists in ``default_hparams`` and ``search_ranges`` only its own
keys and the trainer keys whose value differs, and :class:`EHRModel` merges them over its parent's
when the class is created (a ``None`` range drops an inherited key from the search).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TRAIN_KEYS: tuple[str, ...] = ("lr", "weight_decay", "batch_size")
TRAIN_DEFAULTS: dict[str, Any] = {"lr": 1e-3, "weight_decay": 1e-3, "batch_size": 100}


@dataclass(frozen=True)
class Range:
    """One hyperparameter's Optuna range: ``kind`` ``float`` (``log`` or uniform), ``int`` or
    ``categorical`` over ``args``. Build it with :func:`log_uniform`, :func:`uniform`,
    :func:`integer` or :func:`choice`."""

    kind: str
    args: tuple
    log: bool = False

    def suggest(self, trial, name: str) -> Any:
        """``trial.suggest_*(name, ...)`` for this range."""
        if self.kind == "categorical":
            return trial.suggest_categorical(name, list(self.args))
        if self.kind == "int":
            return trial.suggest_int(name, *self.args)
        return trial.suggest_float(name, *self.args, log=self.log)


def log_uniform(low: float, high: float) -> Range:
    return Range("float", (low, high), log=True)


def uniform(low: float, high: float) -> Range:
    return Range("float", (low, high))


def integer(low: int, high: int) -> Range:
    return Range("int", (low, high))


def choice(*values: Any) -> Range:
    return Range("categorical", values)


#: Optuna ranges of the trainer keys, shared by every gradient-trained model
TRAIN_SEARCH: dict[str, Range] = {"lr": log_uniform(1e-4, 1e-2), "weight_decay": log_uniform(1e-6, 1e-2)}


class EHRModel(nn.Module):
    """Base class: hyperparameter resolution, input checks, the BCE loss and op bookkeeping.

    Class attributes a model sets:

    * ``family``: ``"mingle"`` (MINGLE and its ablations), ``"baseline"`` (the paper's baselines)
      or ``"reference"`` (simple reference models); :func:`~mingle_bench.models.registry.register_model`
      may override it per registered name, and sets ``name`` and ``display`` (the table name);
    * ``default_hparams``: the model's hyperparameters with their defaults, merged over the
      parent's (for a direct subclass: over :data:`TRAIN_DEFAULTS`), so the class attribute holds
      every accepted hyperparameter;
    * ``search_ranges``: ``{name: Range}`` for tuning, merged over the parent's (over
      :data:`TRAIN_SEARCH`); ``None`` drops an inherited key;
    * ``full_graph``: ``True`` for hypergraph models (one step = all train samples, whole
      incidence), ``False`` for minibatched sequence/set models;
    * ``uses_op``: whether it calls :mod:`mingle_bench.ops` (then ``impl`` is a hyperparameter
      and :attr:`impl_used` says which implementation ran);
    * ``requires``: ``TaskData`` fields that must not be ``None`` (e.g. note embeddings);
    * ``uses``: ``TaskData`` fields read when present (e.g. MINGLE's embeddings); with
      ``requires`` they decide which input views a run builds (``features.VIEWS``), so a field
      in neither is ``None`` unless another model of the run asks for it;
    * ``tiny_hparams``: small widths under which the model still works, for fast tests (the
      model tests build every registered model with them; a plugin's model gets the same tests).
    """

    name: ClassVar[str] = ""
    display: ClassVar[str] = ""
    family: ClassVar[str] = ""
    default_hparams: ClassVar[dict[str, Any]] = dict(TRAIN_DEFAULTS)
    search_ranges: ClassVar[dict[str, Range]] = dict(TRAIN_SEARCH)
    variant_overrides: ClassVar[dict[str, Any]] = {}
    full_graph: ClassVar[bool] = False
    uses_op: ClassVar[bool] = False
    requires: ClassVar[tuple[str, ...]] = ()
    uses: ClassVar[tuple[str, ...]] = ()
    tiny_hparams: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Merge the class body's ``default_hparams`` / ``search_ranges`` over the parent's; a
        class without a docstring documents itself with its module's (a model module's docstring
        holds the model's equations and sources)."""
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("__doc__") is None:
            cls.__doc__ = getattr(sys.modules.get(cls.__module__), "__doc__", None)
        parent = super(cls, cls)
        if "default_hparams" in cls.__dict__:
            cls.default_hparams = {**parent.default_hparams, **cls.__dict__["default_hparams"]}
        if "search_ranges" in cls.__dict__:
            merged = {**parent.search_ranges, **cls.__dict__["search_ranges"]}
            cls.search_ranges = {k: r for k, r in merged.items() if r is not None}

    def __init__(self, data, **hparams: Any) -> None:
        super().__init__()
        self.hparams: dict[str, Any] = self.resolve_hparams(hparams)
        missing = self.missing_inputs(data)
        if missing:
            raise ValueError(
                f"model {self.name or type(self).__name__!r} needs TaskData.{', '.join(missing)}, which is None "
                "(build the task data with an encoder, e.g. --encoder default)"
            )
        self.n_labels: int = data.n_labels
        self.impl_used: str = "none"
        self.input_report: dict[str, str] = {}

    # -- hyperparameters ---------------------------------------------------------------
    @classmethod
    def resolve_hparams(cls, hparams: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults updated by ``hparams``; unknown keys and changes to a variant's fixed
        switches raise ``ValueError`` naming them."""
        hparams = dict(hparams or {})
        known = cls.default_hparams
        unknown = sorted(set(hparams) - set(known))
        if unknown:
            raise ValueError(
                f"model {cls.name or cls.__name__!r}: unknown hyperparameter(s) {unknown}; accepted: {sorted(known)}"
            )
        for key, fixed in cls.variant_overrides.items():
            if key in hparams and hparams[key] != fixed:
                raise ValueError(
                    f"model {cls.name!r} fixes {key}={fixed!r}; pick another registered variant instead of {key}={hparams[key]!r}"
                )
        return {**known, **hparams}

    @classmethod
    def check_hparams(cls, hparams: dict[str, Any] | None = None, where: str = "") -> dict[str, Any]:
        """Validate ``hparams`` (merged over the defaults) before any data is prepared; returns the
        merged dict. Raises ``ValueError`` naming ``where`` (e.g. ``--tuned FILE``), the model, the
        key and the value.

        Names must be declared in :attr:`default_hparams` (a variant's fixed switches stay fixed).
        Types follow the declaration: a key declared as a number (its default, or an ``int``/``float``
        search range) takes a finite number, an integer where an integer is declared; a boolean a
        boolean, a string a string. Ranges: declared integers (widths, heads, layers, caps) are
        >= 1, ``batch_size`` >= 0 (0: one batch of every training sample); ``lr`` > 0 (>= 0 for
        solver-fitted models, which ignore it); ``weight_decay`` >= 0; every ``*dropout*`` in
        [0, 1); ``C`` > 0; ``negative_slope`` >= 0; ``heads`` divides the width it splits
        (``hidden``, else ``emb_dim``)."""
        import math

        prefix = f"{where}: " if where else ""
        model = cls.name or cls.__name__
        try:
            merged = cls.resolve_hparams(hparams)
        except ValueError as exc:
            raise ValueError(f"{prefix}{exc}") from None

        def bad(key: str, rule: str) -> ValueError:
            return ValueError(f"{prefix}model {model!r}: hyperparameter {key}={merged[key]!r} {rule}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_number(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        for key, value in merged.items():
            default = cls.default_hparams.get(key)
            rng = cls.search_ranges.get(key)
            declared_int = is_int(default) or (rng is not None and rng.kind == "int")
            declared_number = declared_int or is_number(default) or (rng is not None and rng.kind == "float") or (
                rng is not None and rng.kind == "categorical" and all(is_number(a) for a in rng.args))
            if declared_int and is_int(default) and not is_int(value):
                raise bad(key, "must be an integer")
            if declared_number:
                if not is_number(value):
                    raise bad(key, "must be a number")
                if not math.isfinite(value):
                    raise bad(key, "must be finite")
            elif isinstance(default, bool) and not isinstance(value, bool):
                raise bad(key, "must be true or false")
            elif isinstance(default, str) and not isinstance(value, str):
                raise bad(key, "must be a string")
            if not declared_number:
                continue
            if key == "batch_size":
                if value < 0:
                    raise bad(key, "must be >= 0 (0: every training sample in one batch)")
            elif declared_int and is_int(default):
                if value < 1:
                    raise bad(key, "must be a positive integer")
            elif key == "lr":
                if getattr(cls, "sklearn", False) and value < 0:
                    raise bad(key, "must be >= 0")
                if not getattr(cls, "sklearn", False) and not value > 0:
                    raise bad(key, "must be > 0")
            elif key in ("weight_decay", "negative_slope") and value < 0:
                raise bad(key, "must be >= 0")
            elif "dropout" in key and not 0 <= value < 1:
                raise bad(key, "must be in [0, 1)")
            elif key == "C" and not value > 0:
                raise bad(key, "must be > 0")
        width = "hidden" if "hidden" in merged else "emb_dim"
        if "heads" in merged and width in merged and merged[width] % merged["heads"]:
            raise ValueError(f"{prefix}model {model!r}: {width}={merged[width]} must be divisible by "
                             f"heads={merged['heads']}")
        return merged

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        """Optuna search space: ``{name: trial.suggest_*(...)}`` over :attr:`search_ranges`, in
        their order (the trainer keys first). Trainer keys included."""
        return {k: r.suggest(trial, k) for k, r in cls.search_ranges.items()}

    @classmethod
    def missing_inputs(cls, data) -> list[str]:
        """Names in ``requires`` that ``data`` lacks (``None``)."""
        return [f for f in cls.requires if getattr(data, f, None) is None]

    # -- helpers -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def n_params(self) -> int:
        """Number of trainable scalars."""
        return int(sum(p.numel() for p in self.parameters() if p.requires_grad))

    def output(self, logits: Tensor, batch: dict) -> dict[str, Tensor]:
        """Package logits [B, n_labels] with the BCE-with-logits loss when labels are given."""
        out = {"logits": logits}
        labels = batch.get("labels")
        if labels is not None:
            labels = labels.to(device=logits.device, dtype=logits.dtype)
            if labels.shape != logits.shape:
                raise ValueError(f"batch['labels'] has shape {tuple(labels.shape)}, expected {tuple(logits.shape)}")
            out["loss"] = F.binary_cross_entropy_with_logits(logits, labels)
        return out

    def record_impl(self) -> None:
        """Remember which op implementation ran last (``fused`` or ``reference``)."""
        from mingle_bench import ops

        last = getattr(ops, "last_impl", None)
        if last is not None:
            self.impl_used = last()
        else:
            self.impl_used = self.hparams.get("impl", "auto")

    def predict_proba(self, idx: Tensor) -> Tensor:
        """Sigmoid probabilities [len(idx), n_labels] in eval mode, without gradients."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                logits = self({"idx": idx.to(self.device)})["logits"]
        finally:
            self.train(was_training)
        return torch.sigmoid(logits)


def batch_indices(batch: dict, device: torch.device) -> Tensor:
    """``batch['idx']`` as int64 on ``device``, with a clear error when missing."""
    if "idx" not in batch:
        raise ValueError("batch must hold 'idx' (int64 sample indices)")
    return torch.as_tensor(batch["idx"], dtype=torch.int64, device=device)
