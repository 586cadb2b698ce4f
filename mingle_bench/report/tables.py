"""Aggregate finished runs and render them as markdown, LaTeX and CSV tables.

Each table is labelled with the data that produced it (``SYNTHETIC`` in capitals for generated
data), the command that produced it and the machine. Cells are ``mean ± std`` over seeds, in %
(x100) as in the paper; std is the sample standard deviation (``ddof=1``), omitted for a
single seed. The best mean per column is bold (highest, or lowest for Brier and ECE).

``mingle-bench table PATH --format md|latex|csv`` re-renders a results folder from its
``config.json``, ``runs.jsonl`` and ``comparison.json`` alone.
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

from mingle_bench.metrics import HIGHER_IS_BETTER, METRIC_LABELS, METRIC_NAMES
from mingle_bench.io import atomic_write_text
from mingle_bench.results import COMPARISON_FILE, CONFIG_FILE, load_runs, read_json, read_json_object

FORMATS = ("md", "latex", "csv")
#: appended to a model's name when some of its seeds stopped at the step budget, not on a validation plateau
BUDGET_MARK = " †"
BUDGET_NOTE = ("† stopped at the step budget (not on a validation plateau) in some seeds: see the "
               "'at budget' column and learning_curves.png; such a model may be under-trained.")
TABLE_FILES = {"md": "table.md", "latex": "table.tex", "csv": "table.csv"}

def display_name(model: str) -> str:
    """The model's name in tables, from its registry entry (an unregistered name as is)."""
    from mingle_bench.zoo import display_name as registered

    return registered(model)


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


def aggregate(records: Iterable[dict], metrics: Sequence[str] = METRIC_NAMES, order: Sequence[str] = ()) -> list[dict]:
    """One row per model: ``model, n_seeds, seeds, <m>_mean, <m>_std, impl, train_s, device``.

    Means and stds are fractions (not %); nan when every seed was undefined.
    """
    by_model: dict[str, list[dict]] = {}
    for r in records:
        by_model.setdefault(r["model"], []).append(r)
    names = [m for m in order if m in by_model] + sorted(m for m in by_model if m not in order)
    rows = []
    for name in names:
        recs = sorted(by_model[name], key=lambda r: r["seed"])
        row: dict = {"model": name, "n_seeds": len(recs), "seeds": [r["seed"] for r in recs]}
        for m in metrics:
            vals = np.array([np.nan if r["metrics"].get(m) is None else r["metrics"][m] for r in recs], dtype=float)
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
        rows.append(row)
    return rows


def fmt_pct(mean: float, std: float = math.nan, digits: int = 2) -> str:
    if mean is None or math.isnan(mean):
        return "n/a"
    s = f"{100 * mean:.{digits}f}"
    if std is not None and not math.isnan(std):
        s += f" ± {100 * std:.{digits}f}"
    return s


def best_rows(rows: list[dict], metric: str) -> set[str]:
    vals = [(r["model"], r.get(f"{metric}_mean", math.nan)) for r in rows]
    vals = [(m, v) for m, v in vals if v is not None and not math.isnan(v)]
    if not vals:
        return set()
    target = (max if HIGHER_IS_BETTER[metric] else min)(v for _, v in vals)
    return {m for m, v in vals if abs(v - target) < 1e-12}


def latex_escape(text: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            "±": r"$\pm$", "Δ": r"$\Delta$", "−": r"$-$", "≈": r"$\approx$", "–": "--", "≤": r"$\le$",
            "×": r"$\times$", "≥": r"$\ge$", "†": r"$^\dagger$"}
    return "".join(repl.get(c, c) for c in str(text))


def _bold(text: str, fmt: str) -> str:
    return f"**{text}**" if fmt == "md" else rf"\textbf{{{text}}}"


