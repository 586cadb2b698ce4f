"""What a results table can tell apart: the sizes of its test and validation splits, and the
smallest AUROC difference between two models that its test set detects.

Counts, per task (:func:`split_counts`): test samples and positives from the folder's
``preds/labels.safetensors`` (the test labels every cell was scored on), validation samples and
positives from ``config.json`` (``n_samples``, ``data_report.positives_by_split``,
``label_names``). For a multi-label task the positives are the positive (sample, label) cells, with
the smallest label's count beside them.

The minimum detectable difference (:func:`min_detectable_auroc_difference`). Hanley & McNeil
(1982) give the variance of an AUROC ``A`` estimated from ``P`` positives and ``N`` negatives::

    Q1 = A / (2 - A),   Q2 = 2 A^2 / (1 + A)
    V(A) = [A (1 - A) + (P - 1)(Q1 - A^2) + (N - 1)(Q2 - A^2)] / (P N)

Two models scored on the same test set give correlated estimates; with both variances taken at
the observed AUROC and an assumed correlation ``r`` between them (Hanley & McNeil 1983),
``SE(A1 - A2) = sqrt(2 V (1 - r))``, and the difference a two-sided test at level ``alpha``
detects with probability ``power`` is::

    MDD = (z_{1 - alpha/2} + z_{power}) * SE(A1 - A2)

with ``alpha = 0.05``, ``power = 0.8`` (z = 1.960 + 0.842) and ``r = 0.5`` (:data:`ASSUMED_CORRELATION`;
correlations of paired AUROC estimates on one test set are typically 0.3 to 0.7; a larger ``r``
gives a smaller MDD). The observed AUROC is the median of the table's models' mean test AUROCs.
For a multi-label task the MDD of the flattened AUROC treats the positive and negative cells as
independent, which overstates the power (cells of one patient are correlated); the MDD of one
label at the smallest label's counts is given beside it.

A table is **underpowered** (:func:`underpowered_reasons`) when its test split holds fewer than
:data:`MIN_TEST_POSITIVES` cases of the minority class (positives, unless negatives are fewer) or
its validation split fewer than :data:`MIN_VAL_POSITIVES`: differences below the MDD are noise,
and early stopping and model selection see too few positives.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

ALPHA = 0.05
POWER = 0.8
#: assumed correlation between two models' AUROC estimates on one test set
ASSUMED_CORRELATION = 0.5
MIN_TEST_POSITIVES = 100
MIN_VAL_POSITIVES = 50


def hanley_mcneil_variance(auc: float, n_pos: int, n_neg: int) -> float:
    """Variance of an AUROC estimate (Hanley & McNeil 1982; see the module docstring)."""
    if n_pos < 1 or n_neg < 1 or not 0.0 <= auc <= 1.0:
        return math.nan
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    return (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)


def min_detectable_auroc_difference(auc: float, n_pos: int, n_neg: int, rho: float = ASSUMED_CORRELATION,
                                    alpha: float = ALPHA, power: float = POWER) -> float:
    """The AUROC difference (a fraction) between two models detectable with probability ``power``
    by a two-sided test at level ``alpha``, both models' variances taken at ``auc``, correlation ``rho``."""
    from scipy.stats import norm

    v = hanley_mcneil_variance(auc, n_pos, n_neg)
    if math.isnan(v):
        return math.nan
    z = float(norm.ppf(1 - alpha / 2) + norm.ppf(power))
    return z * math.sqrt(max(2 * v * (1 - rho), 0.0))


def split_counts(config: dict, y_test: np.ndarray | None) -> dict[str, Any]:
    """Samples and positives of the test and validation splits (see the module docstring).

    Returns ``n_labels``, ``label_names``, ``test_samples``, ``test_positives``,
    ``test_negatives``, ``test_label_positives`` (per label), ``val_samples``, ``val_positives``,
    ``val_negatives``, ``val_label_positives``; a count the folder does not hold is ``None``.
    """
    names = list(config.get("label_names") or [])
    out: dict[str, Any] = {"label_names": names}
    if y_test is not None:
        y = np.asarray(y_test)
        y = y[:, None] if y.ndim == 1 else y
        per = [int(v) for v in y.sum(axis=0)]
        out.update(test_samples=int(y.shape[0]), test_positives=int(sum(per)),
                   test_negatives=int(y.size - sum(per)), test_label_positives=per)
        if len(names) != y.shape[1]:
            names = out["label_names"] = [f"label {k}" for k in range(y.shape[1])]
    else:
        by = ((config.get("data_report") or {}).get("positives_by_split") or {}).get("test")
        n = (config.get("n_samples") or {}).get("test")
        per = [int(by[k]) for k in names] if by and all(k in by for k in names) else None
        out.update(test_samples=n, test_positives=None if per is None else sum(per),
                   test_negatives=None if per is None or n is None else n * len(names) - sum(per),
                   test_label_positives=per)
    out["n_labels"] = len(out["test_label_positives"] or names) or 1
    by_val = ((config.get("data_report") or {}).get("positives_by_split") or {}).get("val")
    n_val = (config.get("n_samples") or {}).get("val")
    per_val = [int(by_val[k]) for k in names] if by_val and names and all(k in by_val for k in names) else None
    out.update(val_samples=n_val, val_label_positives=per_val,
               val_positives=None if per_val is None else sum(per_val),
               val_negatives=None if per_val is None or n_val is None else n_val * len(per_val) - sum(per_val))
    return out


