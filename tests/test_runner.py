"""Runner mechanics on a small fake pipeline: files, contents, resume (incl. a SIGKILL), errors.

The fakes stand in for the data/feature/training stages so these tests check the runner alone,
in seconds. The real pipeline is exercised end to end in tests/test_e2e_*.py.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mingle_bench import pipeline, runner
from mingle_bench import results as R
from mingle_bench.cli import main as cli_main
from mingle_bench.report.finalize import select_baseline
from pipeline_fakes import (FakeManifest, MINGLE_TINY, RETAIN_TINY, fake_build, fake_fit, folder_locked_elsewhere,
                            wait_for)

TESTS_DIR = Path(__file__).resolve().parent
def _cfg(tmp_path, **kw):
    base = dict(task="mortality", data="synthetic:small", models=["mingle", "hypehr", "retain"], seeds=[0, 1, 2],
                out=str(tmp_path), max_steps=3, eval_every=1, patience=2, n_boot=200, progress=False,
                command="mingle-bench run (test)", reference=None)
    base.update(kw)
    return runner.RunConfig(**base)


def test_run_writes_all_files_with_contents(fakes, tmp_path):
    s = runner.run_benchmark(_cfg(tmp_path))
    folder = tmp_path / "mortality" / "synthetic-small"
    assert s.folder == folder
    for name in ("table.md", "table.tex", "table.csv", "runs.jsonl", "splits.json", "config.json", "curves.png",
                 "learning_curves.png", "comparison.json"):
        assert (folder / name).is_file(), name
    assert not (folder / "reference_check.json").exists()  # reference=None: no check
    recs = R.load_runs(folder)
    assert len(recs) == 9 and {(r["model"], r["seed"]) for r in recs} == {(m, s) for m in ("mingle", "hypehr", "retain") for s in range(3)}
    for r in recs:
        assert set(r["metrics"]) == {"acc", "auroc", "aupr", "f1", "brier", "ece", "auroc_macro", "aupr_macro"}
        assert r["impl"] and r["device"] == "cpu" and r["train_s"] >= 0
        assert r["config"]["split_seed"] == 0 and r["config"]["max_steps"] == 3 and r["config"]["eval_every"] == 1
    # the metrics are those of the saved predictions
    from mingle_bench.metrics import compute_metrics

    y = R.load_array(R.labels_path(folder))["y_true"]
    p = R.load_array(R.preds_path(folder, "retain", 1))["probs"]
    rec = next(r for r in recs if (r["model"], r["seed"]) == ("retain", 1))
    assert compute_metrics(y, p) == pytest.approx(rec["metrics"])
    md = (folder / "table.md").read_text()
    assert "SYNTHETIC" in md and "mingle-bench run (test)" in md and "CPU cores" in md
    assert "MINGLE" in md and "RETAIN" in md and " ± " in md
    tex = (folder / "table.tex").read_text()
    assert r"\begin{tabular}" in tex and "SYNTHETIC" in tex and r"$\pm$" in tex
    csv = pd.read_csv(folder / "table.csv")
    assert list(csv["model"]) == ["mingle", "hypehr", "retain"] and (csv["data_kind"] == "SYNTHETIC").all()
    # mean in the CSV is the mean of the per-seed records, in %
    auroc = np.mean([r["metrics"]["auroc"] for r in recs if r["model"] == "mingle"]) * 100
    assert csv.loc[0, "auroc_mean"] == pytest.approx(auroc, abs=1e-3)
    comp = json.loads((folder / "comparison.json").read_text())
    assert comp["a"] == "mingle" and comp["b"] == "hypehr"  # the stronger fake baseline
    assert comp["metrics"]["aupr"]["a_better_seeds"] == 3
    assert comp["metrics"]["aupr"]["ci_low"] <= comp["metrics"]["aupr"]["diff"] <= comp["metrics"]["aupr"]["ci_high"]
    split = json.loads((folder / "splits.json").read_text())
    assert split["seed"] == 0 and "sha256" in split
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["models"] == ["mingle", "hypehr", "retain"] and cfg["seeds"] == [0, 1, 2]
    assert all(r["executor"] == "local" for r in recs)
    timings = json.loads((folder / "timings.json").read_text())
    assert set(timings["stage_seconds"]) >= {"load", "features"} and timings["wall_s"] >= 0
    assert [(c["model"], c["seed"]) for c in timings["cells"]] == [(r["model"], r["seed"]) for r in recs]
    assert timings["peak_rss_mb"] > 0 and timings["cells_resumed"] == 0 and timings["executor"] == "local"


def test_rerun_skips_finished_cells_and_adds_new_ones(fakes, tmp_path, monkeypatch):
    runner.run_benchmark(_cfg(tmp_path, models=["mingle", "retain"], seeds=[0, 1]))
    folder = tmp_path / "mortality" / "synthetic-small"
    before = {(r["model"], r["seed"]): r["finished_at"] for r in R.load_runs(folder)}
    calls = []
    monkeypatch.setattr(pipeline, "fit", lambda *a, **k: calls.append(a[:1] + a[3:4]) or fake_fit(*a, **k))
    s = runner.run_benchmark(_cfg(tmp_path, models=["mingle", "retain"], seeds=[0, 1, 2]))
    assert sorted(calls) == [("mingle", 2), ("retain", 2)]
    assert len(s.skipped) == 4 and len(s.trained) == 2
    after = {(r["model"], r["seed"]): r["finished_at"] for r in R.load_runs(folder)}
    assert all(after[k] == v for k, v in before.items())
    # changed hyperparameters make a cell unfinished again (and replace its record)
    calls.clear()
    s = runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0], hparam_overrides={"retain": {"scale": 2.0}}))
    assert calls == [("retain", 0)]
    recs = [r for r in R.load_runs(folder) if (r["model"], r["seed"]) == ("retain", 0)]
    assert len(recs) == 1 and recs[0]["config"]["hparams"]["scale"] == 2.0


def test_other_run_config_in_folder_is_refused(fakes, tmp_path):
    runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0]))
    with pytest.raises(runner.RunError, match="max_steps: 3 -> 4.*--fresh"):
        runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0], max_steps=4))
    with pytest.raises(runner.RunError, match="eval_every: 1 -> 3"):
        runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0], eval_every=3))
    with pytest.raises(runner.RunError, match="patience: 2 -> 5"):
        runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0], patience=5))
    s = runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0], max_steps=4, fresh=True))
    assert len(s.trained) == 1 and not s.skipped
    assert [(r["max_steps"], r["steps_run"]) for r in R.load_runs(s.folder)] == [(4, 4)]


def test_failed_cell_is_reported_and_others_kept(fakes, tmp_path, monkeypatch):
    def flaky(model_name, *a, **k):
        if model_name == "hypehr":
            raise RuntimeError("diverged")
        return fake_fit(model_name, *a, **k)

    monkeypatch.setattr(pipeline, "fit", flaky)
    s = runner.run_benchmark(_cfg(tmp_path, seeds=[0]))
    assert [f["model"] for f in s.failed] == ["hypehr"] and "diverged" in s.failed[0]["error"]
    assert {r["model"] for r in R.load_runs(s.folder)} == {"mingle", "retain"}
    assert json.loads((s.folder / "failures.json").read_text())[0]["model"] == "hypehr"
    assert "FAILED" in runner.summary_line(s)


def test_argument_errors_are_clear(fakes, tmp_path, capsys):
    with pytest.raises(runner.RunError, match="unknown model"):
        runner.run_benchmark(_cfg(tmp_path, models=["nope"]))
    with pytest.raises(runner.RunError, match="--seeds"):
        runner.parse_seeds("a,b")
    with pytest.raises(ValueError, match="no CUDA|--device"):
        pipeline.resolve_device("cuda") if not torch.cuda.is_available() else pipeline.resolve_device("tpu")
    with pytest.raises(ValueError, match="--device must be"):
        pipeline.resolve_device("gpu")
    with pytest.raises(runner.RunError, match="tune"):
        runner.run_benchmark(_cfg(tmp_path, tuned=["nosuchstudy"]))
    # through the CLI: one line, no traceback
    rc = cli_main(["table", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert rc == 1 and "no such results folder" in err and "Traceback" not in err


def test_tuned_params_are_applied(fakes, tmp_path, monkeypatch):
    (tmp_path / "tuning").mkdir()
    (tmp_path / "tuning" / "st.json").write_text(json.dumps({"model": "retain", "best_params": {"scale": 3.0}}))
    seen = {}
    monkeypatch.setattr(pipeline, "fit", lambda m, d, hp, *a, **k: seen.setdefault(m, hp) and fake_fit(m, d, hp, *a, **k))
    runner.run_benchmark(_cfg(tmp_path, models=["mingle", "retain"], seeds=[0], tuned=["st"]))
    assert seen["retain"]["scale"] == 3.0 and seen["mingle"]["scale"] == 1.0
    rec = next(r for r in R.load_runs(tmp_path / "mortality" / "synthetic-small") if r["model"] == "retain")
    assert rec["config"]["tuned_from"].endswith("st.json")


def test_table_command_rerenders(fakes, tmp_path, capsys):
    runner.run_benchmark(_cfg(tmp_path, seeds=[0, 1]))
    folder = tmp_path / "mortality" / "synthetic-small"
    for fmt, needle in (("md", "| MINGLE"), ("latex", r"\begin{tabular}"), ("csv", "model,n_seeds")):
        assert cli_main(["table", str(folder), "--format", fmt]) == 0
        assert needle in capsys.readouterr().out
    assert cli_main(["table", str(folder), "--format", "md"]) == 0
    assert capsys.readouterr().out == (folder / "table.md").read_text()


def _fake_cli(argv: list[str], env: dict) -> subprocess.Popen:
    """The CLI in a subprocess with the fake pipeline installed (tests/ on its PYTHONPATH)."""
    env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH")) if p)}
    code = ("import sys, pipeline_fakes; pipeline_fakes.install_fakes();"
            "from mingle_bench.cli import main; sys.exit(main(%r))" % (argv,))
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_sigkill_midway_then_resume(tmp_path):
    """Kill a run with SIGKILL right after its first cell lands; the rerun skips that cell."""
    env = {**os.environ, "FAKE_FIT_SLEEP": "0.15"}
    argv = ["run", "--task", "mortality", "--data", "synthetic:small", "--models", "mingle,retain", "--seeds", "2",
            "--max-steps", "4", "--eval-every", "1", "--out", str(tmp_path), "--quiet", "--bootstrap", "50",
            "--reference", "none"]
    folder = tmp_path / "mortality" / "synthetic-small"
    proc = _fake_cli(argv, env)
    wait_for(folder / R.RUNS_FILE)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = R.load_runs(folder)
    assert len(first) == 1, "the run was killed after exactly one finished cell"
    assert not (folder / "table.md").exists()
    assert not list(folder.glob(".*.tmp")) or True  # a torn temp file may remain; it is never read
    out = _fake_cli(argv, {**env, "FAKE_FIT_SLEEP": "0"}).communicate(timeout=120)[0]
    assert "1 of 4 model x seed cells already finished" in out, out
    assert "3 trained, 1 resumed" in out
    recs = R.load_runs(folder)
    assert len(recs) == 4
    kept = next(r for r in recs if (r["model"], r["seed"]) == (first[0]["model"], first[0]["seed"]))
    assert kept == first[0]
    assert (folder / "table.md").exists()


def test_table_write_finalizes_a_partial_folder(fakes, tmp_path, capsys):
    runner.run_benchmark(_cfg(tmp_path, seeds=[0, 1]))
    folder = tmp_path / "mortality" / "synthetic-small"
    for name in ("table.md", "table.tex", "table.csv", "comparison.json", "curves.png", "learning_curves.png"):
        (folder / name).unlink()
    assert cli_main(["table", str(folder), "--write"]) == 0
    assert "| MINGLE" in capsys.readouterr().out
    for name in ("table.md", "table.tex", "table.csv", "comparison.json", "curves.png", "learning_curves.png"):
        assert (folder / name).exists(), name


def test_changed_data_under_the_same_id_is_refused(fakes, tmp_path, monkeypatch):
    class Cohort:
        def __init__(self, sid):
            self.source_id = sid

    monkeypatch.setattr(pipeline, "load_cohort", lambda spec, progress=True: Cohort("aaaa"))
    runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0]))
    monkeypatch.setattr(pipeline, "load_cohort", lambda spec, progress=True: Cohort("bbbb"))
    with pytest.raises(runner.RunError, match="the data changed"):
        runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0, 1]))


def test_graph_scope_and_code_types_reach_the_features_stage(tmp_path, fakes, monkeypatch):
    """`run --graph-scope/--code-types` go to build_task_data and into the run's configuration."""
    from mingle_bench.cli import main

    seen, tasks = [], []
    monkeypatch.setattr(pipeline, "build_features", lambda *a, **k: seen.append(k) or fake_build(*a, **k))
    monkeypatch.setattr(pipeline, "get_task",
                        lambda name, code_types=None, notes="default": tasks.append(code_types) or name)
    base = ["run", "--task", "mortality", "--data", "synthetic:small", "--models", "mingle", "--seeds", "1",
            "--max-steps", "2", "--eval-every", "1", "--quiet", "--bootstrap", "0", "--reference", "none"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    assert seen[-1]["graph_scope"] == "all" and tasks[-1] is None
    cfg_a = json.loads((tmp_path / "a" / "mortality" / "synthetic-small" / "config.json").read_text())
    assert cfg_a["graph_scope"] == "all" and cfg_a["code_types"] is None

    assert main(base + ["--out", str(tmp_path / "b"), "--graph-scope", "samples",
                        "--code-types", "medication,service"]) == 0
    assert seen[-1]["graph_scope"] == "samples" and tasks[-1] == ("medication", "service")
    cfg_b = json.loads((tmp_path / "b" / "mortality" / "synthetic-small" / "config.json").read_text())
    assert cfg_b["graph_scope"] == "samples" and cfg_b["code_types"] == ["medication", "service"]
    assert cfg_b["fingerprint"] != cfg_a["fingerprint"]
    # a folder of the default scope refuses the other scope instead of mixing cells
    assert main(base + ["--out", str(tmp_path / "a"), "--graph-scope", "samples"]) == 1
    assert main(base + ["--out", str(tmp_path / "a"), "--code-types", "lab"]) == 1


# ---------------------------------------------------------------------------------------------
# step budgets, provenance, resume by input hash, baseline selection, budget marks


def _records(folder) -> dict:
    return {(r["model"], r["seed"]): r for r in R.load_runs(folder)}


def test_records_carry_steps_curve_and_provenance(fakes, tmp_path):
    """Every record: the step budget, where it stopped and why, the learning curve, the input
    hash (recomputable from config.json) and the sha256 of its saved predictions."""
    s = runner.run_benchmark(_cfg(tmp_path, models=["mingle", "retain"], seeds=[0, 1], max_steps=5, patience=2,
                                  hparam_overrides={"retain": {"plateau": 1}}))
    cfg = json.loads((s.folder / "config.json").read_text())
    assert cfg["pipeline"] == pipeline.PIPELINE_VERSION and cfg["input_digest"]["split"]
    recs = _records(s.folder)
    for (model, seed), r in recs.items():
        assert r["max_steps"] == 5 and r["config"]["max_steps"] == 5
        probs = R.load_array(R.preds_path(s.folder, model, seed))["probs"]
        assert r["preds_sha256"] == R.array_sha256(probs)
        assert len(r["input_hash"]) == 64 and int(r["input_hash"], 16) >= 0
        assert r["input_hash"] == runner.input_hash(model, seed, cfg["hparams"][model], cfg, cfg["source_id"],
                                                    cfg["input_digest"])
    assert len({r["input_hash"] for r in recs.values()}) == 4  # one per model x seed
    # validation still improving at the budget: stopped by the budget, best step = the last one
    m = recs[("mingle", 0)]
    assert m["stopped"] == "budget" and m["steps_run"] == 5 and m["best_step"] == 5
    assert [step for step, _ in m["curve"]] == [1, 2, 3, 4, 5]
    assert all(a[1] < b[1] for a, b in zip(m["curve"], m["curve"][1:]))
    # a plateau after step 1 and patience 2: stopped early after two evaluations without improvement
    r = recs[("retain", 0)]
    assert r["stopped"] == "early" and r["best_step"] == 1 and r["steps_run"] == 3
    assert [step for step, _ in r["curve"]] == [1, 2, 3]
    assert (s.folder / runner.LEARNING_CURVES_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert s.folder / runner.LEARNING_CURVES_FILE in s.files


def test_real_trainer_stops_at_budget_or_early(toy_pipeline, tmp_path):
    """With the real trainer: a large patience runs the whole budget ("budget"); lr 0 never
    improves after the first evaluation, so a patience of 2 stops at step 3 ("early")."""
    base = dict(models=["retain", "mingle"], seeds=[0], hparam_overrides={"retain": RETAIN_TINY, "mingle": MINGLE_TINY})
    s = runner.run_benchmark(_cfg(tmp_path / "a", max_steps=4, eval_every=1, patience=50, **base))
    for r in R.load_runs(s.folder):
        assert r["stopped"] == "budget" and r["steps_run"] == 4 == r["max_steps"], r["model"]
        assert 1 <= r["best_step"] <= 4 and [step for step, _ in r["curve"]] == [1, 2, 3, 4]
        assert r["best_step"] == max(r["curve"], key=lambda c: c[1])[0]
    frozen = {m: {**hp, "lr": 0.0} for m, hp in base["hparam_overrides"].items()}
    s = runner.run_benchmark(_cfg(tmp_path / "b", max_steps=20, eval_every=1, patience=2,
                                  **{**base, "hparam_overrides": frozen}))
    for r in R.load_runs(s.folder):
        assert r["stopped"] == "early" and r["steps_run"] == 3 and r["best_step"] == 1, r["model"]
        assert r["max_steps"] == 20 and len(r["curve"]) == 3


def test_resume_keys_on_the_input_hash(fakes, tmp_path, monkeypatch):
    """Same (model, seed) but other inputs -> retrained, never reused."""
    from dataclasses import replace

    runner.run_benchmark(_cfg(tmp_path, models=["mingle", "retain"], seeds=[0, 1]))
    folder = tmp_path / "mortality" / "synthetic-small"
    first = _records(folder)
    kept = {f: (folder / f).read_bytes() for f in ("config.json", "timings.json")}
    # same everything: all four resumed, nothing trained; the run's config and timings (those of
    # the invocation that trained the cells) stay as they were, byte for byte
    s = runner.run_benchmark(_cfg(tmp_path, models=["mingle", "retain"], seeds=[0, 1]))
    assert not s.trained and len(s.skipped) == 4
    assert {f: (folder / f).read_bytes() for f in kept} == kept
    # a hyperparameter override: only that model's cells retrain, with a new hash
    s = runner.run_benchmark(_cfg(tmp_path, models=["mingle", "retain"], seeds=[0, 1],
                                  hparam_overrides={"retain": {"lr": 5e-4}}))
    assert sorted(s.trained) == [("retain", 0), ("retain", 1)] and sorted(s.skipped) == [("mingle", 0), ("mingle", 1)]
    second = _records(folder)
    assert second[("retain", 0)]["input_hash"] != first[("retain", 0)]["input_hash"]
    assert second[("mingle", 0)] == first[("mingle", 0)]
    # the same run configuration but other model inputs (e.g. another vocabulary or encoder
    # output, seen through TaskData.digest): nothing is reused
    monkeypatch.setattr(pipeline, "build_features",
                        lambda *a, **k: replace(fake_build(*a, **k), digest={**fake_build(*a, **k).digest, "vocab": "other"}))
    s = runner.run_benchmark(_cfg(tmp_path, models=["mingle", "retain"], seeds=[0, 1],
                                  hparam_overrides={"retain": {"lr": 5e-4}}))
    assert len(s.trained) == 4 and not s.skipped
    third = _records(folder)
    assert all(third[k]["input_hash"] != second[k]["input_hash"] for k in third)


def test_note_policy_and_budget_changes_are_refused_or_fresh(fakes, tmp_path):
    runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0]))
    folder = tmp_path / "mortality" / "synthetic-small"
    before = _records(folder)[("retain", 0)]
    with pytest.raises(runner.RunError, match=r"notes: 'default' -> 'in-stay'.*--fresh"):
        runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0], notes="in-stay"))
    assert _records(folder)[("retain", 0)] == before  # the refused run touched nothing
    with pytest.raises(runner.RunError, match="--notes must be one of default, in-stay"):
        runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0], notes="none"))
    s = runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0], notes="in-stay", fresh=True))
    assert s.trained == [("retain", 0)] and not s.skipped
    after = _records(folder)[("retain", 0)]
    assert after["config"]["notes"] == "in-stay" and after["input_hash"] != before["input_hash"]
    assert json.loads((folder / "config.json").read_text())["notes"] == "in-stay"


