"""The reference check: compare a run's cells with the committed reference results.

The repository commits reference results under ``results/<task>/<data-id>/`` (see
``results/README.md``). ``mingle-bench run`` writes elsewhere (``runs/`` by default), trains
every cell, and then looks up, for each of its cells, the reference cell with the same task,
data id, model, seed and **inputs** (the same ``input_hash``: cohort content, samples, labels,
split, note selection, encoder identity, vocabulary, hyperparameters, budget, pipeline and
torch versions). The check never copies reference cells into a run.

Outcomes per cell, written to ``<run folder>/reference_check.json``:

* ``identical``: same inputs and the same sha256 of the test probabilities (bit-identical);
* ``equivalent``: same inputs, other low bits, and every test metric the two cells share within
  :data:`TOLERANCE_POINTS` points (x100) of the reference's: the floating-point variation that
  another CPU brings (another vector ISA in torch's kernels, in MKL/oneDNN or in our op changes
  the order of sums, and training carries the last bits on; so does ``--math native`` against
  ``reproducible``, :mod:`mingle_bench.mathmode`); each cell names both CPUs
  (:func:`mingle_bench.io.machine_info`, recorded with every cell), so that a difference on the
  *same* CPU stands out. A third source is the embeddings themselves: ``input_hash`` names the
  encoder and the texts, not the last bits of the vectors, and a batched encoder's vector of a
  text depends on the texts padded into its batch, so a cache filled by other commands holds
  other bits. Every cell records the sha256 of the embeddings it read (``computed_sha256``,
  :meth:`mingle_bench.taskdata.TaskData.computed_sha256`) and the check names the ones that
  differ (``other_computed_inputs``). A fourth is torch's thread count (``other_threads``; the
  reproducible math mode pins it, :mod:`mingle_bench.mathmode`);
* ``differs``: same inputs, and some metric further apart than the tolerance (or defined in one
  cell only). With the same embedding bits, CPU, math mode and thread count, look at the install;
  with other embedding bits or threads (the cause line says which), it measures how far training
  carries a last-bit difference: on the default cohort's mortality task, note vectors differing by
  about 2e-7 moved single MINGLE cells by up to 20 AUROC points (best steps chosen among a few
  evaluations on 28 validation deaths; results/README.md);
* ``no reference``: the reference holds no cell of that model and seed with the same inputs
  (other data, hyperparameters, budget or pipeline version).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from mingle_bench import results as R
from mingle_bench.io import atomic_write_json, cpu_label

REFERENCE_FILE = "reference_check.json"
#: the largest |difference| of any test metric, in points (x100), that still counts as equivalent.
#: Measured: another CPU moved the main job's cells by at most 0.93 AUPR points; the two math modes
#: on one CPU (docs/reproducibility.md) by at most 1.45 AUPR and 0.17 AUROC points, with the same
#: best steps (AUPR over 59 test positives moves with any reordering near the top of the ranking)
TOLERANCE_POINTS = 2.0


def default_reference_root() -> Path | None:
    """The ``results/`` folder of the source checkout this package runs from, if there is one."""
    import mingle_bench

    root = Path(mingle_bench.__file__).resolve().parent.parent / "results"
    return root if root.is_dir() else None


def resolve_reference(spec: str | os.PathLike | None) -> Path | None:
    """``"auto"`` -> :func:`default_reference_root`; a path -> that folder; ``None`` -> no check."""
    if spec is None:
        return None
    if str(spec) == "auto":
        return default_reference_root()
    return Path(spec)


def _reference_label(spec: str | os.PathLike, folder: Path) -> str:
    """Which reference folder was compared, without this machine's paths: ``results/<task>/<data-id>``
    for the checkout's committed results, else the ``--reference`` path as given plus that folder."""
    sub = f"{folder.parent.name}/{folder.name}"
    return f"results/{sub}" if str(spec) == "auto" else str(Path(spec) / sub)


