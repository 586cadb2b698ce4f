"""Figures: ROC and precision-recall curves of a run, its learning curves (validation metric by
optimiser step) and the relative-improvement bar chart.

Curves are computed on the whole test set; for multi-label tasks on the flattened label
matrix (micro), matching the AUROC/AUPR of the tables. Each seed is drawn as a thin line in
its model's colour; the legend gives the mean AUROC / AUPR over seeds. Figures are rendered
with the non-interactive Agg backend and written atomically as PNG.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from mingle_bench.metrics import HIGHER_IS_BETTER
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


def plot_curves(
    y_true: np.ndarray,
    probs: Mapping[str, Mapping[int, np.ndarray]],
    path: str | os.PathLike,
    title: str,
    names: Mapping[str, str] | None = None,
) -> Path:
    """ROC (left) and PR (right) curves; ``probs`` maps model -> seed -> test probabilities."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    plt = _pyplot()
    yt = np.asarray(y_true).ravel()
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(11, 4.8))
    colours = plt.get_cmap("tab10")
    for i, (model, by_seed) in enumerate(probs.items()):
        colour = colours(i % 10)
        aurocs, auprs = [], []
        for j, seed in enumerate(sorted(by_seed)):
            yp = np.asarray(by_seed[seed]).ravel()
            if yt.min() == yt.max():
                continue
            fpr, tpr, _ = roc_curve(yt, yp)
            prec, rec, _ = precision_recall_curve(yt, yp)
            aurocs.append(roc_auc_score(yt, yp))
            auprs.append(average_precision_score(yt, yp))
            label = None
            if j == 0:
                label = (names or {}).get(model, model)
            ax_roc.plot(fpr, tpr, color=colour, lw=1.0, alpha=0.7, label=label)
            ax_pr.step(rec, prec, where="post", color=colour, lw=1.0, alpha=0.7, label=label)
        if aurocs:
            for ax, vals, key in ((ax_roc, aurocs, "AUROC"), (ax_pr, auprs, "AUPR")):
                handle = [h for h in ax.get_lines() if h.get_label() == (names or {}).get(model, model)]
                if handle:
                    handle[-1].set_label(f"{handle[-1].get_label()} ({key} {100 * np.mean(vals):.1f})")
    prevalence = float(yt.mean()) if yt.size else 0.0
    ax_roc.plot([0, 1], [0, 1], color="grey", ls=":", lw=0.8)
    ax_pr.axhline(prevalence, color="grey", ls=":", lw=0.8)
    ax_roc.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    ax_pr.set(xlabel="Recall", ylabel="Precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.01))
    for ax in (ax_roc, ax_pr):
        ax.legend(fontsize=7, loc="lower right" if ax is ax_roc else "upper right")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


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


def plot_learning_curves(
    curves: Mapping[tuple[str, int], list],
    path: str | os.PathLike,
    monitor: str,
    title: str,
    order: list[str] | None = None,
    names: Mapping[str, str] | None = None,
    max_steps: int | None = None,
) -> Path:
    """Validation ``monitor`` against optimiser step, one line per model x seed.

    ``curves[(model, seed)]`` is ``[[step, value], ...]`` (a run record's ``curve``). Each
    seed is a thin line in its model's colour, its best step marked with a dot; a dashed
    vertical line marks the step budget. Models without a curve (one-shot fits such as
    ``logreg``) are drawn as a single dot at step 0.
    """
    plt = _pyplot()
    models = list(order or [])
    models += sorted({m for m, _ in curves if m not in models})
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for i, model in enumerate(m for m in models if any(k[0] == m for k in curves)):
        colour = colours(i % 10)
        label = (names or {}).get(model, model)
        for seed in sorted(s for m, s in curves if m == model):
            pts = np.asarray(curves[(model, seed)] or [], dtype=float).reshape(-1, 2)
            if not len(pts):
                continue
            ax.plot(pts[:, 0], pts[:, 1], color=colour, lw=1.0, alpha=0.75, label=label,
                    marker="o" if len(pts) == 1 else None, ms=3)
            finite = np.isfinite(pts[:, 1])
            if finite.any():
                sign = 1.0 if HIGHER_IS_BETTER.get(monitor, True) else -1.0
                j = int(np.argmax(np.where(finite, sign * pts[:, 1], -np.inf)))
                ax.plot(pts[j, 0], pts[j, 1], "o", color=colour, ms=3)
            label = None
    if max_steps:
        ax.axvline(max_steps, color="grey", ls="--", lw=0.8, label=f"budget ({max_steps} steps)")
    ax.set(xlabel="optimiser step", ylabel=f"validation {monitor.upper()}")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
