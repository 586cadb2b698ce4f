"""The paper's tables, composed from ``paper.json`` (written by ``mingle-bench reproduce``).

* ``main.md`` / ``main.tex``: baselines and MINGLE, ACC / AUROC / AUPR / F1, mean ± std over
  seeds in %; the published numbers as extra rows where known (:mod:`mingle_bench.paper_numbers`);
  the paired MINGLE-vs-best-baseline comparison per task; then, in a table of their own, the
  reference models every table carries (:data:`REFERENCE_MODELS`, not the paper's rows).
* ``ablation.md`` / ``ablation.tex``: MINGLE, w/o concept semantics, w/o note semantics and
  HypEHR (neither), as in the paper's Table 1 bottom rows.
* ``relative_improvement.md`` / ``.tex`` / ``.png``: per task and metric,
  ``RI = (MINGLE - B) / B x 100`` (:func:`relative_improvement`).
* ``note_channel.md`` / ``.tex`` (once MINGLE cells exist): MINGLE and its semantic ablations under
  every text encoder run on the same configuration, with paired gaps
  (:mod:`mingle_bench.report.note_channel`).
* ``paper.csv``: every number in one long table.

The rows are the paper's: :data:`PAPER_MODELS` in its order; which of them are baselines and
which ablations comes from the model registry (each model's family). Reads ``paper.json`` and, for
each task, the task's results folder where it is found (``tasks[t].folder``, else
``<out>/<task>/<data-id>`` beside ``<out>/paper/<data-id>``): its counts and power, the macro
metrics of a multi-label task and the marks of constant or flagged cells (the same rules as the
run tables, :mod:`mingle_bench.report.tables`); trains nothing.
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Sequence

from tabulate import tabulate

from mingle_bench import paper_numbers as PN
from mingle_bench import results as R
from mingle_bench.io import atomic_write_text

#: the paper's rows, in its order: the baselines (with RETAIN and GRAM on the index visit only, as the
#: hypergraph models see it), MINGLE, and its two ablations
PAPER_MODELS: tuple[str, ...] = ("retain", "gram", "retain-index", "gram-index", "hypergat", "hypehr", "mingle",
                                 "mingle-no-concept", "mingle-no-notes")
#: the references every table carries (not the paper's rows; shown apart from them, docs/models.md)
REFERENCE_MODELS: tuple[str, ...] = ("prior", "logreg", "tfidf-lr", "codes-notes-lr", "gbm", "note-mlp")
#: the ablation table: MINGLE, without concept semantics, without note semantics, and HypEHR (neither)
ABLATIONS: tuple[str, ...] = ("mingle", "mingle-no-concept", "mingle-no-notes", "hypehr")
METRICS: tuple[str, ...] = ("acc", "auroc", "aupr", "f1")
PAPER_FILE = "paper.json"


def paper_baselines() -> tuple[str, ...]:
    """The paper's own baselines (RETAIN, GRAM, HyperGAT, HypEHR): the rows whose registry family is
    ``baseline``, less the index-only RETAIN and GRAM (they fix ``history=False``; the paper had none),
    so B of the relative improvement stays the paper's."""
    from mingle_bench.zoo import model_entry

    return tuple(m for m in PAPER_MODELS
                 if model_entry(m).family == "baseline" and model_entry(m).fixed.get("history", True))


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
               "split (same step budget; its hyperparameters and, for gradient-trained models, eval_every), then "
               "its best parameters were trained with every seed")
    else:
        how = "protocol **default**: every model with its own paper's default hyperparameters, no tuning"
    return f"{how}; {budget}; note policy {payload.get('notes', 'default')}"


# ------------------------------------------------------------------------------------------ render


def _data_cell(payload: dict) -> str:
    from mingle_bench.report.tables import data_kind

    return f"{data_kind(payload['data'])} ({payload.get('data_id') or payload['data']})"


def task_folder(payload: dict, task: str, paper_folder: str | os.PathLike | None = None) -> Path | None:
    """The results folder of ``task`` behind a paper payload, if it is on this machine."""
    recorded = (payload.get("tasks", {}).get(task) or {}).get("folder")
    candidates = [Path(recorded)] if recorded else []
    if paper_folder is not None:
        paper_folder = Path(paper_folder)
        candidates.append(paper_folder.parent.parent / task / paper_folder.name)
        if recorded:
            candidates.append(paper_folder.parent.parent / task / Path(recorded).name)
    return next((c for c in candidates if (c / R.CONFIG_FILE).exists()), None)