def test_note_policy_reaches_the_task(fakes, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(pipeline, "get_task", lambda name, code_types=None, notes="default": seen.append(notes) or name)
    runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0], notes="in-stay"))
    assert seen == ["in-stay"]


@pytest.mark.parametrize("old", [
    {"task": "mortality", "data": "synthetic:small", "data_id": "synthetic-small", "split_seed": 0,
     "encoder": "default", "epochs": 60, "patience": 20, "monitor": "aupr", "fingerprint": "0123456789abcdef"},
    {"pipeline": "0.0.1", "task": "mortality", "max_steps": 3, "eval_every": 1, "patience": 2},
])
def test_folder_of_another_pipeline_version_is_refused(fakes, tmp_path, old, capsys):
    folder = tmp_path / "mortality" / "synthetic-small"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(old))
    (folder / "runs.jsonl").write_text(json.dumps({"model": "retain", "seed": 0, "metrics": {"aupr": 0.5},
                                                   "epochs_run": 60, "best_epoch": 12}) + "\n")
    with pytest.raises(runner.RunError) as exc:
        runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0]))
    msg = str(exc.value)
    assert "pipeline version" in msg and "--fresh" in msg and pipeline.PIPELINE_VERSION in msg
    assert (old.get("pipeline") or "epoch budgets") in msg
    # the CLI says so in one line
    rc = cli_main(["run", "--task", "mortality", "--data", "synthetic:small", "--models", "retain", "--seeds", "1",
                   "--max-steps", "3", "--eval-every", "1", "--patience", "2", "--out", str(tmp_path), "--quiet",
                   "--reference", "none"])
    err = capsys.readouterr().err
    assert rc == 1 and "pipeline version" in err and "--fresh" in err and "Traceback" not in err
    # --fresh discards the old cells and trains anew
    s = runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0], fresh=True))
    assert s.trained == [("retain", 0)]
    recs = R.load_runs(folder)
    assert len(recs) == 1 and recs[0]["input_hash"] and "epochs_run" not in recs[0]
    assert json.loads((folder / "config.json").read_text())["pipeline"] == pipeline.PIPELINE_VERSION


