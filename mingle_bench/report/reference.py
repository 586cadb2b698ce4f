"""The reference check: compare a run's cells with the committed reference results.

The repository commits reference results under ``results/<task>/<data-id>/`` (see
``results/README.md``). ``mingle-bench run`` writes elsewhere (``runs/`` by default), trains
every cell, and then looks up, for each of its cells, the reference cell with the same task,
data id, model, seed and **inputs** (the same ``input_hash``: cohort content, samples, labels,
split, note selection, encoder identity, vocabulary, hyperparameters, budget, pipeline and
torch versions). A cell is *identical* when its test metrics and the sha256 of its test
probabilities both equal the reference's. The check never copies reference cells into a run.

Outcomes per cell, written to ``<run folder>/reference_check.json``:

* ``identical``: same inputs, bit-identical predictions;
* ``differs``: same inputs, other predictions (a reproducibility problem: other hardware,
  BLAS or thread count; the metric differences are listed);
* ``no reference``: the reference holds no cell of that model and seed with the same inputs
  (other data, hyperparameters, budget or pipeline version).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from mingle_bench import results as R
from mingle_bench.io import atomic_write_json

REFERENCE_FILE = "reference_check.json"


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


def compare_cells(run_records: Sequence[dict], ref_records: Sequence[dict]) -> list[dict[str, Any]]:
    """One outcome per run record (see the module docstring), in the run's order."""
    ref = {r.get("input_hash"): r for r in ref_records if r.get("input_hash")}
    out = []
    for r in run_records:
        cell = {"model": r["model"], "seed": int(r["seed"]), "input_hash": r.get("input_hash")}
        other = ref.get(r.get("input_hash"))
        if other is None:
            cell["status"] = "no reference"
        elif other.get("preds_sha256") == r.get("preds_sha256") and other.get("metrics") == r.get("metrics"):
            cell["status"] = "identical"
        else:
            cell["status"] = "differs"
            cell["metric_diff"] = {m: float(v) - float(other["metrics"][m]) for m, v in r["metrics"].items()
                                   if isinstance(v, (int, float)) and isinstance(other["metrics"].get(m), (int, float))
                                   and v != other["metrics"][m]}
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
    cells = compare_cells(records, ref_records)
    report = {
        "reference": str(ref_folder), "reference_cells": len(ref_records), "cells": cells, "n": len(cells),
        "identical": sum(c["status"] == "identical" for c in cells),
        "differs": sum(c["status"] == "differs" for c in cells),
        "no_reference": sum(c["status"] == "no reference" for c in cells),
    }
    atomic_write_json(folder / REFERENCE_FILE, report)
    return report


def reference_lines(report: dict[str, Any] | None) -> list[str]:
    """The lines ``run`` prints: the K/N summary and every cell that is not identical."""
    if not report:
        return []
    lines = [f"reference check: {report['identical']}/{report['n']} cells identical to the committed reference "
             f"({report['reference']})"]
    if not report.get("reference_cells"):
        return lines + ["  the reference holds no cells for this task and data (nothing committed to compare with)"]
    for c in report["cells"]:
        if c["status"] == "differs":
            diffs = ", ".join(f"{m} {100 * d:+.4f}" for m, d in sorted(c.get("metric_diff", {}).items()))
            lines.append(f"  differs: {c['model']} seed {c['seed']} (same inputs; {diffs or 'predictions differ'})")
        elif c["status"] == "no reference":
            lines.append(f"  no reference: {c['model']} seed {c['seed']} (no committed cell with the same inputs)")
    return lines


__all__ = ["check_reference", "compare_cells", "default_reference_root", "reference_lines", "REFERENCE_FILE"]