def _minority(pos: int | None, neg: int | None) -> int | None:
    if pos is None:
        return None
    return pos if neg is None else min(pos, neg)


def underpowered_reasons(counts: dict[str, Any]) -> list[str]:
    """Why a table is underpowered (empty when it is not): the test split's minority class below
    :data:`MIN_TEST_POSITIVES`, the validation split's below :data:`MIN_VAL_POSITIVES`."""
    reasons = []
    cells = " cells" if counts.get("n_labels", 1) > 1 else ""
    for split, floor in (("test", MIN_TEST_POSITIVES), ("val", MIN_VAL_POSITIVES)):
        pos, neg = counts.get(f"{split}_positives"), counts.get(f"{split}_negatives")
        m = _minority(pos, neg)
        if m is not None and m < floor:
            what = "positive" if m == pos else "negative"
            reasons.append(f"{m} {what}{cells or 's'} in the {'validation' if split == 'val' else 'test'} split "
                           f"(fewer than {floor})")
    return reasons


def power_summary(counts: dict[str, Any], auc: float | None) -> dict[str, Any]:
    """:func:`split_counts` plus ``auroc`` (the AUROC the MDD is taken at), ``mdd`` (flattened),
    ``mdd_smallest_label`` (multi-label), ``smallest_label`` / ``smallest_label_positives`` and
    ``underpowered`` (:func:`underpowered_reasons`). MDDs are fractions (nan when undefined)."""
    out = dict(counts)
    a = auc if auc is not None and not math.isnan(auc) else math.nan
    out["auroc"] = a
    out["correlation"], out["alpha"], out["power"] = ASSUMED_CORRELATION, ALPHA, POWER
    pos, neg = counts.get("test_positives"), counts.get("test_negatives")
    out["mdd"] = (min_detectable_auroc_difference(a, pos, neg)
                  if pos is not None and neg is not None and not math.isnan(a) else math.nan)
    per = counts.get("test_label_positives")
    if per and len(per) > 1:
        k = int(np.argmin(per))
        out["smallest_label"], out["smallest_label_positives"] = counts["label_names"][k], per[k]
        n = counts.get("test_samples") or 0
        out["mdd_smallest_label"] = (min_detectable_auroc_difference(a, per[k], n - per[k])
                                     if not math.isnan(a) else math.nan)
        vper = counts.get("val_label_positives")
        if vper:
            kv = int(np.argmin(vper))
            out["smallest_val_label"], out["smallest_val_label_positives"] = counts["label_names"][kv], vper[kv]
    out["underpowered"] = underpowered_reasons(counts)
    return out


def ci_halfwidth(auc: float, n_test: int, prevalence: float, rho: float = ASSUMED_CORRELATION) -> float:
    """Half-width of the 95% CI of the AUROC difference of two models scored on one test set of
    ``n_test`` samples with ``prevalence`` positives (Hanley-McNeil at ``auc``, correlation ``rho``)."""
    from scipy.stats import norm

    v = hanley_mcneil_variance(auc, int(round(n_test * prevalence)), int(round(n_test * (1 - prevalence))))
    return float(norm.ppf(0.975)) * math.sqrt(max(2 * v * (1 - rho), 0.0)) if not math.isnan(v) else math.nan


def required_test_samples(auc: float, prevalence: float, halfwidth: float, min_minority: int = 0,
                          rho: float = ASSUMED_CORRELATION) -> int:
    """The smallest test split whose 95% CI of an AUROC difference is at most ``±halfwidth``
    (:func:`ci_halfwidth`) and whose minority class holds at least ``min_minority`` samples: the
    size a table needs to tell two models ``halfwidth`` apart. Used to size the cohort of the
    paper tables (docs/data.md, ``synthetic:large``)."""
    minority = min(prevalence, 1 - prevalence)
    n = max(10, math.ceil(min_minority / minority) if minority > 0 else 10)
    while ci_halfwidth(auc, n, prevalence, rho) > halfwidth:
        n = math.ceil(n * 1.02) + 1
    return int(n)


__all__ = ["ALPHA", "ASSUMED_CORRELATION", "MIN_TEST_POSITIVES", "MIN_VAL_POSITIVES", "POWER", "ci_halfwidth", "hanley_mcneil_variance", "required_test_samples",
           "min_detectable_auroc_difference", "power_summary", "split_counts", "underpowered_reasons"]
