"""The one trainer: every model, same early stopping, same epoch budget, seeded.

``fit(model_name, data, hparams, seed, device, max_epochs, patience, monitor="aupr", on_epoch=None)``

* **Seeding**: Python ``random``, NumPy and torch (CPU and CUDA) are seeded with ``seed`` before
  the model is built (so initial weights depend only on the seed); minibatch order uses its own
  ``torch.Generator`` seeded with ``seed``.
* **Steps**: hypergraph models (``full_graph``) take one step per epoch on all training samples
  with the whole incidence (as HypEHR); sequence/set models take minibatches of
  ``batch_size`` shuffled training samples. Adam (``lr``, ``weight_decay``), gradients clipped
  to norm 1.0 (HypEHR).
* **Early stopping**: after every epoch the whole validation split is scored with
  :func:`mingle_bench.metrics.compute_metrics`; the best ``monitor`` value (AUPR by default)
  wins, and training stops after ``patience`` epochs without improvement or at ``max_epochs``.
  The best epoch's weights are restored from an in-memory copy (no files, no pickle).
  ``monitor="loss"`` uses the validation BCE instead (useful when a metric is undefined).
* **Pruning**: ``on_epoch(epoch, val_metrics)`` is called after each epoch and may raise
  ``optuna.TrialPruned``; the exception propagates.
* **scikit-learn models** (``logreg``) are fitted once by :meth:`fit_sklearn`; the same
  validation/test scoring applies, and the history has one entry.

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


GRAD_CLIP = 1.0
EVAL_BATCH = 2048


@dataclass
class FitResult:
    model: Any
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    val_metrics: dict[str, float] = field(default_factory=dict)
    test_probs: np.ndarray | None = None
    val_probs: np.ndarray | None = None
    train_s: float = 0.0
    impl: str = "none"
    n_params: int = 0
    hparams: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False
    input_report: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (no model, no arrays)."""
        return {
            "best_epoch": self.best_epoch, "epochs_run": len(self.history), "val_metrics": self.val_metrics,
            "train_s": self.train_s, "impl": self.impl, "n_params": self.n_params,
            "stopped_early": self.stopped_early, "hparams": self.hparams, "input_report": self.input_report,
        }


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but no CUDA device is available (use --device cpu or auto)")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    return dev


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
    max_epochs: int = 100,
    patience: int = 10,
    monitor: str = "aupr",
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Train ``model_name`` on ``data`` and return the best-validation-epoch model (see module doc)."""
    from mingle_bench.models import get_model

    if max_epochs < 1:
        raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    for split in ("train", "val", "test"):
        if split not in data.split_idx:
            raise ValueError(f"TaskData.split_idx lacks the {split!r} split")
    if data.split_idx["train"].numel() == 0 or data.split_idx["val"].numel() == 0:
        raise ValueError("the train and validation splits must be non-empty "
                         f"(train={data.split_idx['train'].numel()}, val={data.split_idx['val'].numel()})")
    dev = resolve_device(device)
    cls = get_model(model_name)
    hp = cls.resolve_hparams(hparams)
    seed_everything(seed)
    model = cls(data, **hp).to(dev)
    t0 = time.perf_counter()
    history: list[dict] = []

    if getattr(model, "sklearn", False):
        model.fit_sklearn(data.split_idx["train"], seed=seed)
        val_metrics, val_probs = _evaluate(model, data, "val")
        history.append({"epoch": 0, "train_loss": float("nan"), "epoch_s": time.perf_counter() - t0,
                        **{f"val_{k}": v for k, v in val_metrics.items()}})
        if on_epoch is not None:
            on_epoch(0, val_metrics)
        best_epoch, stopped = 0, False
    else:
        opt = torch.optim.Adam(model.parameters(), lr=float(hp["lr"]), weight_decay=float(hp["weight_decay"]))
        gen = torch.Generator().manual_seed(seed)
        train_idx = data.split_idx["train"]
        labels = data.labels
        batch_size = int(hp.get("batch_size") or 0)
        best_value, best_epoch, best_state, since_best = -math.inf, -1, None, 0
        val_metrics, stopped = {}, False
        for epoch in range(max_epochs):
            te = time.perf_counter()
            model.train()
            if model.full_graph or batch_size <= 0:
                batches = [train_idx]
            else:
                perm = train_idx[torch.randperm(train_idx.numel(), generator=gen)]
                batches = list(torch.split(perm, batch_size))
            total, count = 0.0, 0
            for b in batches:
                out = model({"idx": b.to(dev), "labels": labels[b].to(dev)})
                opt.zero_grad(set_to_none=True)
                out["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
                opt.step()
                total += float(out["loss"].detach()) * b.numel()
                count += b.numel()
            train_loss = total / max(count, 1)
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"{model_name}: training loss became {train_loss} at epoch {epoch} "
                                         "(lower the learning rate?)")
            metrics, _ = _evaluate(model, data, "val")
            history.append({"epoch": epoch, "train_loss": train_loss, "epoch_s": time.perf_counter() - te,
                            **{f"val_{k}": v for k, v in metrics.items()}})
            value = _monitor_value(metrics, monitor)
            if best_state is None or (not math.isnan(value) and value > best_value):
                best_value, best_epoch, val_metrics, since_best = value, epoch, metrics, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                since_best += 1
            if on_epoch is not None:
                on_epoch(epoch, metrics)
            if since_best >= patience:
                stopped = True
                break
        model.load_state_dict(best_state)

    train_s = time.perf_counter() - t0
    val_metrics, val_probs = _evaluate(model, data, "val")
    test_probs, _ = predict(model, data.split_idx["test"])
    return FitResult(
        model=model, best_epoch=best_epoch, history=history, val_metrics=val_metrics,
        test_probs=test_probs, val_probs=val_probs, train_s=train_s, impl=model.impl_used,
        n_params=model.n_params(), hparams=hp, stopped_early=stopped, input_report=dict(model.input_report),
    )
