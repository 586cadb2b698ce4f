"""Evaluation metrics, with the paper's definitions.

MINGLE's Table 1 reports ACC, AUROC, AUPR and F1 (in %). The definitions below follow the
group's released evaluation code (CACHE ``train.py`` / TACCO ``train_hypehr.py``):

==========  ===========================================  ====================================
metric      multi-label ``[n, L]`` (e.g. 25 phenotypes)  binary ``[n]`` or ``[n, 1]``
==========  ===========================================  ====================================
``acc``     element-wise accuracy over all n*L cells     accuracy
            at the threshold
``auroc``   ``roc_auc_score`` on the flattened matrix    ``roc_auc_score``
            (micro)
``aupr``    ``average_precision_score`` on the           ``average_precision_score``
            flattened matrix (micro)
``f1``      ``f1_score(average="macro")`` over the L     ``f1_score(average="macro")`` on the
            label columns                                flattened vector, i.e. the mean of
                                                         the positive- and negative-class F1
``brier``   mean squared error of the probabilities      same
            over all cells
``ece``     expected calibration error over all cells,   same
            ``ECE_BINS`` equal-width bins
==========  ===========================================  ====================================

Brier and ECE are additions (calibration), not in the paper. Every metric is computed once over
the whole evaluated set, never averaged over batches. Values are fractions in ``[0, 1]``;
tables multiply by 100.

Undefined values are ``nan`` rather than an exception: AUROC when the flattened targets hold a
single class, AUPR when there is no positive cell. F1 uses ``zero_division=0`` (a label never
predicted and never present scores 0, as sklearn's default does, with the warning silenced).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    roc_auc_score,
)

METRIC_NAMES: tuple[str, ...] = ("acc", "auroc", "aupr", "f1", "brier", "ece")
PAPER_METRICS: tuple[str, ...] = ("acc", "auroc", "aupr", "f1")
HIGHER_IS_BETTER: dict[str, bool] = {
    "acc": True, "auroc": True, "aupr": True, "f1": True, "brier": False, "ece": False,
}
METRIC_LABELS: dict[str, str] = {
    "acc": "ACC", "auroc": "AUROC", "aupr": "AUPR", "f1": "F1", "brier": "Brier", "ece": "ECE",
}
ECE_BINS = 10


def _as_2d(name: str, a) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 1-D [n] or 2-D [n, n_labels], got shape {arr.shape}")
    return arr


def _check_inputs(y_true, y_prob) -> tuple[np.ndarray, np.ndarray]:
    yt = _as_2d("y_true", y_true)
    yp = _as_2d("y_prob", y_prob)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true shape {yt.shape} does not match y_prob shape {yp.shape}")
    if yt.shape[0] == 0:
        raise ValueError("cannot compute metrics on an empty set (0 samples)")
    if not np.isin(yt, (0.0, 1.0)).all():
        raise ValueError("y_true must hold only 0/1 labels")
    if not np.isfinite(yp).all():
        bad = int((~np.isfinite(yp)).sum())
        raise ValueError(f"y_prob holds {bad} non-finite values (NaN/inf): did training diverge?")
    if (yp < 0).any() or (yp > 1).any():
        raise ValueError("y_prob must be probabilities in [0, 1] (apply a sigmoid to logits first)")
    return yt.astype(np.int64), yp


def expected_calibration_error(y_true, y_prob, n_bins: int = ECE_BINS) -> float:
    """ECE = sum_b (|B_b| / N) * |mean(y in B_b) - mean(p in B_b)| over equal-width bins.

    Cells are flattened; bin ``b`` holds probabilities in ``((b-1)/n_bins, b/n_bins]``
    (the first bin also holds exactly 0).
    """
    yt = np.asarray(y_true, dtype=np.float64).ravel()
    yp = np.asarray(y_prob, dtype=np.float64).ravel()
    if yt.size == 0:
        return math.nan
    bins = np.clip(np.ceil(yp * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins).astype(np.float64)
    sum_y = np.bincount(bins, weights=yt, minlength=n_bins)
    sum_p = np.bincount(bins, weights=yp, minlength=n_bins)
    nz = count > 0
    gap = np.abs(sum_y[nz] - sum_p[nz])  # = count * |mean_y - mean_p|
    return float(gap.sum() / yt.size)


def compute_metrics(y_true, y_prob, threshold: float = 0.5) -> dict[str, float]:
    """Compute ``acc, auroc, aupr, f1, brier, ece`` for binary or multi-label predictions.

    Args:
        y_true: 0/1 labels, shape ``[n]`` or ``[n, n_labels]`` (numpy, list or torch).
        y_prob: predicted probabilities, same shape.
        threshold: decision threshold for ACC and F1 (the paper uses 0.5).

    Returns:
        ``{"acc", "auroc", "aupr", "f1", "brier", "ece"}`` as floats in ``[0, 1]``
        (``nan`` where undefined, see the module docstring).
    """
    yt, yp = _check_inputs(y_true, y_prob)
    pred = (yp >= threshold).astype(np.int64)
    flat_t, flat_p, flat_pred = yt.ravel(), yp.ravel(), pred.ravel()
    out: dict[str, float] = {}
    out["acc"] = float(accuracy_score(flat_t, flat_pred))
    both_classes = 0 < flat_t.sum() < flat_t.size
    out["auroc"] = float(roc_auc_score(flat_t, flat_p)) if both_classes else math.nan
    out["aupr"] = float(average_precision_score(flat_t, flat_p)) if flat_t.sum() > 0 else math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        if yt.shape[1] == 1:
            # binary: macro over the two classes of the flattened vector (the group's code);
            # labels fixed so a one-class test set still averages both classes
            out["f1"] = float(f1_score(flat_t, flat_pred, average="macro", labels=[0, 1], zero_division=0))
        else:
            out["f1"] = float(f1_score(yt, pred, average="macro", zero_division=0))
    out["brier"] = float(brier_score_loss(flat_t, flat_p, labels=[0, 1]))
    out["ece"] = expected_calibration_error(flat_t, flat_p)
    return out


def is_better(metric: str, a: float, b: float) -> bool:
    """True when value ``a`` is strictly better than ``b`` for ``metric`` (nan never wins)."""
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    return a > b if HIGHER_IS_BETTER[metric] else a < b