def task_context(payload: dict, task: str, paper_folder: str | os.PathLike | None = None) -> dict:
    """Per task: ``rows`` (the payload's, with the marks of the task folder's cells where the payload
    lacks them), ``info`` (:func:`mingle_bench.report.tables.power_info`, or ``{}`` without the
    folder), ``monitor`` and ``metrics`` (the paper's four, plus the macro means on a multi-label task)."""
    from mingle_bench.metrics import MACRO_METRICS
    from mingle_bench.report.tables import aggregate, power_info

    rows = [dict(r) for r in payload["tasks"][task]["rows"]]
    folder = task_folder(payload, task, paper_folder)
    info: dict = {}
    monitor = "aupr"
    if folder is not None:
        config = R.read_json_object(folder / R.CONFIG_FILE)
        monitor = config.get("monitor", monitor)
        records = [r for r in R.load_runs(folder) if r["model"] in {row["model"] for row in rows}]
        fresh = {r["model"]: r for r in aggregate(records, order=[], folder=folder, split_seed=config.get("split_seed"))}
        from mingle_bench.metrics import METRIC_NAMES

        keys = ("n_constant", "n_one_sided", "n_fallback", "flags", "split_seeds",
                *(f"{m}_{s}" for m in METRIC_NAMES for s in ("mean", "std")))
        for row in rows:  # a payload written before these keys: from the folder's cells
            for key in keys:
                if key not in row and row["model"] in fresh:
                    row[key] = fresh[row["model"]][key]
        info = power_info(folder, config, rows)
    n_labels = info.get("n_labels") or (2 if any(r.get("auroc_macro_mean") not in (None, r.get("auroc_mean"))
                                                 for r in rows) else 1)
    return {"rows": rows, "info": info, "monitor": monitor, "folder": folder,
            "metrics": METRICS + (MACRO_METRICS if n_labels > 1 else ())}


def _task_notes(ctx: dict, models: Sequence[str], fmt: str) -> list[str]:
    """The task's power lines (UNDERPOWERED first, as a quote) and the notes of its marks."""
    from mingle_bench.report.tables import ci_note, latex_escape, mark_notes, power_lines

    rows = [r for r in ctx["rows"] if r["model"] in models]
    lines = power_lines(ctx["info"], ctx["monitor"]) if ctx["info"] else []
    cnote = ci_note(ctx.get("folder"))
    lines += [cnote] if cnote else []
    footnotes = mark_notes(rows, ctx["monitor"])
    if fmt != "md":
        return [latex_escape(x) for x in lines + footnotes]
    from mingle_bench.report.tables import spread_text

    lines.append(f"mean ± std over {spread_text(rows)[0]}, in %")
    out = []
    for line in lines:
        if line.startswith("UNDERPOWERED"):
            out += [f"> **UNDERPOWERED**: {line[len('UNDERPOWERED: '):]}", ""]
        else:
            out.append(f"- {line}")
    return out + ["", *footnotes] if footnotes else out


def _rows_block(payload: dict, task: str, models: Sequence[str], fmt: str, with_published: bool,
                ctx: dict | None = None) -> str:
    from mingle_bench.metrics import METRIC_LABELS
    from mingle_bench.report.tables import best_rows, ci_columns, display_name, fmt_pct, latex_escape, row_marks

    ctx = ctx or task_context(payload, task)
    metrics = ctx["metrics"]
    rows = [r for r in ctx["rows"] if r["model"] in models]
    rows.sort(key=lambda r: list(models).index(r["model"]))
    ci_cols = ci_columns(ctx.get("folder"), rows)
    best = {m: best_rows(rows, m) for m in metrics}
    data = _data_cell(payload)
    body = []
    for r in rows:
        cells = [display_name(r["model"]) + row_marks(r), data]
        for m in metrics:
            c = fmt_pct(r.get(f"{m}_mean", math.nan), r.get(f"{m}_std", math.nan))
            if fmt == "latex":
                c = c.replace("±", r"$\pm$")
            if r["model"] in best[m]:
                c = f"**{c}**" if fmt == "md" else rf"\textbf{{{c}}}"
            cells.append(c)
        cells += [r.get(key, "–") for _, key in ci_cols]
        cells.append(str(r["n_seeds"]))
        cells.append(r.get("stopped_at_budget", "–"))
        body.append(cells)
    if with_published:
        pubs = [p for p in payload.get("published", []) if p["task"] == task and p["model"] in models]
        for model in dict.fromkeys(p["model"] for p in pubs):
            mine = {p["metric"]: p for p in pubs if p["model"] == model}
            ds = mine[next(iter(mine))]["dataset"]
            cells = [f"{display_name(model)} (published)", f"published: {ds}"]
            for m in metrics:
                p = mine.get(m)
                cells.append("–" if p is None else ("≈" if p["approximate"] else "")
                             + (f"{p['value']:.0f}" if p["approximate"] else f"{p['value']:.2f}"))
            cells += ["–"] * len(ci_cols) + ["–", "–"]
            body.append(cells)
    from mingle_bench.report.tables import spread_text

    header = (["Model", "data"] + [METRIC_LABELS[m] for m in metrics] + [h for h, _ in ci_cols]
              + [spread_text(rows)[1], "at budget"])
    if fmt == "latex":
        body = [[latex_escape(c) if i in (0, 1) else c.replace("≈", r"$\approx$").replace("–", "--")
                 for i, c in enumerate(row)] for row in body]
        return tabulate(body, [latex_escape(h) for h in header], tablefmt="latex_raw", disable_numparse=True)
    return tabulate(body, header, tablefmt="github", disable_numparse=True)


