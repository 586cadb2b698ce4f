"""Figures: ROC and precision-recall curves of a run, its learning curves (validation metric by
optimiser step) and the relative-improvement bar chart.

Curves are computed on the whole test set; for multi-label tasks on the flattened label
matrix (micro), matching the AUROC/AUPR of the tables. Each model is one mean line over its
seeds with a ± std band (ROC/PR curves on a common FPR / recall grid; learning curves over the
seeds still running at each step); the legend gives the mean ± std AUROC / AUPR over seeds.
Figures are rendered with the non-interactive Agg backend and written atomically as PNG; the
plotting functions return a path-like :class:`Figure` that also says what was drawn.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from mingle_bench.metrics import MONITORS
from mingle_bench.io import atomic_write_bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG atomically and close it (also when writing fails)."""
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        return atomic_write_bytes(path, buf.getvalue())
    finally:
        _pyplot().close(fig)


#: points of the common false-positive-rate / recall grid the seeds' curves are interpolated on
GRID_POINTS = 201


@dataclass(frozen=True)
class Figure:
    """A figure written to ``path`` and what it drew: ``lines`` (mean curves, one per model and
    panel, plus the flat lines of one-shot fits), ``bands`` (± std bands) and the x-limits of
    its (first) panel. Path-like, so ``Path(figure)`` is the PNG."""

    path: Path
    lines: int
    bands: int
    xlim: tuple[float, float]

    def __fspath__(self) -> str:
        return os.fspath(self.path)


def _colours(n: int):
    """``n`` distinct colours: tab10 up to ten models, tab20 beyond."""
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(max(n, 1))]


