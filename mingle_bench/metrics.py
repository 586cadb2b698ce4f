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
``auroc_    mean over the labels with both classes in    ``roc_auc_score`` (equal to
macro``     the evaluated set of each label's            ``auroc``)
            ``roc_auc_score`` (macro)
``aupr_     the same mean of each label's                ``average_precision_score`` (equal
macro``     ``average_precision_score`` (macro)          to ``aupr``)
==========  ===========================================  ====================================

The macro metrics are additions (the paper reports the flattened ones): on a multi-label task
the flattened AUROC rewards predicting each label's prevalence (a constant per-label prior
scores well above 0.5), the macro AUROC does not. Both macro means use the same labels, those
with at least one positive and one negative in the evaluated set; :func:`macro_label_count`
gives how many (the tables state it).

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
from typing import Sequence

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    roc_auc_score,
)

METRIC_NAMES: tuple[str, ...] = ("acc", "auroc", "aupr", "f1", "brier", "ece", "auroc_macro", "aupr_macro")
PAPER_METRICS: tuple[str, ...] = ("acc", "auroc", "aupr", "f1")
#: the per-label means; on a binary task they equal ``auroc`` and ``aupr``
MACRO_METRICS: tuple[str, ...] = ("auroc_macro", "aupr_macro")
HIGHER_IS_BETTER: dict[str, bool] = {
    "acc": True, "auroc": True, "aupr": True, "f1": True, "brier": False, "ece": False,
    "auroc_macro": True, "aupr_macro": True,
}
#: what ``--monitor`` may name (early stopping, the best step, the best baseline, tune's objective):
#: every metric, plus the validation BCE ``loss`` (lower is better); value: higher is better
MONITORS: dict[str, bool] = {**HIGHER_IS_BETTER, "loss": False}
METRIC_LABELS: dict[str, str] = {
    "acc": "ACC", "auroc": "AUROC", "aupr": "AUPR", "f1": "F1", "brier": "Brier", "ece": "ECE",
    "auroc_macro": "AUROC macro", "aupr_macro": "AUPR macro", "loss": "loss",
}
ECE_BINS = 10


def is_multi_label(y) -> bool:
    """Whether labels ``y`` (``[n]`` or ``[n, n_labels]``) have more than one column: the tasks whose
    macro means (:data:`MACRO_METRICS`) differ from the flattened metrics."""
    return getattr(y, "ndim", 1) == 2 and y.shape[1] > 1


def reported_metrics(y, base: Sequence[str]) -> tuple[str, ...]:
    """``base`` plus :data:`MACRO_METRICS` on a multi-label task (:func:`is_multi_label`)."""
    return tuple(base) + (MACRO_METRICS if is_multi_label(y) else ())


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


def macro_labels(y_true) -> np.ndarray:
    """Indices of the label columns with both classes in ``y_true`` (``[n]`` or ``[n, L]``): the
    labels the macro AUROC and AUPR average over."""
    yt = _as_2d("y_true", y_true)
    pos = yt.sum(axis=0)
    return np.flatnonzero((pos > 0) & (pos < yt.shape[0]))


def macro_label_count(y_true) -> int:
    """How many labels the macro AUROC and AUPR of ``y_true`` average over (see :func:`macro_labels`)."""
    return int(macro_labels(y_true).size)


