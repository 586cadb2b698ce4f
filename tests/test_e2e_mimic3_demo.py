"""End to end: in-hospital mortality on the real MIMIC-III demo (read in place; skipped when absent).

The demo's NOTEEVENTS is header-only, so every visit has no note: note-using models (MINGLE)
must run on the has-notes mask alone, and the run must say so rather than fail.
"""
from __future__ import annotations

import json

import pytest

from mingle_bench import results as R
from mingle_bench.cli import main as cli_main

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def test_mortality_on_mimic3_demo(mimic3_demo_dir, tmp_path, capsys):
    rc = cli_main(["run", "--task", "mortality", "--data", f"mimic3:{mimic3_demo_dir}", "--models", "mingle,retain",
                   "--seeds", "2", "--max-steps", "3", "--eval-every", "1", "--patience", "2", "--bootstrap", "100",
                   "--quiet", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    folders = list((tmp_path / "mortality").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("mimic3-")
    folder = folders[0]
    md = (folder / "table.md").read_text()
    assert "MIMIC-III" in md and "SYNTHETIC" not in md
    cfg = json.loads((folder / "config.json").read_text())
    # no notes in the demo: no visit of the task has an input note
    assert cfg["data_report"].get("visits_with_input_notes", 0) == 0
    n = cfg["n_samples"]
    assert n["train"] > n["test"] > 0 and n["val"] > 0
    recs = R.load_runs(folder)
    assert sorted((r["model"], r["seed"]) for r in recs) == [("mingle", 0), ("mingle", 1), ("retain", 0), ("retain", 1)]
    y = R.load_array(R.labels_path(folder))["y_true"]
    assert y.shape == (n["test"], 1)
    for r in recs:
        assert 0 <= r["metrics"]["acc"] <= 1
        assert r["max_steps"] == 3 and 1 <= r["best_step"] <= r["steps_run"] <= 3 and r["stopped"] in ("budget", "early")
        assert len(r["input_hash"]) == 64 and r["preds_sha256"] == R.array_sha256(
            R.load_array(R.preds_path(folder, r["model"], r["seed"]))["probs"])
    assert "reference check: nothing to compare" in printed  # nothing committed for the demo
    split = json.loads((folder / "splits.json").read_text())
    assert split.get("sha256")