def test_best_baseline_is_chosen_by_validation_not_test(fakes, tmp_path):
    """HypEHR is the better baseline on the test set, RETAIN on validation: RETAIN is compared."""
    s = runner.run_benchmark(_cfg(tmp_path, seeds=[0, 1],
                                  hparam_overrides={"retain": {"val_aupr": 0.95}, "hypehr": {"val_aupr": 0.55}}))
    recs = R.load_runs(s.folder)

    def mean(model, key):
        return np.mean([r[key]["aupr"] for r in recs if r["model"] == model])

    assert mean("hypehr", "metrics") > mean("retain", "metrics")          # test-best: HypEHR
    assert mean("retain", "val_metrics") > mean("hypehr", "val_metrics")  # validation-best: RETAIN
    assert select_baseline(recs, "aupr") == "retain"
    comp = json.loads((s.folder / "comparison.json").read_text())
    assert comp["a"] == "mingle" and comp["b"] == "retain" and s.comparison["b"] == "retain"
    assert comp["baseline_selected_by"] == "validation aupr"
    assert "validation" in comp["definition"] and "test set plays no part" in comp["definition"]
    md = (s.folder / "table.md").read_text()
    assert "best baseline RETAIN (chosen by validation AUPR" in md


def test_select_baseline_rules():
    def rec(model, val, seed=0):
        return {"model": model, "seed": seed, "val_metrics": {"aupr": val, "brier": 1 - val}}

    recs = [rec("mingle", 0.99), rec("mingle-no-notes", 0.98), rec("retain", 0.6), rec("retain", 0.8, 1),
            rec("hypehr", 0.65), rec("hypehr", 0.7, 1), rec("gram", float("nan"))]
    assert select_baseline(recs, "aupr") == "retain"      # mean 0.70 > 0.675; never MINGLE or an ablation
    assert select_baseline(recs, "brier") == "retain"     # lower is better
    assert select_baseline([rec("hypehr", 0.7), rec("retain", 0.7)], "aupr") == "hypehr"  # tie: first listed
    assert select_baseline([rec("mingle", 0.9), {"model": "retain", "seed": 0}], "aupr") is None


