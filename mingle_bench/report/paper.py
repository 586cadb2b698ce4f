"""The paper's tables, composed from ``paper.json`` (written by ``mingle-bench reproduce``).

* ``main.md`` / ``main.tex``: baselines and MINGLE, ACC / AUROC / AUPR / F1, mean ± std over
  seeds in %; the published numbers as extra rows where known (:mod:`mingle_bench.paper_numbers`);
  the paired MINGLE-vs-best-baseline comparison per task.
* ``ablation.md`` / ``ablation.tex``: MINGLE, w/o concept semantics, w/o note semantics and
  HypEHR (neither), as in the paper's Table 1 bottom rows.
* ``relative_improvement.md`` / ``.tex`` / ``.png``: per task and metric,
  ``RI = (MINGLE - B) / B x 100`` (:func:`relative_improvement`).
* ``paper.csv``: every number in one long table.

The rows are the paper's: :data:`PAPER_MODELS` in its order; which of them are baselines and
which ablations comes from the model registry (each model's family). Reads ``paper.json`` only;
trains nothing.
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Sequence

from tabulate import tabulate

from mingle_bench import paper_numbers as P
from mingle_bench import results as R
from mingle_bench.io import atomic_write_text

#: the paper's rows, in its order: the baselines, MINGLE, and its two ablations
PAPER_MODELS: tuple[str, ...] = ("retain", "gram", "hypergat", "hypehr", "mingle", "mingle-no-concept", "mingle-no-notes")
#: the ablation table: MINGLE, without concept semantics, without note semantics, and HypEHR (neither)
ABLATIONS: tuple[str, ...] = ("mingle", "mingle-no-concept", "mingle-no-notes", "hypehr")
METRICS: tuple[str, ...] = ("acc", "auroc", "aupr", "f1")
PAPER_FILE = "paper.json"


def paper_baselines() -> tuple[str, ...]:
    """The paper's rows whose registry family is ``baseline`` (RETAIN, GRAM, HyperGAT, HypEHR)."""
    from mingle_bench.zoo import model_family

    return tuple(m for m in PAPER_MODELS if model_family(m) == "baseline")


def relative_improvement(rows: list[dict], metric: str, baseline: str | None = None) -> dict | None:
    """``{"value": RI in %, "baseline": name, "mingle": mean, "best": mean}`` or ``None``.

    ``baseline``: the baseline chosen on validation (the paired comparison's); without it, the
    baseline with the best mean of ``metric`` in ``rows`` (a descriptive reading of a table).
    """
    from mingle_bench.metrics import is_better
    from mingle_bench.zoo import list_models

    mingle_family = set(list_models("mingle"))
    by = {r["model"]: r for r in rows}
    if "mingle" not in by:
        return None
    best = None
    if baseline is not None and baseline in by:
        best = (baseline, by[baseline].get(f"{metric}_mean", math.nan))
    for r in rows if best is None else ():
        if r["model"] in mingle_family:
            continue
        v = r.get(f"{metric}_mean", math.nan)
        if best is None or is_better(metric, v, best[1]):
            best = (r["model"], v)
    m = by["mingle"].get(f"{metric}_mean", math.nan)
    if best is None or math.isnan(best[1]) or math.isnan(m) or best[1] == 0:
        return None
    return {"value": 100.0 * (m - best[1]) / best[1], "baseline": best[0], "mingle": m, "best": best[1]}


def protocol_text(payload: dict) -> str:
    """One line saying how the models were trained and selected (shown in every table)."""
    budget = (f"budget {payload.get('max_steps')} optimiser steps, validation every {payload.get('eval_every')} "
              f"steps, patience {payload.get('patience')} evaluations")
    if payload.get("protocol") == "tuned":
        how = (f"protocol **tuned**: every model got {payload.get('tuning_trials')} Optuna trials on the validation "
               "split (same budget), then its best parameters were trained with every seed")
    else:
        how = "protocol **default**: every model with its own paper's default hyperparameters, no tuning"
    return f"{how}; {budget}; note policy {payload.get('notes', 'default')}"


# ------------------------------------------------------------------------------------------ render


def _data_cell(payload: dict) -> str:
    from mingle_bench.report.tables import data_kind

    return f"{data_kind(payload['data'])} ({payload.get('data_id') or payload['data']})"