def _cpu_key(info: dict | None) -> tuple | None:
    """What decides a CPU's floating-point code paths: vendor, family, model, name, torch's CPU
    capability and our kernel's ISA (``None`` when the machine was not recorded)."""
    if not isinstance(info, dict) or not info.get("cpu"):
        return None
    cpu = info["cpu"]
    return (cpu.get("vendor"), cpu.get("family"), cpu.get("model"), cpu.get("model_name"),
            info.get("torch_cpu_capability"), info.get("kernel_isa"))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _threads(info: Any) -> int | None:
    """torch's intra-op thread count a cell trained with (``None`` when not recorded)."""
    n = info.get("torch_threads") if isinstance(info, dict) else None
    return int(n) if isinstance(n, int) and not isinstance(n, bool) else None


def _math_mode(info: Any) -> str | None:
    """The math mode a cell trained in (``machine_info.math.mode``; ``None`` when not recorded)."""
    math_ = info.get("math") if isinstance(info, dict) else None
    mode = math_.get("mode") if isinstance(math_, dict) else None
    return str(mode) if mode else None


#: settings recorded in ``machine_info`` that change a cell's low bits: cell key -> (reader, what
#: the cause line calls it, why it matters)
_SETTINGS = {
    "threads": (_threads, "other torch thread count", "ATen splits large reductions into one chunk per thread; "
                "--math reproducible pins 2 unless $MINGLE_THREADS says otherwise"),
    "math": (_math_mode, "other math mode", "the CPU kernels differ (--math, docs/reproducibility.md)"),
}


def _computed_diff(mine: Any, theirs: Any) -> list[str] | None:
    """The computed inputs (:meth:`mingle_bench.taskdata.TaskData.computed_sha256`) both cells
    recorded whose values differ (``[]`` also for a model that reads none); ``None`` when either
    cell predates the record."""
    if not isinstance(mine, dict) or not isinstance(theirs, dict):
        return None
    return sorted(k for k in mine if k in theirs and mine[k] != theirs[k])


def compare_cells(run_records: Sequence[dict], ref_records: Sequence[dict], tolerance: float = TOLERANCE_POINTS,
                  ref_machine: dict | str | None = None) -> list[dict[str, Any]]:
    """One outcome per run record (see the module docstring), in the run's order.

    For a cell that is not identical: ``metric_diff`` holds the differences (run - reference, as
    fractions) of the metrics both cells define, ``max_abs_diff_points`` the largest of them in
    absolute value x100, ``undefined_in_one`` the metrics only one cell defines, ``machine`` /
    ``reference_machine`` both CPUs (:func:`mingle_bench.io.cpu_label`) and ``other_cpu`` whether
    they differ (``None`` when one was not recorded). ``ref_machine``: the reference folder's
    ``machine_info`` (or its one-line ``machine``) for reference cells that did not record their own.
    """
    ref = {r.get("input_hash"): r for r in ref_records if r.get("input_hash")}
    out = []
    for r in run_records:
        cell: dict[str, Any] = {"model": r["model"], "seed": int(r["seed"]), "input_hash": r.get("input_hash")}
        other = ref.get(r.get("input_hash"))
        if other is None:
            cell["status"] = "no reference"
        elif other.get("preds_sha256") and other.get("preds_sha256") == r.get("preds_sha256"):
            cell["status"] = "identical"
        else:
            mine, theirs = r.get("metrics") or {}, other.get("metrics") or {}
            shared = [m for m in mine if m in theirs]
            diff = {m: float(mine[m]) - float(theirs[m]) for m in shared
                    if _is_number(mine[m]) and _is_number(theirs[m]) and mine[m] != theirs[m]}
            undefined = sorted(m for m in shared if _is_number(mine[m]) != _is_number(theirs[m]))
            worst = max((abs(d) for d in diff.values()), default=0.0) * 100
            cell["metric_diff"] = diff
            cell["max_abs_diff_points"] = worst
            if undefined:
                cell["undefined_in_one"] = undefined
            cell["status"] = "equivalent" if worst <= tolerance + 1e-9 and not undefined else "differs"
            info, ref_info = r.get("machine_info"), other.get("machine_info") or ref_machine
            cell["machine"] = cpu_label(info) if isinstance(info, dict) else "not recorded"
            cell["reference_machine"] = (cpu_label(ref_info) if isinstance(ref_info, dict)
                                         else str(ref_info) if ref_info else "not recorded")
            a, b = _cpu_key(info), _cpu_key(ref_info)
            cell["other_cpu"] = None if a is None or b is None else a != b
            for key, (read, _what, _why) in _SETTINGS.items():
                mine, theirs = read(info), read(ref_info)
                cell[key], cell[f"reference_{key}"] = mine, theirs
                cell[f"other_{key}"] = None if mine is None or theirs is None else mine != theirs
            cell["other_computed_inputs"] = _computed_diff(r.get("computed_sha256"), other.get("computed_sha256"))
        out.append(cell)
    return out


