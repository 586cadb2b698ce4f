"""Paired comparison of two models on one test set: per-seed signs and a two-level bootstrap CI
over the training seeds and the test patients.

For models A (MINGLE) and B (the best baseline), trained with the same seeds on the same split,
and for each metric m:

* per-seed difference  d_s = m(A_s) - m(B_s), for every seed s both models finished;
* mean difference      d = mean_s d_s  (the difference of the two table means);
* sign                 how many seeds have A better than B (direction-aware: lower Brier/ECE wins);
* bootstrap CI         a two-level (nested) bootstrap, ``n_boot`` draws with fixed seeds. Each draw
                       takes the S training seeds with replacement (seed s of A stays paired with
                       seed s of B), then the test set *by patient* (a cluster bootstrap: all
                       samples of a drawn patient come together, so correlated samples are not
                       treated as independent); on it, d* = mean over the drawn seeds of
                       [m(A_s) - m(B_s)]; the CI is the 2.5/97.5 percentiles of d*. The seed level
                       makes the CI cover what another set of training seeds would change, which
                       the patient level alone does not (measured on synthetic:large: a fourth
                       seed moved two phenotype gaps outside their 3-seed patient-only CIs).
                       *Assumptions*: seeds are exchangeable draws of the training randomness,
                       patients independent draws of the population. With few seeds the seed level
                       is coarse (a bootstrap over S values has variance (S-1)/S of the sample's),
                       so with S <= 5 the interval is still a little narrow. ``ci_patients`` keeps
                       the patient-only interval (the seeds held fixed) for comparison;
                       ``resample_seeds=False`` reports it as the CI. With one seed the two agree.
                       ``p_not_better`` is the fraction of draws where A is not better than B
                       (d* <= 0; >= 0 for Brier/ECE): the tables' "bootstrap share <= 0", a
                       description of the bootstrap distribution, not a p-value.

The metrics are the paper's four by default; ``finalize`` adds the macro AUROC and AUPR on a
multi-label task (:data:`mingle_bench.metrics.MACRO_METRICS`).

Resamples where a metric is undefined (e.g. only one class drawn, AUROC) are dropped and
counted in ``n_valid``.
"""
from __future__ import annotations

import math
import warnings
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


#: how the CIs over trained models resample (:func:`paired_comparison`, :func:`model_ci`)
RESAMPLE_SEEDS_PATIENTS = "training seeds, then test patients"
RESAMPLE_PATIENTS = "test patients (training seeds fixed)"


def seed_draws(n_boot: int, n_seeds: int, seed: int = 0) -> np.ndarray:
    """``[n_boot, n_seeds]``: the training-seed level of the two-level bootstrap, positions into a
    sorted seed list drawn with replacement; its own stream (``seed``, ``n_seeds``), so it does not
    shift the patient resamples drawn from ``seed``."""
    rng = np.random.default_rng([int(seed), int(n_seeds), 0x5EED])
    return rng.integers(0, n_seeds, size=(int(n_boot), int(n_seeds)))


def seed_level_mean(per_seed: np.ndarray, picks: np.ndarray | None) -> np.ndarray:
    """``[B]``: per draw b, the mean over the seeds ``picks[b]`` of ``per_seed[:, b]`` (``[S, B]``,
    one bootstrap value per seed and patient resample); the plain seed mean when ``picks`` is ``None``."""
    per_seed = np.asarray(per_seed, dtype=np.float64)
    if picks is None:
        return per_seed.mean(0)
    return np.take_along_axis(per_seed.T, picks, axis=1).mean(1)


#: floats per weight matrix :func:`boot_metric` builds at once (resamples x cells; ~8 MB)
BOOT_CELLS = 1_000_000


def _columns(a) -> np.ndarray:
    """``a`` as float64 ``[n, L]`` (a 1-D ``[n]`` becomes one column)."""
    a = np.asarray(a, dtype=np.float64)
    return a[:, None] if a.ndim == 1 else a