def roc_on_grid(y_true: np.ndarray, probs: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """True-positive rate at each false-positive rate of ``grid`` (linear interpolation of the
    ROC curve, 0 at FPR 0), so the curves of several seeds can be averaged point by point."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y_true, probs)
    out = np.interp(grid, fpr, tpr)
    out[grid <= 0] = 0.0
    return out


def pr_on_grid(y_true: np.ndarray, probs: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Precision at each recall ``r`` of ``grid``: the precision of the highest threshold whose
    recall is still >= ``r``, i.e. the step curve whose area is the average precision (AUPR)."""
    from sklearn.metrics import precision_recall_curve

    prec, rec, _ = precision_recall_curve(y_true, probs)  # recall non-increasing along the arrays
    prec, rec = prec[:-1], rec[:-1]  # sklearn's closing point (recall 0, precision 1) is no threshold's
    # for each r: the last index k with rec[k] >= r (rec is non-increasing, so a prefix qualifies)
    k = np.searchsorted(-rec, -grid, side="right") - 1
    return prec[np.clip(k, 0, len(prec) - 1)]


def plot_curves(
    y_true: np.ndarray,
    probs: Mapping[str, Mapping[int, np.ndarray]],
    path: str | os.PathLike,
    title: str,
    names: Mapping[str, str] | None = None,
) -> Figure:
    """ROC (left) and precision-recall (right) on the test set: one mean curve per model over its
    seeds with a ± std band.

    ``probs`` maps model -> seed -> test probabilities (shape ``[n]`` or ``[n, n_labels]``,
    flattened with ``y_true`` as in the tables' micro AUROC/AUPR). Each seed's curve is put on a
    common grid of :data:`GRID_POINTS` false-positive rates (TPR interpolated, :func:`roc_on_grid`)
    or recalls (step precision, :func:`pr_on_grid`); the line is the mean over seeds and the band
    mean ± std (sample std, as in the tables; no band for one seed). The legend gives each model's mean ± std
    AUROC / AUPR in %. The PR panel carries the no-skill line at the test prevalence, labelled.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    plt = _pyplot()
    yt = np.asarray(y_true).ravel()
    grid = np.linspace(0.0, 1.0, GRID_POINTS)
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(12, 5.2))
    colours = _colours(len(probs))
    n_lines = n_bands = 0
    n_seeds = set()
    for colour, (model, by_seed) in zip(colours, probs.items()):
        if yt.size == 0 or yt.min() == yt.max() or not by_seed:
            continue
        preds = [np.asarray(by_seed[s], dtype=float).ravel() for s in sorted(by_seed)]
        n_seeds.add(len(preds))
        rocs = np.array([roc_on_grid(yt, yp, grid) for yp in preds])
        prs = np.array([pr_on_grid(yt, yp, grid) for yp in preds])
        aurocs = [100 * roc_auc_score(yt, yp) for yp in preds]
        auprs = [100 * average_precision_score(yt, yp) for yp in preds]
        name = (names or {}).get(model, model)
        for ax, curves, vals, key in ((ax_roc, rocs, aurocs, "AUROC"), (ax_pr, prs, auprs, "AUPR")):
            mean = curves.mean(axis=0)
            spread = f" ± {np.std(vals, ddof=1):.1f}" if len(vals) > 1 else ""  # the tables' sample std
            ax.plot(grid, mean, color=colour, lw=1.6, label=f"{name}: {key} {np.mean(vals):.1f}{spread}")
            n_lines += 1
            if len(curves) > 1:
                sd = curves.std(axis=0, ddof=1)
                ax.fill_between(grid, np.clip(mean - sd, 0, 1), np.clip(mean + sd, 0, 1), color=colour, alpha=0.15,
                                lw=0)
                n_bands += 1
    prevalence = float(yt.mean()) if yt.size else 0.0
    ax_roc.plot([0, 1], [0, 1], color="grey", ls=":", lw=1.0, label="chance")
    ax_pr.axhline(prevalence, color="grey", ls=":", lw=1.0, label=f"prevalence {prevalence:.3f} (no-skill)")
    seeds = (f"{n_seeds.pop()} seeds" if len(n_seeds) == 1 else "seeds") if n_seeds else "no seeds"
    ax_roc.set(xlabel="False positive rate", ylabel="True positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax_pr.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01))
    ax_roc.set_title(f"ROC: mean over {seeds} ± std band", fontsize=10)
    ax_pr.set_title(f"Precision-recall: mean over {seeds} ± std band", fontsize=10)
    for ax in (ax_roc, ax_pr):
        ax.legend(fontsize=7, loc="lower right" if ax is ax_roc else "upper right")
        ax.grid(alpha=0.3)
    fig.suptitle(_wrap(title), fontsize=10)
    return Figure(_save(fig, path), n_lines, n_bands, (0.0, 1.0))


def _wrap(title: str, width: int = 110) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(title, width)) or title


def plot_relative_improvement(
    values: Mapping[str, Mapping[str, float]], path: str | os.PathLike, title: str, reference: float | None = None
) -> Path:
    """Grouped bars: ``values[task][metric]`` = relative improvement in %.

    ``reference`` draws a dashed line at a published number (e.g. the abstract's +11.83%).
    """
    plt = _pyplot()
    tasks = list(values)
    metrics = sorted({m for v in values.values() for m in v}, key=["acc", "auroc", "aupr", "f1"].index)
    width = 0.8 / max(len(tasks), 1)
    x = np.arange(len(metrics))
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, t in enumerate(tasks):
        ys = [values[t].get(m, np.nan) for m in metrics]
        bars = ax.bar(x + i * width - 0.4 + width / 2, ys, width, label=t)
        for b, y in zip(bars, ys):
            if np.isfinite(y):
                ax.annotate(f"{y:+.1f}", (b.get_x() + b.get_width() / 2, y), ha="center",
                            va="bottom" if y >= 0 else "top", fontsize=7)
    if reference is not None:
        ax.axhline(reference, color="black", ls="--", lw=0.8, label=f"paper abstract: +{reference:.2f}%")
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xticks(x, [m.upper() for m in metrics])
    ax.set_ylabel("relative improvement of MINGLE over best baseline (%)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


#: share of the steps run added to the right of the learning curves' last step
X_MARGIN = 0.04


def mean_curve(curves: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std over seeds of validation curves of different lengths: ``(steps, mean, std,
    n)`` over the union of the seeds' steps, each step averaged over the ``n`` seeds that reached
    it (and hold a finite value there); the sample std, as in the tables (0 where ``n`` is 1)."""
    by_step: dict[float, list[float]] = {}
    for c in curves:
        for step, value in np.asarray(c if c is not None else [], dtype=float).reshape(-1, 2):
            if np.isfinite(value):
                by_step.setdefault(float(step), []).append(float(value))
    steps = np.array(sorted(by_step))
    vals = [by_step[s] for s in steps]
    return (steps, np.array([np.mean(v) for v in vals]),
            np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in vals]),
            np.array([len(v) for v in vals]))