def test_tables_mark_budget_stopped_models(fakes, tmp_path):
    s = runner.run_benchmark(_cfg(tmp_path, seeds=[0, 1], max_steps=5, patience=2,
                                  hparam_overrides={"retain": {"plateau": 1}}))
    rows = {r["model"]: r for r in s.rows}
    assert rows["mingle"]["stopped_at_budget"] == "2/2" and rows["mingle"]["n_budget"] == 2
    assert rows["retain"]["stopped_at_budget"] == "0/2" and rows["retain"]["n_budget"] == 0
    assert rows["retain"]["best_step"] == "1 (1–1)" and rows["mingle"]["best_step"] == "5 (5–5)"
    from mingle_bench.report.tables import BUDGET_NOTE

    md = (s.folder / "table.md").read_text()
    import re

    assert re.search(r"^\| MINGLE † +\|", md, re.M) and re.search(r"^\| HypEHR † +\|", md, re.M)
    assert re.search(r"^\| RETAIN +\|", md, re.M) and "RETAIN †" not in md
    assert BUDGET_NOTE in md and "learning_curves.png" in md
    assert "budget 5 optimiser steps" in md and "validation every 1 steps" in md and "after 2 evaluations" in md
    assert "note policy default" in md and "protocol default" in md
    tex = (s.folder / "table.tex").read_text()
    assert r"MINGLE $^\dagger$" in tex and "stopped at the step budget" in tex
    csv = pd.read_csv(s.folder / "table.csv").set_index("model")
    assert csv.loc["mingle", "n_stopped_at_budget"] == 2 and csv.loc["retain", "n_stopped_at_budget"] == 0
    assert (s.folder / runner.LEARNING_CURVES_FILE).stat().st_size > 1000
    # every model on a plateau: no mark, no footnote
    over = {m: {"plateau": 1} for m in ("mingle", "hypehr", "retain")}
    s = runner.run_benchmark(_cfg(tmp_path / "b", seeds=[0], max_steps=5, patience=2, hparam_overrides=over))
    md = (s.folder / "table.md").read_text()
    assert "†" not in md and BUDGET_NOTE not in md


