"""The one trainer: every model, the same step budget, the same early stopping, seeded.

``fit(model_name, data, hparams, seed, device, budget=Budget(...), monitor="aupr", on_eval=None)``

* **Seeding**: Python ``random``, NumPy and torch (CPU and CUDA) are seeded with ``seed`` before
  the model is built (so initial weights depend only on the seed); minibatch order uses its own
  ``torch.Generator`` seeded with ``seed``.
* **Budget in optimiser steps** (:class:`Budget`): every model of a run gets the same
  ``max_steps``. Hypergraph models (``full_graph``) take one step on all training samples with
  the whole incidence (as HypEHR); sequence/set models take one step per minibatch of
  ``batch_size`` shuffled training samples (a new permutation per pass over the data). Both
  count one step per ``optimizer.step()``, so a minibatch model no longer gets several times
  the updates of a full-graph model. Adam (``lr``, ``weight_decay``), gradients clipped to norm
  1.0 (HypEHR).
* **Early stopping on a validation plateau**: after every ``eval_every`` steps (and after the
  last step) the whole validation split is scored with
  :func:`mingle_bench.metrics.compute_metrics`; the best ``monitor`` value (AUPR by default)
  wins, and training stops after ``patience`` evaluations without improvement
  (``stopped="early"``) or at ``max_steps`` (``stopped="budget"``: the model was cut off by the
  budget, not by validation). The best step's weights are restored from an in-memory copy (no
  files, no pickle). ``monitor="loss"`` uses the validation BCE instead.
* **Pruning**: ``on_eval(step, val_metrics)`` is called after each evaluation and may raise
  ``optuna.TrialPruned``; the exception propagates.
* **An undefined monitor falls back to validation loss**: when the validation labels leave the
  monitor undefined (AUROC or AUPR on a validation split without a positive; AUROC also without a
  negative), no evaluation could ever improve on the first one and early stopping would be
  meaningless. The best step is then selected on the validation BCE instead
  (``FitResult.monitor_used == "loss"``) and the result carries a ``monitor_fallback`` flag naming
  the counts; the runner logs it and the tables mark it. (``run`` checks the label counts of every
  split before training: :func:`mingle_bench.pipeline.check_labels`.)
* **Divergence is an error, not a result** (:class:`TrainingDiverged`, which the runner turns into a
  failed cell and tuning into a failed trial): a non-finite training or validation loss, a
  validation BCE above :data:`DIVERGENCE_LOSS_FACTOR` times that of the training-prevalence
  predictor (an exploding loss: RETAIN at ``lr=1e12`` reaches 7e24), or restored-step predictions of
  which more than :data:`SATURATED_SHARE` are exactly 0 or 1. When the loss explodes only after the
  best step, training stops there, the best step is kept and the result carries a
  ``diverged_after_best`` flag. Test predictions that are one constant per label (the ``prior``
  reference by design, or a collapsed model) carry a ``constant_predictions`` flag; tables never
  bold them.
* **scikit-learn models** (``logreg``) are fitted once by :meth:`fit_sklearn` (their solver
  runs to convergence; it takes no optimiser steps of the shared budget): ``steps_run`` and
  ``best_step`` are 0, ``stopped`` is ``"early"`` unless the solver hit its own iteration cap
  (``"budget"``); the same validation/test scoring applies, and the history has one entry.

Test metrics are never computed here: :class:`FitResult` carries ``test_probs`` and the caller
scores them, so tuning objectives cannot see the test set.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from mingle_bench.devices import resolve_device


GRAD_CLIP = 1.0
EVAL_BATCH = 2048
#: a validation BCE above this multiple of the training-prevalence predictor's BCE is divergence
DIVERGENCE_LOSS_FACTOR = 10.0
#: restored-step probabilities of which more than this share are exactly 0 or 1 are divergence
SATURATED_SHARE = 0.9


class TrainingDiverged(FloatingPointError):
    """Training diverged (non-finite or exploding loss, saturated predictions): the cell has no result."""


def flag(kind: str, message: str) -> dict[str, str]:
    """One entry of ``FitResult.flags`` (and of a ``runs.jsonl`` record's ``flags``)."""
    return {"kind": kind, "message": message}


@dataclass(frozen=True)
class Budget:
    """The training budget every model of a run shares, counted in optimiser steps.

    ``max_steps``: optimiser steps at most (a full-graph step and a minibatch step count alike);
    ``eval_every``: validate after every ``eval_every`` steps (and after the last step);
    ``patience``: stop after ``patience`` evaluations without a better validation value.
    """

    max_steps: int = 1000     # the same defaults as `mingle-bench run` (runner.DEFAULT_*)
    eval_every: int = 10
    patience: int = 10

    def __post_init__(self) -> None:
        for name in ("max_steps", "eval_every", "patience"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.eval_every > self.max_steps:
            raise ValueError(f"eval_every ({self.eval_every}) must not exceed max_steps ({self.max_steps})")

    def as_dict(self) -> dict[str, int]:
        return {"max_steps": int(self.max_steps), "eval_every": int(self.eval_every), "patience": int(self.patience)}


@dataclass
class FitResult:
    model: Any
    best_step: int
    steps_run: int = 0
    max_steps: int = 0
    stopped: str = "budget"
    history: list[dict] = field(default_factory=list)
    val_metrics: dict[str, float] = field(default_factory=dict)
    test_probs: np.ndarray | None = None
    val_probs: np.ndarray | None = None
    train_s: float = 0.0
    impl: str = "none"
    n_params: int = 0
    hparams: dict[str, Any] = field(default_factory=dict)
    input_report: dict[str, str] = field(default_factory=dict)
    #: the validation value that selected the best step: the requested monitor, or ``"loss"`` when
    #: the validation labels leave it undefined (see the module docstring)
    monitor_used: str = ""
    #: ``[{"kind", "message"}]``: ``monitor_fallback``, ``diverged_after_best``, ``constant_predictions``
    flags: list[dict[str, str]] = field(default_factory=list)

    def curve(self, monitor: str) -> list[list[float]]:
        """``[[step, validation value], ...]`` over the evaluations (the learning curve) of the value
        that selected the best step: ``monitor``, or the validation loss after a fallback."""
        key = f"val_{self.monitor_used or monitor}"
        return [[int(h["step"]), float(h[key])] for h in self.history if key in h]

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (no model, no arrays)."""
        return {
            "best_step": self.best_step, "steps_run": self.steps_run, "max_steps": self.max_steps,
            "stopped": self.stopped, "val_metrics": self.val_metrics,
            "train_s": self.train_s, "impl": self.impl, "n_params": self.n_params, "hparams": self.hparams, "input_report": self.input_report,
        }


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _compute_metrics(y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, float]:
    from mingle_bench.metrics import compute_metrics

    return compute_metrics(y_true, y_prob)


def _monitor_value(metrics: dict[str, float], monitor: str) -> float:
    """Higher is better; NaN never wins."""
    from mingle_bench.metrics import HIGHER_IS_BETTER

    if monitor == "loss":
        v = metrics["loss"]
        return -v if math.isfinite(v) else math.nan
    if monitor not in metrics:
        raise ValueError(f"monitor {monitor!r} is not a validation metric; choose from {sorted(metrics)}")
    v = metrics[monitor]
    return v if HIGHER_IS_BETTER.get(monitor, True) else -v


@torch.no_grad()
def predict(model, idx: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[np.ndarray, float]:
    """Probabilities [len(idx), n_labels] (eval mode) and the mean BCE when ``labels`` is given."""
    model.eval()
    device = model.device
    step = idx.numel() if model.full_graph else EVAL_BATCH
    logits = []
    for start in range(0, idx.numel(), max(step, 1)):
        b = idx[start:start + step].to(device)
        logits.append(model({"idx": b})["logits"].float().cpu())
    out = torch.cat(logits) if logits else torch.empty(0, model.n_labels)
    loss = float("nan")
    if labels is not None and out.numel():
        loss = float(F.binary_cross_entropy_with_logits(out, labels.float().cpu()))
    return torch.sigmoid(out).numpy(), loss


def _evaluate(model, data, split: str) -> tuple[dict[str, float], np.ndarray]:
    idx = data.split_idx[split]
    probs, loss = predict(model, idx, data.labels[idx])
    bad = int((~np.isfinite(probs)).sum())
    if bad:
        raise TrainingDiverged(f"{bad} of the {split} predictions are not finite (NaN/inf)")
    metrics = _compute_metrics(data.labels[idx].numpy(), probs)
    metrics["loss"] = loss
    return metrics, probs


def monitor_undefined_reason(y: np.ndarray, monitor: str) -> str | None:
    """Why ``monitor`` is undefined on the labels ``y`` [n, L] whatever the predictions (the label
    counts), or ``None`` when it is defined. Probed with constant predictions, so every metric of
    :func:`mingle_bench.metrics.compute_metrics` is covered by its own definition."""
    if monitor == "loss":
        return None
    y2 = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if y2.shape[0] == 0:
        return "no samples"
    value = _compute_metrics(y2, np.full(y2.shape, 0.5)).get(monitor)
    if value is None or not math.isnan(value):
        return None
    pos = int(y2.sum())
    return f"{pos} positive and {y2.size - pos} negative label cells"


def prior_bce(y_train: np.ndarray, y_eval: np.ndarray) -> float:
    """Mean BCE on ``y_eval`` of predicting each label's training prevalence (clipped to [1e-3, 1-1e-3]):
    the loss any trained model should at least approach; the divergence limit is a multiple of it."""
    yt = np.asarray(y_train, dtype=np.float64).reshape(len(y_train), -1)
    ye = np.asarray(y_eval, dtype=np.float64).reshape(len(y_eval), -1)
    p = np.clip(yt.mean(axis=0) if yt.shape[0] else np.full(ye.shape[1], 0.5), 1e-3, 1 - 1e-3)
    return float(-(ye * np.log(p) + (1 - ye) * np.log(1 - p)).mean()) if ye.size else math.nan


def _saturated_share(probs: np.ndarray) -> float:
    p = np.asarray(probs)
    return float(((p == 0.0) | (p == 1.0)).mean()) if p.size else 0.0


def fit(
    model_name: str | type,
    data,
    hparams: dict[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    budget: Budget | None = None,
    monitor: str = "aupr",
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Train ``model_name`` on ``data`` and return the best-validation-step model (see module doc).

    ``model_name`` is a registered name or a model class itself (an
    :class:`~mingle_bench.models.base.EHRModel` subclass, registered or not), so a model under
    development trains without registering it."""
    from mingle_bench.zoo import get_model

    budget = budget or Budget()
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be a mingle_bench.training.Budget, got {type(budget).__name__}")
    for split in ("train", "val", "test"):
        if split not in data.split_idx:
            raise ValueError(f"TaskData.split_idx lacks the {split!r} split")
    if data.split_idx["train"].numel() == 0 or data.split_idx["val"].numel() == 0:
        raise ValueError("the train and validation splits must be non-empty "
                         f"(train={data.split_idx['train'].numel()}, val={data.split_idx['val'].numel()})")
    dev = resolve_device(device, what="device")
    cls = model_name if isinstance(model_name, type) else get_model(model_name)
    model_name = model_name if isinstance(model_name, str) else (getattr(cls, "name", "") or cls.__name__)
    hp = cls.resolve_hparams(hparams)
    from mingle_bench.metrics import MONITORS

    if monitor not in MONITORS:
        raise ValueError(f"monitor {monitor!r} is not a validation metric; choose from {sorted(MONITORS)}")
    y_train = data.labels[data.split_idx["train"]].numpy()
    y_val = data.labels[data.split_idx["val"]].numpy()
    flags: list[dict[str, str]] = []
    monitor_used = monitor
    # a solver-fitted model selects no step on validation, so its monitor never falls back
    why = None if getattr(cls, "sklearn", False) else monitor_undefined_reason(y_val, monitor)
    if why:
        monitor_used = "loss"
        flags.append(flag("monitor_fallback", f"validation {monitor} is undefined ({why} in the validation split): "
                                              "the best step was selected on validation loss"))
    loss_limit = DIVERGENCE_LOSS_FACTOR * prior_bce(y_train, y_val)
    seed_everything(seed)
    model = cls(data, **hp).to(dev)
    t0 = time.perf_counter()
    history: list[dict] = []

    if getattr(model, "sklearn", False):
        model.fit_sklearn(data.split_idx["train"], seed=seed)
        val_metrics, val_probs = _evaluate(model, data, "val")
        history.append({"step": 0, "train_loss": float("nan"), "elapsed_s": time.perf_counter() - t0,
                        **{f"val_{k}": v for k, v in val_metrics.items()}})
        if on_eval is not None:
            on_eval(0, val_metrics)
        best_step, steps_run = 0, 0
        stopped = "budget" if getattr(model, "hit_iteration_cap", False) else "early"
    else:
        best_step, steps_run, stopped = _train_steps(model, model_name, data, hp, seed, dev, budget, monitor_used,
                                                     on_eval, history, t0, loss_limit, flags)

    train_s = time.perf_counter() - t0
    val_metrics, val_probs = _evaluate(model, data, "val")
    test_probs, _ = predict(model, data.split_idx["test"])
    _check_restored(model_name, best_step, val_metrics["loss"], loss_limit, val_probs, test_probs)
    from mingle_bench.metrics import predictions_constant

    if predictions_constant(test_probs):
        flags.append(flag("constant_predictions", "every test probability is the same value"
                                                  + (" per label" if test_probs.shape[1] > 1 else "")
                                                  + f" ({', '.join(f'{v:.4g}' for v in test_probs[0][:3])}"
                                                  + (", ..." if test_probs.shape[1] > 3 else "") + ")"))
    return FitResult(
        model=model, best_step=best_step, steps_run=steps_run, max_steps=int(budget.max_steps), stopped=stopped,
        history=history, val_metrics=val_metrics, test_probs=test_probs, val_probs=val_probs, train_s=train_s,
        impl=model.impl_used, n_params=model.n_params(), hparams=hp, input_report=dict(model.input_report),
        monitor_used=monitor_used, flags=flags,
    )


def _check_restored(model_name: str, best_step: int, val_loss: float, loss_limit: float, val_probs: np.ndarray,
                    test_probs: np.ndarray) -> None:
    """Raise :class:`TrainingDiverged` when the restored model's validation loss is non-finite or
    exploded, or its predictions are saturated at exactly 0 or 1."""
    at = f"at the restored step {best_step}" if best_step else "after fitting"
    if not math.isfinite(val_loss):
        raise TrainingDiverged(f"{model_name}: validation loss is {val_loss} {at}")
    if math.isfinite(loss_limit) and val_loss > loss_limit:
        raise TrainingDiverged(f"{model_name}: validation loss {val_loss:.4g} {at} is over {DIVERGENCE_LOSS_FACTOR:g}x "
                               f"that of predicting the training prevalence ({loss_limit / DIVERGENCE_LOSS_FACTOR:.4g}): "
                               "training diverged (lower the learning rate?)")
    bad = int((~np.isfinite(test_probs)).sum())
    if bad:
        raise TrainingDiverged(f"{model_name}: {bad} test predictions are not finite {at}")
    for split, probs in (("validation", val_probs), ("test", test_probs)):
        share = _saturated_share(probs)
        if share > SATURATED_SHARE:
            raise TrainingDiverged(f"{model_name}: {100 * share:.1f}% of the {split} probabilities are exactly 0 or 1 "
                                   f"{at}: the predictions collapsed (training diverged; lower the learning rate?)")


def train_step(model, batch: dict[str, torch.Tensor], opt: torch.optim.Optimizer,
               clip: float | None = GRAD_CLIP) -> torch.Tensor:
    """One optimiser step, the one the trainer, the profilers and the benchmarks take: forward on
    ``batch`` (``{"idx": int64 [B], "labels": float32 [B, n_labels]}``), ``zero_grad``, backward of
    ``model(batch)["loss"]``, gradient-norm clipping at ``clip`` (``None``: none), ``opt.step()``.
    Returns the batch's loss (a detached scalar tensor)."""
    loss = model(batch)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss.detach()


def _batches(model, train_idx: torch.Tensor, batch_size: int, gen: torch.Generator):
    """Endless stream of training minibatches: the whole split for full-graph models, otherwise
    ``batch_size`` samples of a fresh seeded permutation per pass over the data."""
    while True:
        if model.full_graph or batch_size <= 0:
            yield train_idx
            continue
        perm = train_idx[torch.randperm(train_idx.numel(), generator=gen)]
        yield from torch.split(perm, batch_size)


def _train_steps(model, model_name: str, data, hp: dict, seed: int, dev: torch.device, budget: Budget,
                 monitor: str, on_eval, history: list[dict], t0: float, loss_limit: float = math.inf,
                 flags: list[dict] | None = None) -> tuple[int, int, str]:
    """The step loop; fills ``history``, restores the best state; returns (best_step, steps_run, stopped).

    An evaluation whose predictions are not finite ends training: after a good best step it is
    kept (flag ``diverged_after_best``, ``stopped="diverged"``), otherwise :class:`TrainingDiverged`.
    A finite validation loss over ``loss_limit`` after the best step is flagged, never selected."""
    flags = flags if flags is not None else []
    exploded_at: int | None = None
    opt = torch.optim.Adam(model.parameters(), lr=float(hp["lr"]), weight_decay=float(hp["weight_decay"]))
    gen = torch.Generator().manual_seed(seed)
    labels = data.labels
    batches = _batches(model, data.split_idx["train"], int(hp.get("batch_size") or 0), gen)
    best_value, best_step, best_state, since_best = -math.inf, 0, None, 0
    total, count, step, stopped = 0.0, 0, 0, "budget"
    model.train()
    while step < budget.max_steps:
        b = next(batches)
        loss = train_step(model, {"idx": b.to(dev), "labels": labels[b].to(dev)}, opt)
        step += 1
        total += float(loss) * b.numel()
        count += b.numel()
        if step % budget.eval_every and step < budget.max_steps:
            continue
        train_loss = total / max(count, 1)
        if not math.isfinite(train_loss):
            raise TrainingDiverged(f"{model_name}: training loss became {train_loss} by step {step} "
                                   "(lower the learning rate?)")
        try:
            metrics, _ = _evaluate(model, data, "val")
        except TrainingDiverged as exc:
            if best_state is None:
                raise TrainingDiverged(f"{model_name}: {exc} at step {step} (lower the learning rate?)") from None
            flags.append(flag("diverged_after_best", f"training diverged at step {step} ({exc}); stopped there and "
                                                     f"restored the best step {best_step}"))
            stopped = "diverged"
            break
        model.train()
        history.append({"step": step, "train_loss": train_loss, "elapsed_s": time.perf_counter() - t0,
                        **{f"val_{k}": v for k, v in metrics.items()}})
        total, count = 0.0, 0
        value = _monitor_value(metrics, monitor)
        if metrics["loss"] > loss_limit:
            exploded_at = step if exploded_at is None else exploded_at
            value = math.nan  # an exploded evaluation is never the best (the first one is checked after restoring)
        if best_state is None or (not math.isnan(value) and value > best_value):
            best_value, best_step, since_best = value, step, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            since_best += 1
        if on_eval is not None:
            on_eval(step, metrics)
        if since_best >= budget.patience:
            stopped = "early"
            break
    model.load_state_dict(best_state)
    if exploded_at is not None and exploded_at > best_step:
        flags.append(flag("diverged_after_best", f"validation loss exploded (over {DIVERGENCE_LOSS_FACTOR:g}x the "
                                                 f"prevalence predictor's) from step {exploded_at}, after the best "
                                                 f"step {best_step}"))
    return best_step, step, stopped