def check_reference(folder: str | os.PathLike, input_hashes: Sequence[str],
                    reference: str | os.PathLike | None = "auto") -> dict[str, Any] | None:
    """Compare the cells of ``folder`` whose ``input_hash`` is in ``input_hashes`` (this
    invocation's cells) with the reference folder of the same task and data id.

    Returns the report (also written to ``folder/reference_check.json``), or ``None`` when
    there is no reference root or ``folder`` is itself the reference.
    """
    root = resolve_reference(reference)
    folder = Path(folder)
    if root is None:
        return None
    ref_folder = root / folder.parent.name / folder.name
    if ref_folder.resolve() == folder.resolve():
        return None
    wanted = set(input_hashes)
    records = [r for r in R.load_runs(folder) if r.get("input_hash") in wanted]
    ref_records = R.load_runs(ref_folder) if (ref_folder / R.RUNS_FILE).exists() else []
    ref_cfg = R.read_json_object(ref_folder / R.CONFIG_FILE) if (ref_folder / R.CONFIG_FILE).exists() else {}
    cells = compare_cells(records, ref_records, TOLERANCE_POINTS, ref_cfg.get("machine_info") or ref_cfg.get("machine"))
    equivalent = [c for c in cells if c["status"] == "equivalent"]
    report = {
        # no absolute path: the file is committed beside results and must not name the machine it ran on
        "reference": _reference_label(reference, folder), "reference_cells": len(ref_records), "cells": cells,
        "n": len(cells),
        "identical": sum(c["status"] == "identical" for c in cells),
        "equivalent": len(equivalent),
        "differs": sum(c["status"] == "differs" for c in cells),
        "no_reference": sum(c["status"] == "no reference" for c in cells),
        "tolerance_points": TOLERANCE_POINTS,
        "max_abs_diff_points": max((c["max_abs_diff_points"] for c in equivalent), default=0.0),
        "definition": ("identical: same inputs, same sha256 of the test probabilities; equivalent: same inputs, "
                       f"every test metric within {TOLERANCE_POINTS:g} point (x100) of the reference's, the "
                       "floating-point variation of another CPU, math mode, thread count or embedding bits "
                       "(other_computed_inputs: the embeddings whose recorded sha256 differs; null: not recorded); "
                       "differs: same inputs, a larger difference; "
                       "no reference: no committed cell with the same inputs"),
    }
    atomic_write_json(folder / REFERENCE_FILE, report)
    return report