def boot_counts(boots: Sequence[np.ndarray], n: int) -> np.ndarray:
    """``[B, n]``: how many times each test row appears in each resample (its weight)."""
    return np.stack([np.bincount(np.asarray(b), minlength=n) for b in boots]).astype(np.float64) if len(boots) \
        else np.zeros((0, n))


def resample_counts(n: int, groups: Sequence | None, n_boot: int, seed: int = 0) -> np.ndarray:
    """The ``[B, n]`` row multiplicities (:func:`boot_counts`) of ``n_boot`` patient-level resamples
    of ``n`` test rows (:func:`cluster_bootstrap` of ``groups``; each row its own cluster when
    ``None``); ``[0, n]`` when ``n_boot`` is 0. Drawn once, they serve every paired comparison and
    model CI of one test set, so all of them read the same resamples."""
    boots = cluster_bootstrap(np.arange(n) if groups is None else groups, n_boot, seed) if n_boot > 0 else []
    return boot_counts(boots, n)


def _groups(score: np.ndarray, descending: bool) -> tuple[np.ndarray, np.ndarray]:
    """The stable sort order of ``score`` and the start of each run of tied scores in it."""
    order = np.argsort(-score if descending else score, kind="mergesort")
    s = score[order]
    return order, np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]


def _w_pos_neg(y: np.ndarray, W: np.ndarray, order: np.ndarray, starts: np.ndarray):
    """Per resample and tie group: the weight of positives and of negatives, ``[B, G]`` each."""
    ys = y[order]
    Ws = W[:, order]
    return np.add.reduceat(Ws * ys, starts, axis=1), np.add.reduceat(Ws * (1.0 - ys), starts, axis=1)


def _w_auroc(y: np.ndarray, s: np.ndarray, W: np.ndarray, groups=None) -> np.ndarray:
    """AUROC of each resample (rows weighted by ``W`` ``[B, m]``): the Mann-Whitney form of
    :func:`~mingle_bench.metrics.auroc_mann_whitney`, ties counting 1/2; nan without both classes."""
    order, starts = groups or _groups(s, descending=False)
    P, N = _w_pos_neg(y, W, order, starts)
    below = np.cumsum(N, axis=1) - N
    tp, tn = P.sum(1), N.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (P * (below + 0.5 * N)).sum(1) / (tp * tn)
    out[(tp == 0) | (tn == 0)] = np.nan
    return out


def _w_ap(y: np.ndarray, s: np.ndarray, W: np.ndarray, groups=None) -> np.ndarray:
    """Average precision of each resample, over distinct thresholds as
    :func:`~mingle_bench.metrics.average_precision`; nan without positives."""
    order, starts = groups or _groups(s, descending=True)
    P, N = _w_pos_neg(y, W, order, starts)
    tp, fp = np.cumsum(P, axis=1), np.cumsum(N, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1.0), 0.0)
        out = (P * prec).sum(1) / P.sum(1)
    out[P.sum(1) == 0] = np.nan
    return out


def _w_macro(fn, descending: bool, yt: np.ndarray, yp: np.ndarray, C: np.ndarray) -> np.ndarray:
    """The mean of ``fn`` over the label columns with both classes in each resample (nan if none)."""
    vals = np.full((C.shape[0], yt.shape[1]), np.nan)
    for col in range(yt.shape[1]):
        y, s = yt[:, col], yp[:, col]
        pos = C @ y
        keep = (pos > 0) & (pos < C.sum(1))
        if keep.any():
            vals[keep, col] = fn(y, s, C[keep], _groups(s, descending))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(vals, axis=1)