@pytest.mark.parametrize("cmd", ["run", "tune", "reproduce"])
def test_cli_epochs_flag_is_gone(fakes, tmp_path, capsys, cmd):
    extra = ["--model", "retain"] if cmd == "tune" else []
    rc = cli_main([cmd, "--epochs", "5", "--data", "synthetic:small", "--out", str(tmp_path), "--quiet", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and "Traceback" not in err
    assert "--epochs" in err and "--max-steps" in err
    assert not (tmp_path / "mortality").exists()


@pytest.mark.parametrize("flags,needle", [
    (["--max-steps", "0"], "--max-steps must be an integer >= 1, got 0"),
    (["--eval-every", "0"], "--eval-every must be an integer >= 1, got 0"),
    (["--patience", "0"], "--patience must be an integer >= 1, got 0"),
    (["--max-steps", "3", "--eval-every", "5"], "--eval-every (5) must not exceed --max-steps (3)"),
])
def test_cli_budget_errors_name_the_flag(fakes, tmp_path, capsys, flags, needle):
    for cmd, extra in (("run", []), ("tune", ["--model", "retain"])):
        rc = cli_main([cmd, "--data", "synthetic:small", "--out", str(tmp_path), "--quiet", *extra, *flags])
        err = capsys.readouterr().err.strip()
        assert rc == 1 and needle in err and "\n" not in err, (cmd, err)
    assert not (tmp_path / "mortality").exists()


def _append_many(folder: str, worker: int, n: int) -> None:
    for i in range(n):
        R.add_run(folder, {"model": f"m{worker}", "seed": i, "metrics": {"aupr": 0.5}, "input_hash": f"{worker}-{i}"})


def test_concurrent_appends_lose_no_record(tmp_path):
    """Four processes append 20 records each to one runs.jsonl: all 80 are kept (the read-modify-write
    of add_run holds the folder lock)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), w, 20)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    recs = R.load_runs(tmp_path)
    assert sorted((r["model"], r["seed"]) for r in recs) == sorted((f"m{w}", i) for w in range(4) for i in range(20))


def test_a_locked_folder_refuses_a_second_run_at_once(fakes, tmp_path):
    """While another process holds a results folder's lock, a run on it fails at once, naming the folder."""
    folder = tmp_path / "mortality" / "synthetic-small"
    with folder_locked_elsewhere(folder) as pid:
        t0 = time.time()
        with pytest.raises(R.FolderInUse, match=f"in use by another run \\(pid {pid}\\)"):
            runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0]))
        assert time.time() - t0 < 5
        assert not (folder / R.RUNS_FILE).exists()
    s = runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0]))  # free again
    assert s.trained == [("retain", 0)]