def metric_table(rows: list[dict], metrics: Sequence[str], fmt: str, extra_cols: Sequence[tuple[str, str]] = ()) -> str:
    """Render aggregated rows as a markdown (``md``) or LaTeX (``latex``) tabular."""
    best = {m: best_rows(rows, m) for m in metrics}
    header = ["Model"] + [METRIC_LABELS.get(m, m) for m in metrics] + ["seeds"] + [h for h, _ in extra_cols]
    body = []
    for r in rows:
        cells = [display_name(r["model"]) + (BUDGET_MARK if r.get("n_budget") else "")]
        for m in metrics:
            c = fmt_pct(r[f"{m}_mean"], r[f"{m}_std"])
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
    chosen = comp.get("baseline_selected_by") or f"mean {comp['selected_by']}"
    chosen = " ".join(METRIC_LABELS.get(w, w) for w in chosen.split(" "))
    title = (f"Paired comparison: {a} vs the best baseline {b} (chosen by {chosen} over seeds; the test set plays no "
             f"part in the choice); "
             f"difference in points (x100), 95% patient-level bootstrap CI ({comp['n_boot']} resamples), "
             f"seeds where {a} is better.")
    header = ["Metric", f"Δ ({a} − {b})", "95% CI", f"seeds {a} better", "P(not better)"]
    body = []
    for m, res in comp["metrics"].items():
        diff = res["diff"]
        ci = (f"[{100 * res['ci_low']:+.2f}, {100 * res['ci_high']:+.2f}]"
              if res.get("ci_low") is not None and not _isnan(res["ci_low"]) else "n/a")
        p = res.get("p_not_better")
        body.append([METRIC_LABELS.get(m, m), "n/a" if _isnan(diff) else f"{100 * diff:+.2f}", ci,
                     f"{res['a_better_seeds']}/{res['n_seeds']}", "n/a" if _isnan(p) else f"{p:.3f}"])
    if fmt == "latex":
        body = [[latex_escape(c) for c in row] for row in body]
        tab = tabulate(body, [latex_escape(h) for h in header], tablefmt="latex_raw", disable_numparse=True)
        return ["", r"\begin{table}[t]", r"\centering", tab,
                rf"\caption{{{latex_escape(title)}}}", r"\end{table}"]
    return ["", title, "", tabulate(body, header, tablefmt="github", disable_numparse=True)]


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


def provenance(config: dict) -> dict:
    return {
        "data": data_label(config.get("data", "?"), config.get("data_id")),
        "command": config.get("command", "?"),
        "machine": config.get("machine", "?"),
    }


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
    rows = aggregate(records, METRIC_NAMES, order=config.get("models", ()))
    comp_path = folder / COMPARISON_FILE
    comp = read_json(comp_path) if comp_path.exists() else None
    prov = provenance(config)
    task = config.get("task", "?")
    seeds_note = (f"split seed {config.get('split_seed')}; budget {config.get('max_steps')} optimiser steps for every "
                  f"model, validation every {config.get('eval_every')} steps, stop after {config.get('patience')} "
                  f"evaluations without a better validation {config.get('monitor', 'aupr').upper()}, best step restored; "
                  f"note policy {config.get('notes', 'default')}; {protocol_line(config)}")
    if fmt == "csv":
        return rows_to_csv(rows, METRIC_NAMES, {"task": task, "data": config.get("data"), "data_kind": data_kind(config.get("data", "")),
                                                "command": prov["command"], "machine": prov["machine"]})
    if fmt == "md":
        lines = [f"# {task} on {prov['data']}", "",
                 f"- data: **{prov['data']}**",
                 f"- command: `{prov['command']}`",
                 f"- machine: {prov['machine']}",
                 f"- protocol: {seeds_note}; test metrics on the whole test set; mean ± std over seeds, in %",
                 f"- metrics: ACC at 0.5; AUROC and AUPR micro (flattened) for multi-label; macro F1; Brier and ECE (lower is better)",
                 "", metric_table(rows, METRIC_NAMES, "md", extra_cols=[("best step: median (range)", "best_step"),
                                                                       ("at budget", "stopped_at_budget"),
                                                                       ("impl", "impl"), ("device", "device")])]
        if any(r.get("n_budget") for r in rows):
            lines += ["", BUDGET_NOTE]
        lines += ["", "Learning curves: [learning_curves.png](learning_curves.png)."]
        lines += comparison_lines(comp, "md")
        return "\n".join(lines) + "\n"
    budget_note = (" " + latex_escape(BUDGET_NOTE)) if any(r.get("n_budget") for r in rows) else ""
    caption = (f"{latex_escape(task)} on {latex_escape(prov['data'])}: mean $\\pm$ std over seeds, in \\%.{budget_note} "
               f"Command: \\texttt{{{latex_escape(prov['command'])}}}. Machine: {latex_escape(prov['machine'])}.")
    lines = [f"% {task} on {prov['data']}", f"% command: {prov['command']}", f"% machine: {prov['machine']}",
             r"\begin{table}[t]", r"\centering", r"\small",
             metric_table(rows, METRIC_NAMES, "latex"), rf"\caption{{{caption}}}", r"\end{table}"]
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