def _rows_block(payload: dict, task: str, models: Sequence[str], fmt: str, with_published: bool) -> str:
    from mingle_bench.report.tables import BUDGET_MARK, best_rows, display_name, fmt_pct, latex_escape

    rows = [r for r in payload["tasks"][task]["rows"] if r["model"] in models]
    rows.sort(key=lambda r: list(models).index(r["model"]))
    best = {m: best_rows(rows, m) for m in METRICS}
    data = _data_cell(payload)
    body = []
    for r in rows:
        cells = [display_name(r["model"]) + (BUDGET_MARK if r.get("n_budget") else ""), data]
        for m in METRICS:
            c = fmt_pct(r[f"{m}_mean"], r[f"{m}_std"])
            if fmt == "latex":
                c = c.replace("±", r"$\pm$")
            if r["model"] in best[m]:
                c = f"**{c}**" if fmt == "md" else rf"\textbf{{{c}}}"
            cells.append(c)
        cells.append(str(r["n_seeds"]))
        cells.append(r.get("stopped_at_budget", "–"))
        body.append(cells)
    if with_published:
        pubs = [p for p in payload.get("published", []) if p["task"] == task and p["model"] in models]
        for model in dict.fromkeys(p["model"] for p in pubs):
            mine = {p["metric"]: p for p in pubs if p["model"] == model}
            ds = mine[next(iter(mine))]["dataset"]
            cells = [f"{display_name(model)} (published)", f"published: {ds}"]
            for m in METRICS:
                p = mine.get(m)
                cells.append("–" if p is None else ("≈" if p["approximate"] else "")
                             + (f"{p['value']:.0f}" if p["approximate"] else f"{p['value']:.2f}"))
            cells += ["–", "–"]
            body.append(cells)
    header = ["Model", "data", "ACC", "AUROC", "AUPR", "F1", "seeds", "at budget"]
    if fmt == "latex":
        body = [[latex_escape(c) if i in (0, 1) else c.replace("≈", r"$\approx$").replace("–", "--")
                 for i, c in enumerate(row)] for row in body]
        return tabulate(body, [latex_escape(h) for h in header], tablefmt="latex_raw", disable_numparse=True)
    return tabulate(body, header, tablefmt="github", disable_numparse=True)


def _task_title(task: str) -> str:
    ds = P.PAPER_DATASET.get(task)
    return f"{task}" + (f" (the paper's {ds} task)" if ds else "")


def _header(payload: dict, title: str, fmt: str) -> list[str]:
    from mingle_bench.report.tables import data_label

    label = data_label(payload["data"], payload.get("data_id"))
    prot = (f"{protocol_text(payload)}; seeds {','.join(map(str, payload['seeds']))}; split seed "
            f"{payload['split_seed']}; mean ± std over seeds, in %")
    if fmt != "md":
        prot = prot.replace("**", "")
    if fmt == "md":
        return [f"# {title}", "", f"- data: **{label}**", f"- command: `{payload['command']}`",
                f"- machine: {payload['machine']}", f"- protocol: {prot}",
                "- published rows: only numbers that could be verified (see mingle_bench/paper_numbers.py); "
                "they come from the paper's data, not from this run", ""]
    return [f"% {title}", f"% data: {label}", f"% command: {payload['command']}", f"% machine: {payload['machine']}",
            f"% protocol: {prot}"]


def _latex_table(tab: str, caption: str) -> list[str]:
    from mingle_bench.report.tables import latex_escape

    return [r"\begin{table}[t]", r"\centering", r"\small", tab, rf"\caption{{{latex_escape(caption)}}}", r"\end{table}", ""]


def render_main(payload: dict, fmt: str) -> str:
    from mingle_bench.report.tables import comparison_lines, data_label

    label = data_label(payload["data"], payload.get("data_id"))
    lines = _header(payload, f"Main table: MINGLE vs baselines on {label}", fmt)
    baselines = paper_baselines()
    order = [m for m in PAPER_MODELS if m in baselines or m == "mingle"]
    for task in payload["tasks"]:
        tab = _rows_block(payload, task, order, fmt, with_published=True)
        if fmt == "md":
            lines += [f"## {_task_title(task)}", "", tab]
            lines += comparison_lines(payload["tasks"][task]["comparison"], "md") + [""]
        else:
            lines += _latex_table(tab, f"{_task_title(task)} on {label}. Mean ± std over seeds, in %.")
            lines += comparison_lines(payload["tasks"][task]["comparison"], "latex") + [""]
    return "\n".join(lines) + "\n"


def render_ablation(payload: dict, fmt: str) -> str:
    from mingle_bench.report.tables import data_label

    label = data_label(payload["data"], payload.get("data_id"))
    lines = _header(payload, f"Ablation: MINGLE without concept / note semantics, and HypEHR (neither) on {label}", fmt)
    for task in payload["tasks"]:
        tab = _rows_block(payload, task, ABLATIONS, fmt, with_published=True)
        if fmt == "md":
            lines += [f"## {_task_title(task)}", "", tab, ""]
        else:
            lines += _latex_table(tab, f"Ablation, {_task_title(task)} on {label}.")
    return "\n".join(lines) + "\n"