@pytest.mark.slow
def test_two_runs_on_one_folder_keep_every_cell(tmp_path):
    """Two `mingle-bench run`s on the same --out: the second fails at once with one line naming the
    folder, the first finishes every cell; a rerun then resumes all of them."""
    # the first run must outlive the second's start-up (a few seconds on a loaded machine)
    env = {**os.environ, "FAKE_FIT_SLEEP": "0.3"}
    argv = ["run", "--task", "mortality", "--data", "synthetic:small", "--models", "mingle,retain,hypehr", "--seeds",
            "3", "--max-steps", "4", "--eval-every", "1", "--out", str(tmp_path), "--quiet", "--bootstrap", "20",
            "--reference", "none"]
    folder = tmp_path / "mortality" / "synthetic-small"
    first = _fake_cli(argv, env)
    wait_for(folder / R.CONFIG_FILE)
    second = _fake_cli(argv, env)
    out2 = second.communicate(timeout=120)[0]
    out1 = first.communicate(timeout=120)[0]
    assert first.returncode == 0, out1
    assert second.returncode == 1, out2
    assert "Traceback" not in out2
    assert f"error: {folder} is in use by another run (pid {first.pid})" in out2, out2
    assert len(R.load_runs(folder)) == 9
    out3 = _fake_cli(argv, {**env, "FAKE_FIT_SLEEP": "0"}).communicate(timeout=120)[0]
    assert "0 trained, 9 resumed" in out3, out3