def plot_learning_curves(
    curves: Mapping[tuple[str, int], list],
    path: str | os.PathLike,
    monitor: str,
    title: str,
    order: list[str] | None = None,
    names: Mapping[str, str] | None = None,
    max_steps: int | None = None,
) -> Figure:
    """Validation ``monitor`` against optimiser step: one mean line per model with a ± std band
    over its seeds.

    ``curves[(model, seed)]`` is ``[[step, value], ...]`` (a run record's ``curve``). Seeds stop
    early at different steps, so each step is averaged over the seeds still running there
    (:func:`mean_curve`; the legend says so): the line is solid while every seed runs and
    dashed once some have stopped; each seed's best step is a dot. The x-axis is
    cropped to the steps actually run (the largest last step over the cells, plus
    :data:`X_MARGIN`); the step budget ``max_steps`` is a dashed line when it lies in that
    range and otherwise named in the legend. Models without a step curve (one-shot fits such as
    ``logreg``: one point at step 0) are a flat dotted line at their mean validation value.
    """
    plt = _pyplot()
    models = list(order or [])
    models += sorted({m for m, _ in curves if m not in models})
    models = [m for m in models if any(k[0] == m for k in curves)]
    colours = _colours(len(models))
    sign = 1.0 if MONITORS.get(monitor, True) else -1.0
    last = max((float(np.asarray(c, dtype=float).reshape(-1, 2)[-1, 0]) for c in curves.values()
                if c is not None and len(c)), default=0.0)
    x_hi = last * (1 + X_MARGIN) if last > 0 else float(max_steps or 1)
    fig, ax = plt.subplots(figsize=(9, 5.2))
    n_lines = n_bands = 0
    for colour, model in zip(colours, models):
        label = (names or {}).get(model, model)
        seed_curves = [np.asarray(curves[(model, s)] or [], dtype=float).reshape(-1, 2)
                       for s in sorted(s for m, s in curves if m == model)]
        seed_curves = [c for c in seed_curves if len(c)]
        if not seed_curves:
            continue
        if all(len(c) == 1 and c[0, 0] == 0 for c in seed_curves):  # a one-shot fit: no steps
            vals = [c[0, 1] for c in seed_curves if np.isfinite(c[0, 1])]
            if vals:
                ax.axhline(float(np.mean(vals)), color=colour, ls=":", lw=1.4,
                           label=f"{label} (solver fit, no steps; {len(vals)} seeds)")
                n_lines += 1
            continue
        steps, mean, sd, n = mean_curve(seed_curves)
        # solid while every seed still runs, thin and dashed once some have stopped
        ax.plot(steps, mean, color=colour, lw=1.0, ls="--", alpha=0.8)
        ax.plot(steps, np.where(n == len(seed_curves), mean, np.nan), color=colour, lw=1.8,
                label=f"{label} ({len(seed_curves)} seeds)")
        n_lines += 1
        if len(seed_curves) > 1:
            ax.fill_between(steps, mean - sd, mean + sd, color=colour, alpha=0.15, lw=0)
            n_bands += 1
        for c in seed_curves:
            finite = np.isfinite(c[:, 1])
            if finite.any():
                j = int(np.argmax(np.where(finite, sign * c[:, 1], -np.inf)))
                ax.plot(c[j, 0], c[j, 1], "o", color=colour, ms=3, alpha=0.8)
    if max_steps and max_steps <= x_hi:
        ax.axvline(max_steps, color="grey", ls="--", lw=0.8, label=f"budget ({max_steps} steps)")
    elif max_steps:
        ax.plot([], [], " ", label=f"budget {max_steps} steps (not reached; axis cropped)")
    ax.plot([], [], "o", color="grey", ms=3, label="a seed's best step")
    ax.plot([], [], color="grey", lw=1.0, ls="--", label="dashed: mean of the seeds not yet stopped")
    ax.set_xlim(0, x_hi)
    ax.set(xlabel="optimiser step", ylabel=f"validation {monitor.upper()}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(alpha=0.3)
    ax.set_title(_wrap(title + "; line: mean over the seeds still running at each step, band: ± std"), fontsize=9)
    return Figure(_save(fig, path), n_lines, n_bands, (0.0, x_hi))