def _diffs_text(cell: dict) -> str:
    diffs = sorted(cell.get("metric_diff", {}).items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    parts = [f"{m} {100 * d:+.2f}" for m, d in diffs]
    text = (", ".join(parts) + " points") if parts else "predictions differ, metrics equal"
    return text + "".join(f"; {m} defined in one cell only" for m in cell.get("undefined_in_one", []))


def _cpu_phrase(cells: list[dict]) -> str:
    """``other CPU``, ``same CPU`` or ``reference CPU not recorded``, for the equivalent cells."""
    kinds = {c.get("other_cpu") for c in cells}
    if kinds == {True}:
        return "other CPU"
    if kinds == {False}:
        return "same CPU"
    if kinds == {None}:
        return "reference CPU not recorded"
    return "other CPU in some cells"


_FIELD_WORDS = {"concept_emb": "concept vectors", "visit_note_emb": "note vectors", "structural": "DeepWalk vectors"}


def _cause_lines(cells: list[dict]) -> list[str]:
    """Why cells with the same inputs are not bit-identical, as far as the records tell: the
    embeddings they read (recorded sha256s), the thread counts, the math modes and the CPUs."""
    if not cells:
        return []
    lines = []
    computed = [c.get("other_computed_inputs") for c in cells]
    moved = sorted({f for d in computed if d for f in d})
    if moved:
        what = ", ".join(_FIELD_WORDS.get(f, f) for f in moved)
        n = sum(1 for d in computed if d)
        lines.append(f"  cause: {n} of these {len(cells)} cells read {what} whose last bits differ from the reference "
                     "run's (the vectors depend on the CPU and on which texts shared a padded batch, so a cache filled "
                     "by other commands gives other bits); trained on the same vectors, a cell on the same CPU, math "
                     "mode and thread count is identical (docs/reproducibility.md)")
    for key, (_read, what, why) in _SETTINGS.items():
        seen = sorted({(c[key], c[f"reference_{key}"]) for c in cells if c.get(f"other_{key}")})
        if seen:
            pairs = ", ".join(f"{a} here, {b} in the reference" for a, b in seen)
            lines.append(f"  cause: {what} ({pairs}): {why}")
    if not lines and all(d == [] for d in computed):
        cpu = _cpu_phrase(cells)
        why = ("the CPUs differ" if cpu == "other CPU" else
               "same CPU, thread count and math mode: look at the torch and MKL builds" if cpu == "same CPU"
               else "compare the two CPUs above")
        lines.append(f"  cause: every embedding these cells read is bit-identical to the reference run's; {why}")
    return lines


def reference_lines(report: dict[str, Any] | None) -> list[str]:
    """The lines ``run`` prints: the summary, the two CPUs, and every cell that is not identical
    (metric differences in points, x100)."""
    if not report:
        return []
    n, ident = report["n"], report["identical"]
    equiv, differs, missing = report.get("equivalent", 0), report.get("differs", 0), report.get("no_reference", 0)
    tol = report.get("tolerance_points", TOLERANCE_POINTS)
    where = f"the committed reference ({report['reference']})"
    if not report.get("reference_cells"):
        return [f"reference check: nothing to compare: {where} holds no cells for this task and data"]
    if ident == n and n:
        return [f"reference check: {n}/{n} cells identical to {where}"]
    if ident + equiv + differs == 0:
        lines = [f"reference check: nothing to compare: {where} holds no cell with the same inputs as any of these "
                 f"{n} cells (other data, hyperparameters, budget, pipeline or torch version)"]
    else:
        parts = [f"{ident}/{n} cells identical"]
        if equiv:
            eq_cells = [c for c in report["cells"] if c["status"] == "equivalent"]
            parts.append(f"{equiv} equivalent (max |Δ| {report.get('max_abs_diff_points', 0.0):.2f} points, "
                         f"{_cpu_phrase(eq_cells)})")
        if differs:
            parts.append(f"{differs} beyond {tol:g} point{'s' if tol != 1 else ''}")
        if missing:
            parts.append(f"{missing} without a reference")
        lines = ["reference check: " + ", ".join(parts) + f" ({where})"]
        shown = next((c for c in report["cells"] if c["status"] in ("equivalent", "differs")), None)
        if shown is not None:
            lines.append(f"  this run's CPU: {shown['machine']}; the reference's: {shown['reference_machine']}")
        if equiv:
            lines.append(f"  equivalent: same inputs, every test metric within {tol:g} point{'s' if tol != 1 else ''} "
                         "of the reference: floating-point variation, not a broken install")
        lines.extend(_cause_lines([c for c in report["cells"] if c["status"] in ("equivalent", "differs")]))
    for c in report["cells"]:
        if c["status"] == "equivalent":
            lines.append(f"  equivalent: {c['model']} seed {c['seed']} ({_diffs_text(c)})")
        elif c["status"] == "differs":
            lines.append(f"  differs: {c['model']} seed {c['seed']} (same inputs; {_diffs_text(c)}; more than "
                         f"{tol:g} point{'s' if tol != 1 else ''})")
        elif c["status"] == "no reference":
            lines.append(f"  no reference: {c['model']} seed {c['seed']} (no committed cell with the same inputs)")
    return lines


__all__ = ["check_reference", "compare_cells", "default_reference_root", "reference_lines", "REFERENCE_FILE",
           "TOLERANCE_POINTS"]