def _task_title(task: str) -> str:
    ds = PN.PAPER_DATASET.get(task)
    return f"{task}" + (f" (the paper's {ds} task)" if ds else "")


def _header(payload: dict, title: str, fmt: str) -> list[str]:
    from mingle_bench.report.tables import data_label, encoder_line

    label = data_label(payload["data"], payload.get("data_id"))
    prot = (f"{protocol_text(payload)}; seeds {','.join(map(str, payload['seeds']))}; split seed "
            f"{payload['split_seed']}; mean ± std over seeds, in %")
    if fmt != "md":
        prot = prot.replace("**", "")
    enc = encoder_line(payload) if "encoder" in payload else None  # a payload written before the key: not stated
    if fmt == "md":
        return [f"# {title}", "", f"- data: **{label}**", f"- command: `{payload['command']}`",
                f"- machine: {payload['machine']}", f"- protocol: {prot}", *([f"- {enc}"] if enc else []),
                "- published rows: only numbers that could be verified (see mingle_bench/paper_numbers.py); "
                "they come from the paper's data, not from this run", ""]
    return [f"% {title}", f"% data: {label}", f"% command: {payload['command']}", f"% machine: {payload['machine']}",
            f"% protocol: {prot}", *([f"% {enc}"] if enc else [])]


def _latex_table(tab: str, caption: str, footnotes: Sequence[str] = ()) -> list[str]:
    """A LaTeX table whose caption is ``caption`` (escaped here) followed by ``footnotes`` (already escaped)."""
    from mingle_bench.report.tables import latex_escape

    text = latex_escape(caption) + "".join(f" {n}" for n in footnotes)
    return [r"\begin{table}[t]", r"\centering", r"\small", tab, rf"\caption{{{text}}}", r"\end{table}", ""]


def render_main(payload: dict, fmt: str, folder: str | os.PathLike | None = None) -> str:
    """The main table; ``folder``: the paper folder (its tasks' results folders are found beside it)."""
    from mingle_bench.report.tables import comparison_lines, data_label, spread_text

    label = data_label(payload["data"], payload.get("data_id"))
    lines = _header(payload, f"Main table: MINGLE vs baselines on {label}", fmt)
    from mingle_bench.zoo import model_family

    order = [m for m in PAPER_MODELS if model_family(m) == "baseline" or m == "mingle"]  # index-only rows too
    for task in payload["tasks"]:
        ctx = task_context(payload, task, folder)
        tab = _rows_block(payload, task, order, fmt, with_published=True, ctx=ctx)
        footnotes = _task_notes(ctx, order, fmt)
        if fmt == "md":
            lines += [f"## {_task_title(task)}", "", *footnotes, "", tab]
            lines += comparison_lines(payload["tasks"][task]["comparison"], "md") + [""]
        else:
            spread = spread_text([r for r in ctx["rows"] if r["model"] in order])[0]
            lines += _latex_table(tab, f"{_task_title(task)} on {label}. Mean ± std over {spread}, in %.", footnotes)
            lines += comparison_lines(payload["tasks"][task]["comparison"], "latex") + [""]
        lines += _references_block(payload, task, fmt, label, ctx)
    return "\n".join(lines) + "\n"