def render_relative(payload: dict, fmt: str) -> str:
    from mingle_bench.report.tables import data_label, display_name, latex_escape

    label = data_label(payload["data"], payload.get("data_id"))
    lines = _header(payload, f"Relative improvement of MINGLE over the best baseline on {label}", fmt)
    definition = ("RI = (MINGLE − B) / B × 100, B = the test mean of the baseline (RETAIN, GRAM, HyperGAT, HypEHR) "
                  "with the best mean validation AUPR, the same baseline as the paired comparison.")
    pub = payload["published_relative_improvement"]
    body = []
    for task, per in payload["relative_improvement"].items():
        for m in METRICS:
            ri = per.get(m)
            body.append([task, _data_cell(payload), m.upper(),
                         "n/a" if ri is None else f"{ri['value']:+.2f}%",
                         "n/a" if ri is None else display_name(ri["baseline"]),
                         "n/a" if ri is None else f"{100 * ri['mingle']:.2f} vs {100 * ri['best']:.2f}"])
    body.append(["(paper)", "published: abstract, dataset unstated", "unstated", f"+{pub['value']:.2f}%", "unstated", "–"])
    header = ["task", "data", "metric", "RI", "best baseline", "MINGLE vs best (means, %)"]
    if fmt == "md":
        lines += [f"Definition: {definition}", f"Published: +{pub['value']:.2f}% ({pub['source']}).", "",
                  tabulate(body, header, tablefmt="github", disable_numparse=True), "",
                  "![relative improvement](relative_improvement.png)"]
    else:
        body = [[latex_escape(c) for c in row] for row in body]
        tab = tabulate(body, [latex_escape(h) for h in header], tablefmt="latex_raw", disable_numparse=True)
        lines += _latex_table(tab, f"Relative improvement on {label}. {definition} Published: +{pub['value']:.2f}% "
                                   f"({pub['source']}).")
    return "\n".join(lines) + "\n"


def render_csv(payload: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["task", "model", "data", "metric", "mean_pct", "std_pct", "n_seeds", "source"])
    for task, t in payload["tasks"].items():
        for r in t["rows"]:
            for m in METRICS:
                mean, std = r[f"{m}_mean"], r[f"{m}_std"]
                w.writerow([task, r["model"], _data_cell(payload), m,
                            "" if mean is None or (isinstance(mean, float) and math.isnan(mean)) else f"{100 * mean:.4f}",
                            "" if std is None or (isinstance(std, float) and math.isnan(std)) else f"{100 * std:.4f}",
                            r["n_seeds"], "this run"])
    for p in payload.get("published", []):
        w.writerow([p["task"], p["model"], f"published: {p['dataset']}", p["metric"], p["value"], "", "",
                    p["source"] + (" (approximate)" if p["approximate"] else "")])
    return buf.getvalue()


def render_paper(folder: str | os.PathLike, fmt: str = "md") -> str:
    """Re-render ``results/paper/<data-id>/`` (all three tables; ``csv``: one long table)."""
    path = Path(folder) / PAPER_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {folder} a folder written by `mingle-bench reproduce`?")
    payload = R.read_json(path)
    if fmt == "csv":
        return render_csv(payload)
    if fmt not in ("md", "latex"):
        raise ValueError(f"--format must be md, latex or csv, got {fmt!r}")
    return "\n".join([render_main(payload, fmt), render_ablation(payload, fmt), render_relative(payload, fmt)])


def write_paper(folder: str | os.PathLike) -> list[Path]:
    """Write main/ablation/relative-improvement tables (md + tex), the figure and a CSV."""
    from mingle_bench.report.plots import plot_relative_improvement
    from mingle_bench.report.tables import data_label

    folder = Path(folder)
    payload = R.read_json(folder / PAPER_FILE)
    files = []
    for name, fn in (("main", render_main), ("ablation", render_ablation), ("relative_improvement", render_relative)):
        files.append(atomic_write_text(folder / f"{name}.md", fn(payload, "md")))
        files.append(atomic_write_text(folder / f"{name}.tex", fn(payload, "latex")))
    files.append(atomic_write_text(folder / "paper.csv", render_csv(payload)))
    values = {t: {m: v["value"] for m, v in per.items() if v} for t, per in payload["relative_improvement"].items()}
    if any(values.values()):
        files.append(plot_relative_improvement(
            values, folder / "relative_improvement.png",
            f"MINGLE vs best baseline, {data_label(payload['data'], payload.get('data_id'))}",
            reference=payload["published_relative_improvement"]["value"]))
    return files
