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

    def curve(self, monitor: str) -> list[list[float]]:
        """``[[step, validation monitor value], ...]`` over the evaluations (the learning curve)."""
        key = f"val_{monitor}"
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
        return -metrics["loss"]
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
    metrics = _compute_metrics(data.labels[idx].numpy(), probs)
    metrics["loss"] = loss
    return metrics, probs


def fit(
    model_name: str,
    data,
    hparams: dict[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    budget: Budget | None = None,
    monitor: str = "aupr",
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Train ``model_name`` on ``data`` and return the best-validation-step model (see module doc)."""
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
    cls = get_model(model_name)
    hp = cls.resolve_hparams(hparams)
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
        best_step, steps_run, stopped = _train_steps(model, model_name, data, hp, seed, dev, budget, monitor,
                                                     on_eval, history, t0)

    train_s = time.perf_counter() - t0
    val_metrics, val_probs = _evaluate(model, data, "val")
    test_probs, _ = predict(model, data.split_idx["test"])
    return FitResult(
        model=model, best_step=best_step, steps_run=steps_run, max_steps=int(budget.max_steps), stopped=stopped,
        history=history, val_metrics=val_metrics, test_probs=test_probs, val_probs=val_probs, train_s=train_s,
        impl=model.impl_used, n_params=model.n_params(), hparams=hp, input_report=dict(model.input_report),
    )


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
                 monitor: str, on_eval, history: list[dict], t0: float) -> tuple[int, int, str]:
    """The step loop; fills ``history``, restores the best state; returns (best_step, steps_run, stopped)."""
    opt = torch.optim.Adam(model.parameters(), lr=float(hp["lr"]), weight_decay=float(hp["weight_decay"]))
    gen = torch.Generator().manual_seed(seed)
    labels = data.labels
    batches = _batches(model, data.split_idx["train"], int(hp.get("batch_size") or 0), gen)
    best_value, best_step, best_state, since_best = -math.inf, 0, None, 0
    total, count, step, stopped = 0.0, 0, 0, "budget"
    model.train()
    while step < budget.max_steps:
        b = next(batches)
        out = model({"idx": b.to(dev), "labels": labels[b].to(dev)})
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        step += 1
        total += float(out["loss"].detach()) * b.numel()
        count += b.numel()
        if step % budget.eval_every and step < budget.max_steps:
            continue
        train_loss = total / max(count, 1)
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"{model_name}: training loss became {train_loss} by step {step} "
                                     "(lower the learning rate?)")
        metrics, _ = _evaluate(model, data, "val")
        model.train()
        history.append({"step": step, "train_loss": train_loss, "elapsed_s": time.perf_counter() - t0,
                        **{f"val_{k}": v for k, v in metrics.items()}})
        total, count = 0.0, 0
        value = _monitor_value(metrics, monitor)
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
    return best_step, step, stopped