def boot_metric(name: str, yt: np.ndarray, yp: np.ndarray, counts: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``fast_metric(name, yt[idx], yp[idx])`` for every resample at once, ``[B]``: a resample with
    replacement is the test rows weighted by their multiplicities (``counts``, :func:`boot_counts`),
    so each metric is computed from one sort of the scores and weighted sums (the same values as
    on the resampled arrays, up to floating-point summation order; tested). ``yt``/``yp``: ``[n, L]``."""
    yt, yp = _columns(yt), _columns(yp)
    n, n_labels = yt.shape
    out = np.empty(counts.shape[0])
    flat_groups = None
    if name in ("auroc", "aupr"):
        ft, fp = yt.ravel(), yp.ravel()
        order, starts = flat_groups = _groups(fp, descending=name == "aupr")
        rows = np.arange(ft.size) // n_labels  # the test row of each flattened cell
    chunk = max(1, BOOT_CELLS // (n * (n_labels if name in ("auroc", "aupr") else 1)))
    for lo in range(0, counts.shape[0], chunk):
        C = counts[lo:lo + chunk]
        if name in ("auroc", "aupr"):
            W = np.zeros((C.shape[0], ft.size))
            W[:, order] = C[:, rows[order]]
            out[lo:lo + len(C)] = (_w_auroc if name == "auroc" else _w_ap)(ft, fp, W, flat_groups)
        elif name == "auroc_macro":
            out[lo:lo + len(C)] = _w_macro(_w_auroc, False, yt, yp, C)
        elif name == "aupr_macro":
            out[lo:lo + len(C)] = _w_macro(_w_ap, True, yt, yp, C)
        elif name == "acc":
            out[lo:lo + len(C)] = (C @ (yt == (yp >= threshold)).sum(1)) / (C.sum(1) * n_labels)
        elif name == "brier":
            out[lo:lo + len(C)] = (C @ ((yp - yt) ** 2).sum(1)) / (C.sum(1) * n_labels)
        elif name == "f1":
            pred = (yp >= threshold).astype(np.float64)
            t, q = (np.c_[yt, 1 - yt], np.c_[pred, 1 - pred]) if n_labels == 1 else (yt, pred)
            tp, fp_, fn = C @ (t * q), C @ ((1 - t) * q), C @ (t * (1 - q))
            denom = 2 * tp + fp_ + fn
            f1 = np.divide(2 * tp, denom, out=np.zeros_like(denom), where=denom > 0)
            out[lo:lo + len(C)] = f1.mean(1)
        else:  # any other metric: on the resampled arrays themselves
            for k, c in enumerate(C):
                idx = np.repeat(np.arange(n), c.astype(np.int64))
                out[lo + k] = fast_metric(name, yt[idx], yp[idx], threshold)
    return out


def model_ci(y_true: np.ndarray, probs: dict[int, np.ndarray], counts: np.ndarray,
             metrics: Sequence[str] = ("auroc", "aupr"), threshold: float = 0.5, resample_seeds: bool = True,
             seed: int = 0) -> dict:
    """One model's own bootstrap CI: per metric ``{"value", "ci_low", "ci_high", "n_valid"}``, where
    ``value`` is the mean over seeds of the metric (the table's mean) and the CI the 2.5/97.5
    percentiles of that seed mean over the draws of the two-level bootstrap of the module docstring
    (training seeds with replacement, :func:`seed_draws` of ``seed``, then the patient resamples
    ``counts``, the paired comparison's, :func:`boot_counts`; ``resample_seeds=False``: the patient
    level only); draws where the metric is undefined are dropped (``n_valid`` counts the rest)."""
    yt, ps = _columns(y_true), [_columns(probs[s]) for s in sorted(probs)]
    picks = seed_draws(len(counts), len(ps), seed) if resample_seeds and len(counts) else None
    out = {}
    for m in metrics:
        per_seed = [v for v in (fast_metric(m, yt, p, threshold) for p in ps) if not math.isnan(v)]
        boot = (seed_level_mean([boot_metric(m, yt, p, counts, threshold) for p in ps], picks) if len(counts)
                else np.array([]))
        boot = boot[~np.isnan(boot)]
        out[m] = {"value": float(np.mean(per_seed)) if per_seed else math.nan,
                  "ci_low": float(np.percentile(boot, 2.5)) if boot.size else math.nan,
                  "ci_high": float(np.percentile(boot, 97.5)) if boot.size else math.nan,
                  "n_valid": int(boot.size)}
    return out


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
    counts: np.ndarray | None = None,
    resample_seeds: bool = True,
) -> dict:
    """Compare A against B on the seeds both have; see the module docstring for definitions.

    Args:
        y_true: test labels [n, n_labels] (or [n]).
        probs_a / probs_b: seed -> test probabilities, same shape as ``y_true``.
        groups: per test sample, the patient id (cluster bootstrap); ``None``: per sample.
        n_boot: bootstrap resamples (0 disables the CI).
        counts: the resamples already drawn (:func:`boot_counts` of :func:`cluster_bootstrap`), for
            a caller that compares several pairs on one test set; replaces ``groups``/``n_boot``
            (``seed`` still seeds the training-seed level, :func:`seed_draws`).
        resample_seeds: the two-level bootstrap (default); ``False``: the patient level only.

    Returns:
        ``{"seeds": [...], "n_boot": .., "resample": .., "metrics": {m: {"diff", "per_seed",
        "a_better_seeds", "ci_low", "ci_high", "ci_patients", "p_not_better", "n_valid"}}}``;
        differences are fractions; ``ci_patients`` is the patient-only ``[low, high]``.
    """
    yt = _columns(y_true)
    seeds = sorted(set(probs_a) & set(probs_b))
    if not seeds:
        raise ValueError("paired comparison needs at least one seed finished by both models")

    pa = {s: _columns(probs_a[s]) for s in seeds}
    pb = {s: _columns(probs_b[s]) for s in seeds}
    if counts is None:  # drawn once, shared by all metrics (paired across metrics too)
        counts = resample_counts(yt.shape[0], groups, n_boot, seed)
    picks = seed_draws(len(counts), len(seeds), seed) if resample_seeds and len(counts) else None
    out: dict = {"seeds": seeds, "n_boot": int(len(counts)),
                 "resample": RESAMPLE_SEEDS_PATIENTS if picks is not None and len(seeds) > 1 else RESAMPLE_PATIENTS,
                 "metrics": {}}
    per_seed = {
        m: [fast_metric(m, yt, pa[s], threshold) - fast_metric(m, yt, pb[s], threshold) for s in seeds]
        for m in metrics
    }


    for m in metrics:
        d = per_seed[m]
        finite = [x for x in d if not math.isnan(x)]
        res = {
            "diff": float(np.mean(finite)) if finite else math.nan,
            "per_seed": dict(zip([str(s) for s in seeds], d)),
            "a_better_seeds": int(sum(bool(_better(m, x)) for x in finite)),
            "n_seeds": len(seeds),
            "ci_low": math.nan, "ci_high": math.nan, "ci_patients": [math.nan, math.nan],
            "p_not_better": math.nan, "n_valid": 0,
        }
        if len(counts):  # resamples as row multiplicities: every metric from one sort per seed (boot_metric)
            d_seed = np.stack([boot_metric(m, yt, pa[s], counts, threshold) - boot_metric(m, yt, pb[s], counts, threshold)
                               for s in seeds])
            fixed = d_seed.mean(0)
            fixed = fixed[~np.isnan(fixed)]
            if fixed.size:
                res["ci_patients"] = [float(x) for x in np.percentile(fixed, [2.5, 97.5])]
            d_boot = seed_level_mean(d_seed, picks)
            arr = d_boot[~np.isnan(d_boot)]
            if arr.size:
                res["ci_low"], res["ci_high"] = (float(x) for x in np.percentile(arr, [2.5, 97.5]))
                res["p_not_better"] = float(np.mean(~_better(m, arr)))
                res["n_valid"] = int(arr.size)
        out["metrics"][m] = res
    return out
