"""Finalize a run's results folder: the paired comparison against the best baseline, the tables,
the ROC/PR curves and the learning curves, from the cells already finished in the folder.

The folder holds one run configuration (the runner checks that at start), so all its cells
are comparable; cells of an earlier invocation with other ``--models``/``--seeds`` are kept and
shown. Reads only the folder (:mod:`mingle_bench.results`); trains nothing.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mingle_bench import results as R
from mingle_bench.io import atomic_write_json

DEFAULT_BOOTSTRAP = 1000
LEARNING_CURVES_FILE = "learning_curves.png"


def finalize(folder: Path, monitor: str = "aupr", n_boot: int = DEFAULT_BOOTSTRAP
             ) -> tuple[list[dict], dict | None, list[Path]]:
    """Write ``comparison.json``, ``table.{md,tex,csv}``, ``curves.png``, ``learning_curves.png`` and
    ``report.html`` (tables and figures in one self-contained page) of ``folder``; returns the aggregated rows, the comparison (or ``None``) and the files written.
    An underpowered folder (:func:`mingle_bench.report.power.underpowered_reasons`) gets one warning
    line on stderr; its tables carry the note."""
    from mingle_bench.metrics import PAPER_METRICS, reported_metrics
    from mingle_bench.report.comparison import paired_comparison, resample_counts
    from mingle_bench.report.plots import plot_curves, plot_learning_curves
    from mingle_bench.report.html import write_report
    from mingle_bench.report.tables import SHARE_LABEL, aggregate, data_label, display_name, power_info, write_run_tables

    folder = Path(folder)
    config = R.read_json_object(folder / R.CONFIG_FILE)
    records = [r for r in R.load_runs(folder) if R.preds_path(folder, r["model"], r["seed"]).exists()]
    order = list(config.get("models", []))
    rows = aggregate(records, order=order, folder=folder, split_seed=config.get("split_seed"))
    lab = R.load_array(R.labels_path(folder))
    y_test, groups = lab["y_true"], lab.get("patient_group")
    probs: dict[str, dict[int, np.ndarray]] = {}
    for r in records:
        probs.setdefault(r["model"], {})[r["seed"]] = R.load_array(R.preds_path(folder, r["model"], r["seed"]))["probs"]
    comp = None
    drawn: list[np.ndarray] = []

    def counts() -> np.ndarray:  # the patient resamples, drawn at most once: the model CIs and the comparison share them
        if not drawn:
            drawn.append(resample_counts(len(y_test), groups, n_boot))
        return drawn[0]

    model_cis(folder, records, probs, y_test, n_boot, counts)
    best = select_baseline(records, monitor, order)
    if "mingle" in probs and best is not None and set(probs["mingle"]) & set(probs[best]):
        comp = paired_comparison(y_test, probs["mingle"], probs[best], counts=counts(),
                                 metrics=reported_metrics(y_test, PAPER_METRICS))
        comp.update({"a": "mingle", "b": best, "selected_by": monitor,
                     "p_not_better_is": f"{SHARE_LABEL}: the share of bootstrap resamples in which MINGLE is not "
                                        "better than the baseline (diff <= 0; >= 0 for Brier and ECE); a descriptive "
                                        "share, not a p-value",
                     "baseline_selected_by": f"validation {monitor}",
                     "definition": "diff = mean over seeds of metric(MINGLE) - metric(baseline); "
                                   "CI: 2.5/97.5 percentiles of a two-level bootstrap (the training seeds "
                                   "with replacement, then the test set by patient; ci_patients: the seeds "
                                   "held fixed); "
                                   "the baseline is the one with the best mean validation "
                                   f"{monitor} (the test set plays no part in choosing it)"})
    if comp:
        atomic_write_json(folder / R.COMPARISON_FILE, comp)
    else:
        (folder / R.COMPARISON_FILE).unlink(missing_ok=True)
    files: list[Path] = []
    if records:
        info = power_info(folder, config, rows)
        if info.get("underpowered"):
            print(f"mingle-bench: warning: {folder} is UNDERPOWERED: {' and '.join(info['underpowered'])}; its "
                  "tables say so", file=sys.stderr)
        files = write_run_tables(folder)
        names = [m for m in order if m in probs] + sorted(m for m in probs if m not in order)
        title = f"{config['task']} on {data_label(config['data'], config.get('data_id'))}: test set"
        files.append(Path(plot_curves(y_test, {m: probs[m] for m in names}, folder / "curves.png", title,
                                      names={m: display_name(m) for m in names})))
        curves = {(r["model"], r["seed"]): r.get("curve") or [] for r in records}
        files.append(Path(plot_learning_curves(
            curves, folder / LEARNING_CURVES_FILE, monitor,
            f"{config['task']} on {data_label(config['data'], config.get('data_id'))}: validation {monitor.upper()} "
            f"by optimiser step (budget {config.get('max_steps')})",
            order=names, names={m: display_name(m) for m in names}, max_steps=config.get("max_steps"))))
        files.append(write_report(folder))  # the tables and figures in one self-contained page
    return rows, comp, files


#: the metrics of each model's own CI: AUROC and AUPR; on a multi-label task their macro means
#: (the flattened ones' CIs are narrow and flatter every model, docs/runner.md)
CI_METRICS: tuple[str, ...] = ("auroc", "aupr")
CI_METRICS_MULTI: tuple[str, ...] = ("auroc_macro", "aupr_macro")


def ci_metrics(y_test: np.ndarray) -> tuple[str, ...]:
    from mingle_bench.metrics import is_multi_label

    return CI_METRICS_MULTI if is_multi_label(y_test) else CI_METRICS


def model_cis(folder: Path, records: list[dict], probs: dict[str, dict[int, np.ndarray]], y_test: np.ndarray,
              n_boot: int, counts: Callable[[], np.ndarray]) -> dict:
    """Write ``model_ci.json``: each model's own bootstrap 95% CI (training seeds, then patients) of
    :func:`ci_metrics` (mean over its seeds; :func:`mingle_bench.report.comparison.model_ci`, the
    resamples of the paired comparison). A model whose cells (their ``preds_sha256``), resample
    count and metrics are those of the file keeps its entry: the CIs of a long run are computed
    once per new cell, not at every resume. ``n_boot`` 0 removes the file. ``counts`` returns the
    ``n_boot`` patient resamples (:func:`mingle_bench.report.comparison.resample_counts`); it is
    called only when an entry must be computed."""
    from mingle_bench.report.comparison import RESAMPLE_SEEDS_PATIENTS, model_ci

    path = folder / R.MODEL_CI_FILE
    if n_boot <= 0 or not probs:
        path.unlink(missing_ok=True)
        return {}
    metrics = list(ci_metrics(y_test))
    old = R.read_json_object(path) if path.exists() else {}
    same = old.get("n_boot") == n_boot and old.get("metrics") == metrics and old.get("resample") == RESAMPLE_SEEDS_PATIENTS
    cells = {m: sorted(f"{r['seed']}:{r.get('preds_sha256')}" for r in records if r["model"] == m) for m in probs}
    out = {"n_boot": int(n_boot), "metrics": metrics, "seed": 0, "resample": RESAMPLE_SEEDS_PATIENTS,
           "definition": "per model: the mean over its seeds of each metric, and the 2.5/97.5 percentiles of that "
                         "mean over a two-level bootstrap: its training seeds with replacement, then a "
                         "patient-level (cluster) bootstrap of the test set, the paired comparison's resamples",
           "models": {}}
    for m in sorted(probs):
        prev = (old.get("models") or {}).get(m) if same else None
        if prev and prev.get("cells") == cells[m]:
            out["models"][m] = prev
            continue
        out["models"][m] = {"cells": cells[m], "ci": model_ci(y_test, probs[m], counts(), metrics)}
    atomic_write_json(path, out)
    return out


def select_baseline(records: list[dict], monitor: str, order: Sequence[str] = ()) -> str | None:
    """The best baseline (any model outside the MINGLE family) by its mean *validation*
    ``monitor`` over seeds; ``None`` when there is none. Ties go to the model listed first in
    ``order`` (the run's ``--models``), then by name."""
    from mingle_bench.metrics import is_better
    from mingle_bench.zoo import list_models

    mingle_family = set(list_models("mingle"))
    vals: dict[str, list[float]] = {}
    for r in records:
        v = (r.get("val_metrics") or {}).get(monitor)
        if r["model"] not in mingle_family and v is not None and math.isfinite(float(v)):
            vals.setdefault(r["model"], []).append(float(v))
    rank = {m: i for i, m in enumerate(order)}
    best = None
    for m, vs in sorted(vals.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])):
        mean = float(np.mean(vs))
        if best is None or is_better(monitor, mean, best[1]):
            best = (m, mean)
    return None if best is None else best[0]


def comparison_sentence(comp: dict | None) -> str:
    """One line: MINGLE against the validation-chosen baseline, with its bootstrap CI (or "")."""
    from mingle_bench.metrics import METRIC_LABELS

    if not comp:
        return ""
    m = comp["selected_by"]
    r = comp["metrics"].get(m) or next(iter(comp["metrics"].values()))
    return (f"MINGLE vs best baseline {comp['b']}: {METRIC_LABELS.get(m, m)} {100 * r['diff']:+.2f} points "
            f"(95% CI {100 * r['ci_low']:+.2f} to {100 * r['ci_high']:+.2f}; better in {r['a_better_seeds']}/{r['n_seeds']} seeds)"
            if r["ci_low"] is not None and r["ci_low"] == r["ci_low"] else "")
