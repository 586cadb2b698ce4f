"""Aggregate finished runs and render them as markdown, LaTeX and CSV tables.

Each table is labelled with the data that produced it (``SYNTHETIC`` in capitals for generated
data), the command that produced it and the machine. Cells are ``mean ± std`` over a model's
cells, in % (x100) as in the paper: over its seeds, or over its split x seed cells when the folder
holds several split seeds (a record's ``split_seed``, else the config's); std is the sample
standard deviation (``ddof=1``), omitted for a single cell. The best mean per column is bold
(highest, or lowest for Brier and ECE), except where the bold would mislead:

* never a model with constant test predictions in some cell (every probability equal per label:
  the record's ``constant_predictions`` flag, or for records without ``flags`` the predictions
  file), marked §; its ranking metrics are those of a random order;
* never a model with another flag (e.g. ``diverged_after_best``), marked ¶, the flags listed;
* never ACC or F1 of a model whose predictions fall on one side of the 0.5 threshold for every
  label in some cell (its ACC is the majority class's share), marked ◦;
* never ``n/a`` (e.g. AUROC of a one-class test set; a note gives the reason).

``monitor_fallback`` cells (the validation monitor was undefined, the best step was selected on
validation loss) are marked ‡, models stopped by the step budget †. Every table states which
validation metric drives early stopping and selection, the test and validation counts, the
minimum AUROC difference its test set detects (:mod:`mingle_bench.report.power`) and, when the
counts are too small, an **UNDERPOWERED** note (and ``finalize`` a warning on stderr).

``mingle-bench table PATH --format md|latex|csv`` re-renders a results folder from its
``config.json``, ``runs.jsonl``, ``comparison.json`` and ``preds/`` (the test labels and each cell's
predictions: the counts, constant predictions and the metrics older records lack; without
``preds/`` those read n/a).
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tabulate import tabulate

from mingle_bench.metrics import HIGHER_IS_BETTER, MACRO_METRICS, METRIC_LABELS, METRIC_NAMES, predictions_constant
from mingle_bench.report.comparison import RESAMPLE_PATIENTS, RESAMPLE_SEEDS_PATIENTS
from mingle_bench.io import atomic_write_text
from mingle_bench.results import (COMPARISON_FILE, CONFIG_FILE, MODEL_CI_FILE, labels_path, load_array, load_runs,
                                  preds_path, read_json, read_json_object)

FORMATS = ("md", "latex", "csv")
#: appended to a model's name when some of its seeds stopped at the step budget, not on a validation plateau
BUDGET_MARK = " †"
BUDGET_NOTE = ("† stopped at the step budget (not on a validation plateau) in some seeds: see the "
               "'at budget' column and learning_curves.png; such a model may be under-trained.")
TABLE_FILES = {"md": "table.md", "latex": "table.tex", "csv": "table.csv"}
FALLBACK_MARK = " ‡"
CONSTANT_MARK = " §"
FLAG_MARK = " ¶"
ONE_SIDED_MARK = " ◦"
#: metrics computed at the 0.5 threshold: never bold for a model that predicts one class there
THRESHOLD_METRICS = ("acc", "f1")
#: the comparison's column (JSON key ``p_not_better``): the share of bootstrap resamples not in MINGLE's favour
SHARE_LABEL = "bootstrap share ≤ 0"


def split_seed_of(record: dict, default=None):
    """A record's split seed: its own ``split_seed``, else its config's, else ``default``."""
    if record.get("split_seed") is not None:
        return record["split_seed"]
    return (record.get("config") or {}).get("split_seed", default)


def cell_marks(record: dict, folder: str | os.PathLike | None = None, threshold: float = 0.5,
               y_test: np.ndarray | None = None) -> dict:
    """What a cell's bold and marks depend on: ``constant`` (every test probability equal per
    label: the ``constant_predictions`` flag, or for a record without ``flags`` its predictions
    file), ``one_sided`` (every label's predictions on one side of ``threshold``), ``fallback``
    (a ``monitor_fallback`` flag) and ``other_flags`` (the other flags, ``[{"kind", "message"}]``);
    and ``metrics``: the record's metrics, completed from its predictions file and ``y_test`` (the
    folder's test labels) where an older record lacks one (e.g. the macro means)."""
    flags = record.get("flags")
    kinds = {f.get("kind") for f in flags or []}
    out = {"constant": "constant_predictions" in kinds, "one_sided": False, "fallback": "monitor_fallback" in kinds,
           "other_flags": [f for f in flags or [] if f.get("kind") not in ("constant_predictions", "monitor_fallback")],
           "metrics": dict(record.get("metrics") or {})}
    path = preds_path(folder, record["model"], record["seed"]) if folder is not None else None
    if path is not None and path.exists():
        probs = np.asarray(load_array(path)["probs"])
        probs = probs[:, None] if probs.ndim == 1 else probs
        if probs.size:
            if flags is None:  # written before cells carried flags: the same rule as the trainer's
                out["constant"] = predictions_constant(probs)
            pred = probs >= threshold
            out["one_sided"] = bool((pred.all(axis=0) | (~pred).all(axis=0)).all())
            missing = [m for m in METRIC_NAMES if m not in out["metrics"]]
            if missing and y_test is not None and np.asarray(y_test).reshape(probs.shape[0], -1).shape == probs.shape:
                from mingle_bench.metrics import compute_metrics

                full = compute_metrics(np.asarray(y_test).reshape(probs.shape), probs, threshold)
                out["metrics"].update({m: full[m] for m in missing})
    return out

def display_name(model: str) -> str:
    """The model's name in tables, from its registry entry (an unregistered name as is)."""
    from mingle_bench.zoo import display_name as registered

    return registered(model)


def visits_line(models: Iterable[str]) -> str:
    """The header line that says which of ``models`` read the visits before the index visit
    (:func:`mingle_bench.baselines.sequence.model_reads_history`); the others see the index visit only."""
    from mingle_bench.baselines.sequence import model_reads_history
    from mingle_bench.zoo import get_model, list_models

    known = set(list_models())
    names = [display_name(m) for m in models if m in known and model_reads_history(get_model(m))]
    return ("visits: " + (f"{', '.join(names)} read the patient's visits up to the index visit; " if names else "")
            + "every other model sees the index visit only (the hypergraph models: its hyperedge)")


def data_kind(spec: str) -> str:
    """``SYNTHETIC``, ``MIMIC-III`` or ``MIMIC-IV`` for a data spec."""
    head = str(spec).split(":", 1)[0].lower()
    return {"synthetic": "SYNTHETIC", "mimic3": "MIMIC-III", "mimic4": "MIMIC-IV"}.get(head, head.upper())


def data_label(spec: str, data_id: str | None = None) -> str:
    """Human label of a data source for table captions and cells."""
    kind = data_kind(spec)
    name = data_id or spec
    if kind == "SYNTHETIC":
        return f"SYNTHETIC data ({name}; generated, not real patients)"
    return f"{kind} ({name})"


def aggregate(records: Iterable[dict], metrics: Sequence[str] = METRIC_NAMES, order: Sequence[str] = (),
              folder: str | os.PathLike | None = None, split_seed=None) -> list[dict]:
    """One row per model: ``model, n_seeds, seeds, split_seeds, <m>_mean, <m>_std, impl, train_s, device``
    and the marks of :func:`cell_marks` counted over its cells (``n_constant``, ``n_one_sided``,
    ``n_fallback``, ``flags``).

    A model's cells are all its (split seed, seed) records; ``n_seeds`` counts them (cells, not
    distinct seeds, when there are several split seeds). ``split_seed``: the folder's, for records
    that carry none. ``folder``: read the predictions files (constant or one-sided predictions of
    records without ``flags``). Means and stds are fractions (not %); nan when every cell was
    undefined. A metric an older record lacks (e.g. the macro means) is computed from its
    predictions file and the folder's test labels when both are there (cells of the folder's own
    split seed), and counts as undefined otherwise.
    """
    y_test = None
    if folder is not None and labels_path(folder).exists():
        y_test = load_array(labels_path(folder))["y_true"]
    by_model: dict[str, list[dict]] = {}
    for r in records:
        by_model.setdefault(r["model"], []).append(r)
    names = [m for m in order if m in by_model] + sorted(m for m in by_model if m not in order)
    rows = []
    for name in names:
        recs = sorted(by_model[name], key=lambda r: (str(split_seed_of(r, split_seed)), r["seed"]))
        row: dict = {"model": name, "n_seeds": len(recs), "seeds": sorted({r["seed"] for r in recs}),
                     "split_seeds": sorted({split_seed_of(r, split_seed) for r in recs}, key=str)}
        marks = [cell_marks(r, folder, y_test=y_test if split_seed_of(r, split_seed) == split_seed else None)
                 for r in recs]
        for m in metrics:
            vals = np.array([np.nan if c["metrics"].get(m) is None else c["metrics"][m] for c in marks], dtype=float)
            vals = vals[~np.isnan(vals)]
            row[f"{m}_mean"] = float(vals.mean()) if vals.size else math.nan
            row[f"{m}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else math.nan
        row["impl"] = ",".join(sorted({str(r.get("impl", "?")) for r in recs}))
        row["device"] = ",".join(sorted({str(r.get("device", "?")) for r in recs}))
        row["train_s"] = float(np.mean([r.get("train_s", math.nan) for r in recs]))
        row["n_budget"] = sum(1 for r in recs if r.get("stopped") == "budget")
        steps = sorted(r["best_step"] for r in recs if isinstance(r.get("best_step"), int))
        row["best_step"] = ("" if not steps else str(steps[0]) if len(steps) == 1
                            else f"{int(np.median(steps))} ({steps[0]}–{steps[-1]})")
        row["stopped_at_budget"] = f"{row['n_budget']}/{len(recs)}"
        row["n_constant"] = sum(m["constant"] for m in marks)
        row["n_one_sided"] = sum(m["one_sided"] for m in marks)
        row["n_fallback"] = sum(m["fallback"] for m in marks)
        row["flags"] = [{"seed": r["seed"], "split_seed": split_seed_of(r, split_seed), **f}
                        for r, m in zip(recs, marks) for f in m["other_flags"]]
        rows.append(row)
    return rows


def boldable(row: dict, metric: str) -> bool:
    """Whether ``row`` may be bold in ``metric`` (see the module docstring)."""
    if row.get("n_constant") or row.get("flags"):
        return False
    return not (metric in THRESHOLD_METRICS and row.get("n_one_sided"))


def row_marks(row: dict) -> str:
    """The footnote symbols after a model's name."""
    one_sided = row.get("n_one_sided") and not row.get("n_constant")  # constant implies one-sided: § says it
    return "".join(mark for key, mark in (("n_budget", BUDGET_MARK), ("n_fallback", FALLBACK_MARK),
                                          ("n_constant", CONSTANT_MARK), ("flags", FLAG_MARK)) if row.get(key)) \
        + (ONE_SIDED_MARK if one_sided else "")


def mark_notes(rows: list[dict], monitor: str = "aupr") -> list[str]:
    """One note per footnote symbol the rows use (budget first)."""
    footnotes = []
    if any(r.get("n_budget") for r in rows):
        footnotes.append(BUDGET_NOTE)
    fb = [f"{display_name(r['model'])} {r['n_fallback']}/{r['n_seeds']}" for r in rows if r.get("n_fallback")]
    if fb:
        footnotes.append(f"‡ monitor fallback in some cells ({', '.join(fb)}): validation {METRIC_LABELS.get(monitor, monitor)} was undefined "
                         "(a validation split without positives), so early stopping and the best step used validation loss.")
    const = [f"{display_name(r['model'])} {r['n_constant']}/{r['n_seeds']}" for r in rows if r.get("n_constant")]
    if const:
        footnotes.append(f"§ constant test predictions (every probability equal per label) in some cells ({', '.join(const)}): "
                         "their AUROC is that of a random order and their threshold metrics those of one class; never bold.")
    flagged = [f"{display_name(r['model'])} seed {f['seed']}: {f.get('kind')}: {f.get('message')}"
               for r in rows for f in r.get("flags") or []]
    if flagged:
        footnotes.append("¶ flagged cells, never bold: " + "; ".join(flagged) + ".")
    one = [f"{display_name(r['model'])} {r['n_one_sided']}/{r['n_seeds']}" for r in rows
           if r.get("n_one_sided") and not r.get("n_constant")]
    if one:
        footnotes.append(f"◦ every prediction on one side of 0.5 for every label in some cells ({', '.join(one)}): ACC and F1 "
                         "are those of predicting one class (ACC = that class's share); never bold in ACC or F1.")
    return footnotes


def fmt_pct(mean: float, std: float = math.nan, digits: int = 2) -> str:
    if mean is None or math.isnan(mean):
        return "n/a"
    s = f"{100 * mean:.{digits}f}"
    if std is not None and not math.isnan(std):
        s += f" ± {100 * std:.{digits}f}"
    return s


def best_rows(rows: list[dict], metric: str) -> set[str]:
    """The models with the best mean of ``metric`` among the rows that may be bold (:func:`boldable`)."""
    vals = [(r["model"], r.get(f"{metric}_mean", math.nan)) for r in rows if boldable(r, metric)]
    vals = [(m, v) for m, v in vals if v is not None and not math.isnan(v)]
    if not vals:
        return set()
    target = (max if HIGHER_IS_BETTER[metric] else min)(v for _, v in vals)
    return {m for m, v in vals if abs(v - target) < 1e-12}


def latex_escape(text: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            "±": r"$\pm$", "Δ": r"$\Delta$", "−": r"$-$", "≈": r"$\approx$", "–": "--", "≤": r"$\le$",
            "×": r"$\times$", "≥": r"$\ge$", "†": r"$^\dagger$", "‡": r"$^\ddagger$", "§": r"\S{}",
            "¶": r"\P{}", "◦": r"$^\circ$", "α": r"$\alpha$", "|": r"$|$"}
    return "".join(repl.get(c, c) for c in str(text))


def _bold(text: str, fmt: str) -> str:
    return f"**{text}**" if fmt == "md" else rf"\textbf{{{text}}}"


def metric_table(rows: list[dict], metrics: Sequence[str], fmt: str, extra_cols: Sequence[tuple[str, str]] = (),
                 cells_label: str = "seeds") -> str:
    """Render aggregated rows as a markdown (``md``) or LaTeX (``latex``) tabular."""
    best = {m: best_rows(rows, m) for m in metrics}
    header = ["Model"] + [METRIC_LABELS.get(m, m) for m in metrics] + [cells_label] + [h for h, _ in extra_cols]
    body = []
    for r in rows:
        cells = [display_name(r["model"]) + row_marks(r)]
        for m in metrics:
            c = fmt_pct(r.get(f"{m}_mean", math.nan), r.get(f"{m}_std", math.nan))
            if fmt == "latex":
                c = c.replace("±", r"$\pm$")
            cells.append(_bold(c, fmt) if r["model"] in best[m] else c)
        cells.append(str(r["n_seeds"]))
        cells += [str(r.get(key, "")) for _, key in extra_cols]
        if fmt == "latex":
            cells = [latex_escape(c) if i == 0 or i > len(metrics) else c for i, c in enumerate(cells)]
        body.append(cells)
    if fmt == "latex":
        header = [latex_escape(h) for h in header]
        return tabulate(body, header, tablefmt="latex_raw", disable_numparse=True)
    return tabulate(body, header, tablefmt="github", disable_numparse=True)


def comparison_lines(comp: dict | None, fmt: str) -> list[str]:
    """The paired MINGLE-vs-best-baseline comparison as table lines."""
    if not comp:
        return []
    a, b = display_name(comp["a"]), display_name(comp["b"])
    two_level = comp.get("resample") == RESAMPLE_SEEDS_PATIENTS
    chosen = comp.get("baseline_selected_by") or f"mean {comp['selected_by']}"
    chosen = " ".join(METRIC_LABELS.get(w, w) for w in chosen.split(" "))
    title = (f"Paired comparison: {a} vs the best baseline {b} (chosen by {chosen} over seeds; the test set plays no "
             f"part in the choice); "
             f"difference in points (x100), 95% bootstrap CI ({comp['n_boot']} draws) resampling "
             f"{comp.get('resample', RESAMPLE_PATIENTS)}"
             + (", beside the CI with the seeds held fixed" if two_level else "") +
             f"; seeds where {a} is better; {SHARE_LABEL}: the share of bootstrap draws in which {a} is not better "
             f"(Δ ≤ 0; Δ ≥ 0 for Brier and ECE), a descriptive share, not a p-value.")
    header = (["Metric", f"Δ ({a} − {b})", "95% CI"] + (["95% CI, seeds fixed"] if two_level else [])
              + [f"seeds {a} better", SHARE_LABEL])
    body = []
    for m, res in comp["metrics"].items():
        diff = res["diff"]
        p = res.get("p_not_better")
        body.append([METRIC_LABELS.get(m, m), "n/a" if _isnan(diff) else f"{100 * diff:+.2f}",
                     ci_text(res.get("ci_low"), res.get("ci_high"))]
                    + ([ci_text(*(res.get("ci_patients") or [None, None]))] if two_level else [])
                    + [f"{res['a_better_seeds']}/{res['n_seeds']}", "n/a" if _isnan(p) else f"{p:.3f}"])
    if fmt == "latex":
        body = [[latex_escape(c) for c in row] for row in body]
        tab = tabulate(body, [latex_escape(h) for h in header], tablefmt="latex_raw", disable_numparse=True)
        return ["", r"\begin{table}[t]", r"\centering", tab,
                rf"\caption{{{latex_escape(title)}}}", r"\end{table}"]
    return ["", title, "", tabulate(body, header, tablefmt="github", disable_numparse=True)]


def ci_text(lo, hi) -> str:
    """A difference's CI in points, ``[+1.23, +4.56]``; ``n/a`` when undefined."""
    return "n/a" if _isnan(lo) or _isnan(hi) else f"[{100 * lo:+.2f}, {100 * hi:+.2f}]"


def _isnan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def protocol_line(config: dict) -> str:
    """How hyperparameters were chosen: the papers' defaults, or N Optuna trials per model."""
    if config.get("protocol") == "tuned":
        return (f"protocol tuned: {config.get('tuning_trials')} Optuna trials per model on validation, "
                "then the best parameters with every seed")
    if config.get("tuned"):
        return "hyperparameters from tuning studies for " + ", ".join(sorted(config["tuned"]))
    return "protocol default: every model with its own paper's default hyperparameters"


def ci_columns(folder: str | os.PathLike | None, rows: list[dict]) -> list[tuple[str, str]]:
    """Each model's own 95% patient-bootstrap CI from the folder's ``model_ci.json`` (written by
    :func:`mingle_bench.report.finalize.model_cis`), set on ``rows`` as ``ci_<metric>`` text
    (``[70.1, 74.3]``, in %); returns the ``(header, key)`` columns, none without the file."""
    path = Path(folder) / MODEL_CI_FILE if folder is not None else None
    if path is None or not path.exists():
        return []
    data = read_json_object(path)
    models = data.get("models") or {}
    for r in rows:
        ci = (models.get(r["model"]) or {}).get("ci") or {}
        for m in data.get("metrics", []):
            c = ci.get(m) or {}
            lo, hi = c.get("ci_low"), c.get("ci_high")
            r[f"ci_{m}"] = "n/a" if _isnan(lo) or _isnan(hi) else f"[{100 * lo:.1f}, {100 * hi:.1f}]"
    return [(f"{METRIC_LABELS.get(m, m)} 95% CI", f"ci_{m}") for m in data.get("metrics", [])]


def ci_note(folder: str | os.PathLike | None) -> str:
    """What the model CI columns of :func:`ci_columns` resample ("" without ``model_ci.json``)."""
    path = Path(folder) / MODEL_CI_FILE if folder is not None else None
    if path is None or not path.exists():
        return ""
    data = read_json_object(path)
    return (f"95% CI columns: each model's own CI of its seed-mean metric, {data.get('n_boot')} bootstrap draws "
            f"resampling {data.get('resample', RESAMPLE_PATIENTS)}")


def encoder_line(config: dict) -> str:
    """Which text encoder made the concept and note vectors, at which arithmetic (stated in every
    table: bf16 vectors differ from fp32 ones in the last bits, and so may the cells trained on them)."""
    enc = config.get("encoder") or "default"
    if enc == "none":
        return "text encoder: none (no concept or note vectors)"
    if str(enc).startswith("tfidf"):
        return (f"text encoder: `{enc}` (TF-IDF then truncated SVD, fitted on the training split's texts only; "
                "deterministic, no neural arithmetic)")
    what = "all-MiniLM-L6-v2, mean pooling" if enc == "default" else enc
    precision = config.get("precision") or "fp32"
    how = ("bf16 autocast (fp32 weights; vectors at cosine >= 0.99996 to fp32's in results/encoder, not "
           "bit-identical to them)"
           if precision == "bf16" else f"{precision}")
    return f"text encoder: `{enc}` ({what}), {how}"


def provenance(config: dict) -> dict:
    return {
        "data": data_label(config.get("data", "?"), config.get("data_id")),
        "command": config.get("command", "?"),
        "machine": config.get("machine", "?"),
    }


def spread_text(rows: list[dict]) -> tuple[str, str]:
    """What the ± is over (a phrase) and the name of the cells column: ``("seeds", "seeds")`` for one
    split seed, ``("split × seed cells (3 split seeds)", "cells")`` for several."""
    split_seeds = sorted({s for r in rows for s in r.get("split_seeds") or []}, key=str)
    if len(split_seeds) > 1:
        return (f"split × seed cells ({len(split_seeds)} split seeds: {', '.join(map(str, split_seeds))}; "
                "std over all cells, splits and seeds together)", "cells")
    return "seeds (one split)", "seeds"


def table_metrics(n_labels: int) -> tuple[str, ...]:
    """The columns of a run table: the macro means only for a multi-label task (they equal the plain
    ones on a binary task)."""
    base = tuple(m for m in METRIC_NAMES if m not in MACRO_METRICS)
    return base + MACRO_METRICS if n_labels > 1 else base


def observed_auroc(rows: list[dict]) -> float:
    """The AUROC the minimum detectable difference is taken at: the median of the models' mean
    test AUROCs (constant predictors left out)."""
    vals = [r.get("auroc_mean") for r in rows if not r.get("n_constant")]
    vals = [v for v in vals if v is not None and not math.isnan(v)]
    return float(np.median(vals)) if vals else math.nan


def power_info(folder: str | os.PathLike, config: dict, rows: list[dict]) -> dict:
    """:func:`mingle_bench.report.power.power_summary` of a results folder (its test labels and
    config), at :func:`observed_auroc`; plus ``macro_labels`` (labels with both test classes) and
    ``one_class`` (the test set holds one class only)."""
    from mingle_bench.metrics import macro_labels
    from mingle_bench.report.power import power_summary, split_counts

    lab = labels_path(folder)
    y = load_array(lab)["y_true"] if lab.exists() else None
    info = power_summary(split_counts(config, y), observed_auroc(rows))
    if y is not None and y.size:
        keep = macro_labels(y)
        names = info["label_names"]
        info["macro_labels"] = int(keep.size)
        info["macro_left_out"] = [names[k] for k in range(len(names)) if k not in set(keep.tolist())]
        info["one_class"] = info["test_positives"] in (0, int(np.asarray(y).size))
    return info


def _count(v) -> str:
    return "n/a" if v is None else f"{v:,}"


def power_lines(info: dict, monitor: str, split_seed=None) -> list[str]:
    """Plain-text sentences (no markup) for a table's header: selection, counts, power, macro labels,
    and the reasons the table is underpowered (the first line, when it is). ``split_seed``: name the
    split the counts describe (a folder with several split seeds holds one split's test labels)."""
    multi = info.get("n_labels", 1) > 1
    lines = []
    if info.get("underpowered"):
        lines.append("UNDERPOWERED: " + " and ".join(info["underpowered"]) + ". Differences smaller than the "
                     "detectable difference below are noise, and early stopping and selection see few positives.")
    mon = METRIC_LABELS.get(monitor, monitor) + (", flattened" if multi and monitor in ("auroc", "aupr") else "")
    lines.append(f"selection: early stopping, the restored best step and the comparison's baseline all use validation "
                 f"{mon} (config monitor '{monitor}')")
    if multi:
        lines.append(
            f"counts: test {_count(info.get('test_samples'))} samples x {info['n_labels']} labels, "
            f"{_count(info.get('test_positives'))} positive cells (smallest label: {info.get('smallest_label')}, "
            f"{_count(info.get('smallest_label_positives'))}); validation {_count(info.get('val_samples'))} samples, "
            f"{_count(info.get('val_positives'))} positive cells"
            + (f" (smallest label: {info['smallest_val_label']}, {info['smallest_val_label_positives']})"
               if info.get("smallest_val_label") else ""))
    else:
        lines.append(f"counts: test {_count(info.get('test_samples'))} samples, {_count(info.get('test_positives'))} "
                     f"positives; validation {_count(info.get('val_samples'))} samples, "
                     f"{_count(info.get('val_positives'))} positives")
    if split_seed is not None:
        lines[-1] += f" (split seed {split_seed}; the other split seeds' splits are drawn the same way)"
    mdd = info.get("mdd", math.nan)
    if mdd is not None and not math.isnan(mdd):
        text = (f"power: the smallest AUROC difference between two models this test set detects at 80% power "
                f"(two-sided alpha 0.05) is {100 * mdd:.1f} points: Hanley-McNeil variance of AUROC at the observed "
                f"AUROC {100 * info['auroc']:.1f} (median of the models' means) with {info['test_positives']:,} "
                f"positive and {info['test_negatives']:,} negative {'cells' if multi else 'samples'}, and an assumed "
                f"correlation of {info['correlation']:g} between the two models' AUROC estimates")
        if multi:
            k = info.get("smallest_label_positives")
            text += (f"; cells taken as independent, so optimistic; for one label at the smallest label's count "
                     f"({k} positive{'' if k == 1 else 's'}): {100 * info.get('mdd_smallest_label', math.nan):.1f} points")
        lines.append(text)
    else:
        lines.append("power: not computable (no AUROC, or a test set with one class)")
    if multi and "macro_labels" in info:
        left = info.get("macro_left_out") or []
        lines.append(f"macro AUROC / AUPR: mean over the {info['macro_labels']} of {info['n_labels']} labels with both "
                     "classes in the test set" + (f" (left out, one class only: {', '.join(left)})" if left else ""))
    if info.get("one_class"):
        lines.append("AUROC, AUPR and their macro means are n/a: the test set holds only one class")
    return lines


def render_run(folder: str | os.PathLike, fmt: str = "md") -> str:
    """Render a ``results/<task>/<data-id>/`` folder as ``md``, ``latex`` or ``csv`` text."""
    folder = Path(folder)
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.exists():
        raise FileNotFoundError(f"{cfg_path} not found: is {folder} a results folder written by `mingle-bench run`?")
    config = read_json_object(cfg_path)
    records = load_runs(folder)
    if not records:
        raise ValueError(f"{folder / 'runs.jsonl'} holds no finished runs yet")
    rows = aggregate(records, METRIC_NAMES, order=config.get("models", ()), folder=folder,
                     split_seed=config.get("split_seed"))
    comp_path = folder / COMPARISON_FILE
    comp = read_json(comp_path) if comp_path.exists() else None
    prov = provenance(config)
    task = config.get("task", "?")
    monitor = config.get("monitor", "aupr")
    info = power_info(folder, config, rows)
    spread, cells_label = spread_text(rows)
    metrics = table_metrics(info.get("n_labels", 1))
    split_part = (f"split seed {config.get('split_seed')}" if cells_label == "seeds"
                  else f"split seeds {', '.join(map(str, sorted({s for r in rows for s in r['split_seeds']}, key=str)))}")
    seeds_note = (f"{split_part}; budget {config.get('max_steps')} optimiser steps for every "
                  f"model, validation every {config.get('eval_every')} steps, stop after {config.get('patience')} "
                  f"evaluations without a better validation {METRIC_LABELS.get(monitor, monitor)}, best step restored; "
                  f"note policy {config.get('notes', 'default')}; {protocol_line(config)}")
    plines = power_lines(info, monitor, config.get("split_seed") if cells_label == "cells" else None)
    if info.get("underpowered"):
        print_under = plines[0]
    if fmt == "csv":
        return rows_to_csv(rows, METRIC_NAMES, {
            "task": task, "data": config.get("data"), "data_kind": data_kind(config.get("data", "")),
            "command": prov["command"], "machine": prov["machine"], "monitor": monitor,
            "test_samples": info.get("test_samples"), "test_positives": info.get("test_positives"),
            "val_positives": info.get("val_positives"),
            "mdd_auroc_points": "" if _isnan(info.get("mdd")) else f"{100 * info['mdd']:.2f}",
            "underpowered": "; ".join(info.get("underpowered") or [])})
    macro_note = ("ACC at 0.5; AUROC and AUPR micro (flattened); AUROC macro and AUPR macro (mean over labels); macro F1"
                  if info.get("n_labels", 1) > 1 else
                  "ACC at 0.5; AUROC; AUPR; macro F1 over the two classes (binary task: the macro AUROC and AUPR in "
                  "runs.jsonl equal AUROC and AUPR)")
    footnotes = mark_notes(rows, monitor)
    ci_cols = ci_columns(folder, rows)
    cnote = ci_note(folder)
    if fmt == "md":
        lines = [f"# {task} on {prov['data']}", ""]
        if info.get("underpowered"):
            lines += [f"> **UNDERPOWERED**: {print_under[len('UNDERPOWERED: '):]}", ""]
        lines += [f"- data: **{prov['data']}**",
                  f"- command: `{prov['command']}`",
                  f"- machine: {prov['machine']}",
                  f"- protocol: {seeds_note}; test metrics on the whole test set; mean ± std over {spread}, in %",
                  f"- metrics: {macro_note}; Brier and ECE (lower is better)",
                  f"- {encoder_line(config)}",
                  f"- {visits_line(r['model'] for r in rows)}"]
        lines += [f"- {line}" for line in plines if not line.startswith("UNDERPOWERED")]
        lines += [f"- {cnote}"] if cnote else []
        lines += ["", metric_table(rows, metrics, "md", cells_label=cells_label,
                                   extra_cols=[*ci_cols, ("best step: median (range)", "best_step"),
                                               ("at budget", "stopped_at_budget"), ("impl", "impl"),
                                               ("device", "device")])]
        for note in footnotes:
            lines += ["", note]
        lines += ["", "Learning curves: [learning_curves.png](learning_curves.png)."]
        lines += comparison_lines(comp, "md")
        return "\n".join(lines) + "\n"
    extra = " ".join(latex_escape(n) for n in footnotes)
    caption = (f"{latex_escape(task)} on {latex_escape(prov['data'])}: mean $\\pm$ std over {latex_escape(spread)}, in \\%. "
               + (f"\\textbf{{UNDERPOWERED}}: {latex_escape(print_under[len('UNDERPOWERED: '):])} " if info.get("underpowered") else "")
               + " ".join(latex_escape(x[0].upper() + x[1:] + ".") for x in plines if not x.startswith("UNDERPOWERED"))
               + (f" {extra}" if extra else "")
               + (f" {latex_escape(cnote[0].upper() + cnote[1:])}." if cnote else "")
               + " V" + latex_escape(visits_line(r["model"] for r in rows)[1:] + ".")
               + f" Command: \\texttt{{{latex_escape(prov['command'])}}}. Machine: {latex_escape(prov['machine'])}.")
    lines = [f"% {task} on {prov['data']}", f"% command: {prov['command']}", f"% machine: {prov['machine']}"]
    if info.get("underpowered"):
        lines.append(f"% {print_under}")
    lines += [r"\begin{table}[t]", r"\centering", r"\small",
              metric_table(rows, metrics, "latex", cells_label=cells_label, extra_cols=ci_cols),
              rf"\caption{{{caption}}}", r"\end{table}"]
    lines += comparison_lines(comp, "latex")
    return "\n".join(lines) + "\n"


def rows_to_csv(rows: list[dict], metrics: Sequence[str], constant_cols: dict) -> str:
    """CSV with one row per model; means/stds in % and provenance columns on every row."""
    buf = io.StringIO()
    fields = (["model", "n_seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
              + ["n_stopped_at_budget", "impl", "device", "train_s"] + list(constant_cols))
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        out = {"model": r["model"], "n_seeds": r["n_seeds"], "n_stopped_at_budget": r.get("n_budget", 0),
               "impl": r["impl"], "device": r["device"],
               "train_s": f"{r['train_s']:.2f}"}
        for m in metrics:
            for s in ("mean", "std"):
                v = r[f"{m}_{s}"]
                out[f"{m}_{s}"] = "" if _isnan(v) else f"{100 * v:.4f}"
        out.update(constant_cols)
        w.writerow(out)
    return buf.getvalue()


def write_run_tables(folder: str | os.PathLike) -> list[Path]:
    """Write ``table.md``, ``table.tex`` and ``table.csv`` into a results folder (atomically)."""
    folder = Path(folder)
    return [atomic_write_text(folder / TABLE_FILES[f], render_run(folder, f)) for f in FORMATS]