def compute_metrics(y_true, y_prob, threshold: float = 0.5) -> dict[str, float]:
    """Compute ``acc, auroc, aupr, f1, brier, ece, auroc_macro, aupr_macro`` for binary or
    multi-label predictions.

    Args:
        y_true: 0/1 labels, shape ``[n]`` or ``[n, n_labels]`` (numpy, list or torch).
        y_prob: predicted probabilities, same shape.
        threshold: decision threshold for ACC and F1 (the paper uses 0.5).

    Returns:
        ``{"acc", "auroc", "aupr", "f1", "brier", "ece", "auroc_macro", "aupr_macro"}`` as floats
        in ``[0, 1]`` (``nan`` where undefined, see the module docstring; the macro means are
        ``nan`` when no label has both classes).
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
    if yt.shape[1] == 1:
        out["auroc_macro"], out["aupr_macro"] = out["auroc"], out["aupr"]
    else:
        out["auroc_macro"], out["aupr_macro"] = macro_auroc(yt, yp), macro_aupr(yt, yp)
    return out


# -- ranking metrics in numpy: the same values as sklearn's (tested), fast enough for the macro
#    means at every validation step and for the bootstrap's thousands of evaluations
def auroc_mann_whitney(ft: np.ndarray, fp: np.ndarray) -> float:
    """ROC AUC of 1-D targets/scores in its Mann-Whitney form (ties count 1/2): ``roc_auc_score``."""
    from scipy.stats import rankdata

    n_pos = ft.sum()
    n_neg = ft.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(fp)
    return float((ranks[ft == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(ft: np.ndarray, fp: np.ndarray) -> float:
    """Step-wise AP of 1-D targets/scores over distinct thresholds: ``average_precision_score``."""
    if ft.sum() == 0:
        return math.nan
    order = np.argsort(-fp, kind="mergesort")
    s, y = fp[order], ft[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last]
    fps = last + 1 - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def macro_auroc(yt: np.ndarray, yp: np.ndarray) -> float:
    """Mean AUROC over the label columns of ``[n, L]`` arrays with both classes (nan if none).

    AUROC_l = (sum of the ranks of label l's positives - P_l (P_l + 1) / 2) / (P_l N_l), with the
    ranks of column l's scores (ties averaged), P_l / N_l its positives / negatives."""
    from scipy.stats import rankdata

    keep = macro_labels(yt)
    if not keep.size:
        return math.nan
    t, p = np.asarray(yt, dtype=np.float64)[:, keep], np.asarray(yp, dtype=np.float64)[:, keep]
    ranks = rankdata(p, axis=0)
    n_pos = t.sum(axis=0)
    n_neg = t.shape[0] - n_pos
    auc = ((ranks * t).sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return float(auc.mean())


def macro_aupr(yt: np.ndarray, yp: np.ndarray) -> float:
    """Mean average precision over the label columns with both classes (nan if none).

    All columns at once: sort each column by score (descending); a positive counts the precision
    at the end of its group of tied scores, AP_l = sum over positives of that precision / P_l,
    which is :func:`average_precision` (``average_precision_score``) column by column."""
    keep = macro_labels(yt)
    if not keep.size:
        return math.nan
    t, p = np.asarray(yt, dtype=np.float64)[:, keep], np.asarray(yp, dtype=np.float64)[:, keep]
    n = t.shape[0]
    order = np.argsort(-p, axis=0, kind="mergesort")
    s, y = np.take_along_axis(p, order, axis=0), np.take_along_axis(t, order, axis=0)
    tp = np.cumsum(y, axis=0)
    idx = np.arange(n)[:, None]
    last = np.ones_like(s, dtype=bool)
    last[:-1] = s[:-1] != s[1:]  # the last row of each group of tied scores
    # for every row, the row where its tie group ends: a reversed running minimum of the ends
    ends = np.minimum.accumulate(np.where(last, idx, n)[::-1], axis=0)[::-1]
    precision_at_end = np.take_along_axis(tp, ends, axis=0) / (ends + 1)
    ap = (y * precision_at_end).sum(axis=0) / y.sum(axis=0)
    return float(ap.mean())


#: probabilities that spread less than this per label are one constant prediction (torch's float32
#: sigmoid of one constant logit can differ by an ulp with the position in the tensor)
CONSTANT_ATOL = 1e-6


def predictions_constant(probs) -> bool:
    """Whether every label's predictions are one value (within :data:`CONSTANT_ATOL`): a predictor
    that ranks nothing (the ``prior`` reference by design, or a collapsed model)."""
    p = np.asarray(probs, dtype=np.float64)
    p = p[:, None] if p.ndim == 1 else p
    return bool(p.size) and bool((np.ptp(p, axis=0) <= CONSTANT_ATOL).all())


def is_better(metric: str, a: float, b: float) -> bool:
    """True when value ``a`` is strictly better than ``b`` for ``metric`` (a :data:`MONITORS` name; nan never wins)."""
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    return a > b if MONITORS[metric] else a < b