def test_precision_is_recorded_resolved(monkeypatch):
    from mingle_bench import pipeline as P
    from mingle_bench.encoders import hf

    monkeypatch.setattr(hf, "device_supports_bf16", lambda device: True)
    assert P.effective_precision("auto", "default") == "bf16"
    monkeypatch.setattr(hf, "device_supports_bf16", lambda device: False)
    assert P.effective_precision("auto", "default") == "fp32"
    assert P.effective_precision("bf16", None) == "fp32"          # nothing embeds: precision is moot
    assert P.effective_precision("auto", "openai:text-embedding-3-small") == "fp32"
    assert P.effective_precision("bf16", "default") == "bf16"
    with pytest.raises(P.RunError, match="--precision"):
        P.effective_precision("fp16", "default")


def test_fp32_and_bf16_runs_do_not_share_a_folder_or_hashes(fakes, tmp_path):
    runner.run_benchmark(_cfg(tmp_path))
    with pytest.raises(pipeline.RunError, match="precision: None -> 'bf16'"):
        runner.run_benchmark(_cfg(tmp_path, precision="bf16"))


def test_each_model_gets_its_own_bootstrap_ci_computed_once_per_cell(fakes, tmp_path, monkeypatch):
    """model_ci.json: every model's own patient-level 95% CI, in the tables; a resume that adds
    cells recomputes only the models whose cells changed."""
    import json

    from mingle_bench.report import comparison

    runner.run_benchmark(_cfg(tmp_path, seeds=[0]))
    folder = tmp_path / "mortality" / "synthetic-small"
    data = json.loads((folder / "model_ci.json").read_text())
    assert data["metrics"] == ["auroc", "aupr"] and data["n_boot"] == 200
    rows = {r["model"]: r for r in pipeline_rows(folder)}
    for model, entry in data["models"].items():
        ci = entry["ci"]["auroc"]
        assert ci["value"] == pytest.approx(rows[model]["auroc_mean"])
        assert ci["ci_low"] <= ci["value"] <= ci["ci_high"]
    assert "| AUROC 95% CI " in (folder / "table.md").read_text() and "AUROC 95\\% CI" in (folder / "table.tex").read_text()
    computed = []
    real = comparison.model_ci
    monkeypatch.setattr(comparison, "model_ci", lambda y, probs, *a, **k: computed.append(len(probs)) or real(y, probs, *a, **k))
    runner.run_benchmark(_cfg(tmp_path, seeds=[0], models=["retain"]))  # nothing new: every entry reused
    assert computed == []
    runner.run_benchmark(_cfg(tmp_path, seeds=[0, 1], models=["retain"]))  # retain's new seed only
    assert computed == [2]


def pipeline_rows(folder):
    from mingle_bench import results as R
    from mingle_bench.report.tables import aggregate

    return aggregate(R.load_runs(folder), folder=folder)


def test_stored_json_equals_compares_as_atomic_write_json_stores(tmp_path):
    """The check behind "a resume that trains nothing leaves config.json alone" (and save_best's
    unchanged study file): nan and numpy scalars compare as stored, ignored keys do not count, and
    a missing, broken or non-object file is never equal."""
    from mingle_bench.io import atomic_write_json, stored_json_equals

    path = tmp_path / "c.json"
    obj = {"a": float("nan"), "b": np.float32(0.5), "n": np.int64(3), "updated_at": "t0"}
    assert not stored_json_equals(path, obj)
    atomic_write_json(path, obj)
    assert stored_json_equals(path, obj)
    assert not stored_json_equals(path, {**obj, "updated_at": "t1"})
    assert stored_json_equals(path, {**obj, "updated_at": "t1"}, ignore=("updated_at",))
    assert not stored_json_equals(path, {**obj, "n": 4}, ignore=("updated_at",))
    path.write_text("[1, 2]")
    assert not stored_json_equals(path, obj)
    path.write_text("{broken")
    assert not stored_json_equals(path, obj)