def _references_block(payload: dict, task: str, fmt: str, label: str, ctx: dict) -> list[str]:
    """The reference rows of ``task`` in a table of their own, apart from the paper's rows (bold:
    the best reference); nothing when the run has none."""
    if not any(r["model"] in REFERENCE_MODELS for r in ctx["rows"]):
        return []
    tab = _rows_block(payload, task, REFERENCE_MODELS, fmt, with_published=False, ctx=ctx)
    what = ("Reference models, not in the paper (same split, seeds and budget): training prevalence; logistic "
            "regression on the index visit's codes, on TF-IDF of its notes, on both; LightGBM on code counts + "
            "TF-IDF notes; an MLP on the note embedding")
    if fmt == "md":
        return [f"### {task}: reference models", "", f"{what}.", "", tab, ""]
    return _latex_table(tab, f"{task} on {label}: {what}. Mean ± std, in %.")


def render_ablation(payload: dict, fmt: str, folder: str | os.PathLike | None = None) -> str:
    """The ablation table; ``folder`` as for :func:`render_main`."""
    from mingle_bench.report.tables import data_label

    label = data_label(payload["data"], payload.get("data_id"))
    lines = _header(payload, f"Ablation: MINGLE without concept / note semantics, and HypEHR (neither) on {label}", fmt)
    for task in payload["tasks"]:
        ctx = task_context(payload, task, folder)
        tab = _rows_block(payload, task, ABLATIONS, fmt, with_published=True, ctx=ctx)
        footnotes = _task_notes(ctx, ABLATIONS, fmt)
        if fmt == "md":
            lines += [f"## {_task_title(task)}", "", *footnotes, "", tab, ""]
        else:
            lines += _latex_table(tab, f"Ablation, {_task_title(task)} on {label}.", footnotes)
    return "\n".join(lines) + "\n"


def render_relative(payload: dict, fmt: str) -> str:
    from mingle_bench.report.tables import data_label, display_name, latex_escape

    label = data_label(payload["data"], payload.get("data_id"))
    lines = _header(payload, f"Relative improvement of MINGLE over the best baseline on {label}", fmt)
    definition = ("RI = (MINGLE − B) / B × 100, B = the test mean of the baseline (RETAIN, GRAM, HyperGAT, HypEHR) "
                  "with the best mean validation AUPR; the reference models and the index-only RETAIN and GRAM are "
                  "not candidates for B.")
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
    parts = [render_main(payload, fmt, folder), render_ablation(payload, fmt, folder), render_relative(payload, fmt)]
    if _has_note_channel(payload):
        parts.append(render_note_channel(payload, fmt))
    return "\n".join(parts)


def _has_note_channel(payload: dict) -> bool:
    return any(payload.get("note_channel", {}).values())


def render_note_channel(payload: dict, fmt: str) -> str:
    """The note channel per text encoder (:mod:`mingle_bench.report.note_channel`)."""
    from mingle_bench.report import note_channel
    from mingle_bench.report.tables import data_label

    label = data_label(payload["data"], payload.get("data_id"))
    return note_channel.render(payload, fmt, _header(payload, f"The note channel per text encoder on {label}", fmt))


def write_paper(folder: str | os.PathLike) -> list[Path]:
    """Write main/ablation/relative-improvement tables (md + tex), the figure and a CSV."""
    from mingle_bench.report.plots import plot_relative_improvement
    from mingle_bench.report.tables import data_label

    folder = Path(folder)
    payload = R.read_json(folder / PAPER_FILE)
    files = []
    for name, fn in (("main", render_main), ("ablation", render_ablation)):
        files.append(atomic_write_text(folder / f"{name}.md", fn(payload, "md", folder)))
        files.append(atomic_write_text(folder / f"{name}.tex", fn(payload, "latex", folder)))
    files.append(atomic_write_text(folder / "relative_improvement.md", render_relative(payload, "md")))
    files.append(atomic_write_text(folder / "relative_improvement.tex", render_relative(payload, "latex")))
    if _has_note_channel(payload):
        files.append(atomic_write_text(folder / "note_channel.md", render_note_channel(payload, "md")))
        files.append(atomic_write_text(folder / "note_channel.tex", render_note_channel(payload, "latex")))
    files.append(atomic_write_text(folder / "paper.csv", render_csv(payload)))
    values = {t: {m: v["value"] for m, v in per.items() if v} for t, per in payload["relative_improvement"].items()}
    if any(values.values()):
        files.append(plot_relative_improvement(
            values, folder / "relative_improvement.png",
            f"MINGLE vs best baseline, {data_label(payload['data'], payload.get('data_id'))}",
            reference=payload["published_relative_improvement"]["value"]))
    return files
