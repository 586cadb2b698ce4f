"""End to end on the real pipeline and the `small` synthetic cohort: run, table, tune, run --tuned.

Budgets are cut to keep this under a minute or two on 2 cores (2 models, 2 seeds, 3 optimiser
steps, 2 notes per visit of at most 64 tokens); the mechanics are those of the default job.
"""
from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from mingle_bench import results as R
from mingle_bench.cli import main as cli_main
from mingle_bench.metrics import compute_metrics

pytestmark = pytest.mark.slow

BUDGET = ["--data", "synthetic:small", "--quiet", "--max-notes-per-visit", "2", "--max-tokens", "64"]
STEPS = ["--max-steps", "3", "--eval-every", "1", "--patience", "2"]


def test_run_table_tune_on_small_synthetic(tmp_path, capsys):
    out = ["--out", str(tmp_path)]
    rc = cli_main(["run", "--task", "mortality", "--models", "mingle,hypergat", "--seeds", "2", *STEPS,
                   "--bootstrap", "100", *BUDGET, *out])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    folder = tmp_path / "mortality" / "synthetic-small"
    assert f"Results in {folder}/" in printed and "4 trained, 0 resumed" in printed
    assert "reference check: nothing to compare: the committed reference" in printed  # none committed for small
    for name in ("table.md", "table.tex", "table.csv", "runs.jsonl", "splits.json", "config.json", "curves.png",
                 "learning_curves.png", "reference_check.json", "comparison.json"):
        assert (folder / name).stat().st_size > 0, name

    recs = R.load_runs(folder)
    assert sorted((r["model"], r["seed"]) for r in recs) == [("hypergat", 0), ("hypergat", 1), ("mingle", 0), ("mingle", 1)]
    y = R.load_array(R.labels_path(folder))["y_true"]
    for r in recs:
        assert set(r["metrics"]) == {"acc", "auroc", "aupr", "f1", "brier", "ece", "auroc_macro", "aupr_macro"}
        assert all(0.0 <= v <= 1.0 for v in r["metrics"].values() if v is not None)
        assert r["device"] == "cpu" and r["train_s"] > 0 and r["max_steps"] == 3
        assert 1 <= r["best_step"] <= r["steps_run"] <= 3 and r["stopped"] in ("budget", "early")
        assert [s for s, _ in r["curve"]] == list(range(1, r["steps_run"] + 1))
        p = R.load_array(R.preds_path(folder, r["model"], r["seed"]))["probs"]
        assert p.shape == y.shape
        assert compute_metrics(y, p) == pytest.approx({k: v for k, v in r["metrics"].items()}, nan_ok=True)
    assert {r["impl"] for r in recs if r["model"] == "mingle"} <= {"fused", "reference"}
    # different training seeds give different models on the same split
    m = [r["metrics"]["auroc"] for r in recs if r["model"] == "mingle"]
    assert m[0] != m[1]

    cfg = json.loads((folder / "config.json").read_text())
    split = json.loads((folder / "splits.json").read_text())
    assert cfg["data"] == "synthetic:small" and cfg["split_seed"] == 0 and cfg["task"] == "mortality"
    assert cfg["n_samples"]["test"] == y.shape[0] and cfg["label_names"]
    assert (cfg["max_steps"], cfg["eval_every"], cfg["patience"], cfg["notes"]) == (3, 1, 2, "default")
    assert cfg["input_digest"] and cfg["pipeline"]
    assert split.get("sha256")
    md = (folder / "table.md").read_text()
    assert "SYNTHETIC" in md and "| MINGLE" in md and "| HyperGAT" in md and "mingle-bench run" in md

    # `table` re-renders the folder identically
    assert cli_main(["table", str(folder), "--format", "md"]) == 0
    assert capsys.readouterr().out == md
    assert cli_main(["table", str(folder), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("model,n_seeds,acc_mean")

    # tune a few trials (validation only), then use the result
    rc = cli_main(["tune", "--task", "mortality", "--model", "hypergat", "--trials", "3", "--max-steps", "2",
                   "--eval-every", "1", "--patience", "2", "--study-name", "e2e", *BUDGET, *out])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    saved = json.loads((tmp_path / "tuning" / "e2e.json").read_text())
    assert saved["model"] == "hypergat" and saved["best_params"] and 0 <= saved["best_value"] <= 1
    study = optuna.load_study(study_name="e2e", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert len([t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]) == 3
    assert all("test" not in k for t in study.trials for k in t.user_attrs)

    rc = cli_main(["run", "--task", "mortality", "--models", "mingle,hypergat", "--seeds", "2", *STEPS,
                   "--bootstrap", "100", "--tuned", "e2e", *BUDGET, *out])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    rec = next(r for r in R.load_runs(folder) if (r["model"], r["seed"]) == ("hypergat", 0))
    assert rec["config"]["tuned_from"].endswith("e2e.json")
    assert all(rec["config"]["hparams"][k] == v for k, v in saved["best_params"].items())
    assert np.isfinite(rec["metrics"]["aupr"])
    # mingle cells resumed (same input hash), hypergat retrained with the tuned params
    assert "2 trained, 2 resumed" in printed, printed[-600:]
