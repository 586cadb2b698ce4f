"""Paired comparison of two models on one test set: per-seed signs and a patient-level bootstrap CI.

For models A (MINGLE) and B (the best baseline), trained with the same seeds on the same split,
and for each metric m:

* per-seed difference  d_s = m(A_s) - m(B_s), for every seed s both models finished;
* mean difference      d = mean_s d_s  (the difference of the two table means);
* sign                 how many seeds have A better than B (direction-aware: lower Brier/ECE wins);
* bootstrap CI         resample the test set *by patient* (a cluster bootstrap: all samples of a
                       drawn patient come together, so correlated samples are not treated as
                       independent) ``n_boot`` times with a fixed seed; on each resample compute
                       d* = mean_s [m(A_s) - m(B_s)]; the CI is the 2.5/97.5 percentiles of d*.
                       ``p_not_better`` is the fraction of resamples where A is not better than B
                       (d* <= 0; >= 0 for Brier/ECE): the tables' "bootstrap share <= 0", a
                       description of the bootstrap distribution, not a p-value.

The metrics are the paper's four by default; ``finalize`` adds the macro AUROC and AUPR on a
multi-label task (:data:`mingle_bench.metrics.MACRO_METRICS`).

Resamples where a metric is undefined (e.g. only one class drawn, AUROC) are dropped and
counted in ``n_valid``.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from mingle_bench.metrics import (HIGHER_IS_BETTER, PAPER_METRICS, auroc_mann_whitney, average_precision,
                                  compute_metrics, macro_aupr, macro_auroc)


def _macro_f1(yt: np.ndarray, pred: np.ndarray) -> float:
    """Macro F1 over columns (binary: over the positive and the negative class), zero_division=0."""
    if yt.shape[1] == 1:
        yt = np.c_[yt, 1 - yt]
        pred = np.c_[pred, 1 - pred]
    tp = (yt * pred).sum(0)
    fp = ((1 - yt) * pred).sum(0)
    fn = (yt * (1 - pred)).sum(0)
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(denom, dtype=np.float64), where=denom > 0)
    return float(f1.mean())


def fast_metric(name: str, yt: np.ndarray, yp: np.ndarray, threshold: float = 0.5) -> float:
    """One metric with the definitions of :func:`compute_metrics` (which uses sklearn), in
    vectorised numpy for the bootstrap's thousands of evaluations; ``yt``/``yp`` are [n, L].
    Equality with :func:`compute_metrics` is tested."""
    ft, fp = yt.ravel(), yp.ravel()
    if name == "acc":
        return float(np.mean(ft == (fp >= threshold)))
    if name == "auroc":
        return auroc_mann_whitney(ft, fp)
    if name == "aupr":
        return average_precision(ft, fp)
    if name == "auroc_macro":
        return macro_auroc(yt, yp)
    if name == "aupr_macro":
        return macro_aupr(yt, yp)
    if name == "f1":
        return _macro_f1(yt, (yp >= threshold).astype(np.float64))
    if name == "brier":
        return float(np.mean((fp - ft) ** 2))
    return float(compute_metrics(yt, yp, threshold)[name])


def cluster_members(groups: Sequence) -> list[np.ndarray]:
    """The row indices of each group (patient), groups in sorted order, rows ascending."""
    uniq, inv = np.unique(np.asarray(groups), return_inverse=True)
    order = np.argsort(inv, kind="stable")
    starts = np.r_[0, np.cumsum(np.bincount(inv, minlength=len(uniq)))]
    return [order[starts[k]:starts[k + 1]] for k in range(len(uniq))]


def cluster_resample(members: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One cluster-bootstrap resample: as many groups as there are, drawn with replacement, all
    rows of a drawn group together."""
    pick = rng.integers(0, len(members), size=len(members))
    return np.concatenate([members[k] for k in pick])


def cluster_bootstrap(groups: Sequence, n_boot: int, seed: int = 0) -> list[np.ndarray]:
    """``n_boot`` cluster-bootstrap resamples of row indices (:func:`cluster_resample`), seeded:
    the one patient-level bootstrap of the comparison, the probe, ``evaluate`` and the pooled report."""
    rng = np.random.default_rng(seed)
    members = cluster_members(groups)
    return [cluster_resample(members, rng) for _ in range(int(n_boot))]


def _better(metric: str, d: np.ndarray | float):
    return d > 0 if HIGHER_IS_BETTER[metric] else d < 0


def paired_comparison(
    y_true: np.ndarray,
    probs_a: dict[int, np.ndarray],
    probs_b: dict[int, np.ndarray],
    groups: Sequence | None = None,
    metrics: Sequence[str] = PAPER_METRICS,
    n_boot: int = 1000,
    seed: int = 0,
    threshold: float = 0.5,
) -> dict:
    """Compare A against B on the seeds both have; see the module docstring for definitions.

    Args:
        y_true: test labels [n, n_labels] (or [n]).
        probs_a / probs_b: seed -> test probabilities, same shape as ``y_true``.
        groups: per test sample, the patient id (cluster bootstrap); ``None``: per sample.
        n_boot: bootstrap resamples (0 disables the CI).

    Returns:
        ``{"seeds": [...], "n_boot": .., "metrics": {m: {"diff", "per_seed", "a_better_seeds",
        "ci_low", "ci_high", "p_not_better", "n_valid"}}}``; differences are fractions.
    """
    yt = np.asarray(y_true, dtype=np.float64)
    if yt.ndim == 1:
        yt = yt[:, None]
    seeds = sorted(set(probs_a) & set(probs_b))
    if not seeds:
        raise ValueError("paired comparison needs at least one seed finished by both models")

    def as2d(p):
        p = np.asarray(p, dtype=np.float64)
        return p[:, None] if p.ndim == 1 else p

    pa = {s: as2d(probs_a[s]) for s in seeds}
    pb = {s: as2d(probs_b[s]) for s in seeds}
    out: dict = {"seeds": seeds, "n_boot": int(n_boot), "metrics": {}}
    per_seed = {
        m: [fast_metric(m, yt, pa[s], threshold) - fast_metric(m, yt, pb[s], threshold) for s in seeds]
        for m in metrics
    }

    # cluster bootstrap indices, drawn once and shared by all metrics (paired across metrics too)
    boots = cluster_bootstrap(np.arange(yt.shape[0]) if groups is None else groups, n_boot, seed) if n_boot > 0 else []

    for m in metrics:
        d = per_seed[m]
        finite = [x for x in d if not math.isnan(x)]
        res = {
            "diff": float(np.mean(finite)) if finite else math.nan,
            "per_seed": dict(zip([str(s) for s in seeds], d)),
            "a_better_seeds": int(sum(bool(_better(m, x)) for x in finite)),
            "n_seeds": len(seeds),
            "ci_low": math.nan, "ci_high": math.nan, "p_not_better": math.nan, "n_valid": 0,
        }
        if boots:
            stats = []
            for idx in boots:
                ytb = yt[idx]
                vals = [fast_metric(m, ytb, pa[s][idx], threshold) - fast_metric(m, ytb, pb[s][idx], threshold)
                        for s in seeds]
                v = float(np.mean(vals))
                if not math.isnan(v):
                    stats.append(v)
            if stats:
                arr = np.asarray(stats)
                res["ci_low"], res["ci_high"] = (float(x) for x in np.percentile(arr, [2.5, 97.5]))
                res["p_not_better"] = float(np.mean(~_better(m, arr)))
                res["n_valid"] = len(stats)
        out["metrics"][m] = res
    return out
