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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mingle_bench import results as R
from mingle_bench import runner
from mingle_bench.cli import main as cli_main

TESTS_DIR = Path(__file__).resolve().parent
FAKE_MODELS = {"mingle": 1.6, "hypehr": 1.2, "retain": 1.0, "gram": 0.9, "hypergat": 1.1, "mingle-no-notes": 1.3,
               "mingle-no-concept": 1.4}


@dataclass
class FakeManifest:
    seed: int
    ids: dict

    def to_json(self) -> str:
        import hashlib

        blob = json.dumps({"seed": self.seed, **self.ids}, sort_keys=True)
        return json.dumps({"seed": self.seed, **self.ids, "sha256": hashlib.sha256(blob.encode()).hexdigest()})


@dataclass
class FakeData:
    labels: torch.Tensor
    split_idx: dict
    samples: pd.DataFrame
    manifest: FakeManifest
    label_names: list
    report: dict = field(default_factory=dict)


@dataclass
class FakeFit:
    test_probs: np.ndarray
    val_metrics: dict
    train_s: float
    best_epoch: int
    history: list
    impl: str = "reference"
    n_params: int = 10


def fake_build(cohort, task, *, split_seed, encoder, progress, **kw):
    n_labels = 3 if task == "phenotype" else 1
    rng = np.random.default_rng(123)
    n = 200
    patients = np.repeat(np.arange(100), 2)
    labels = (rng.random((n, n_labels)) < 0.3).astype(np.float32)
    perm = np.random.default_rng(split_seed).permutation(100)
    parts = {"train": perm[:70], "val": perm[70:80], "test": perm[80:]}
    split_idx = {k: torch.from_numpy(np.flatnonzero(np.isin(patients, v))) for k, v in parts.items()}
    samples = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "patient_id": patients})
    manifest = FakeManifest(split_seed, {k: sorted(int(x) for x in v) for k, v in parts.items()})
    return FakeData(torch.from_numpy(labels), split_idx, samples, manifest, [f"y{j}" for j in range(n_labels)])


def fake_fit(model_name, data, hparams, seed, device, max_epochs, patience, monitor, on_epoch):
    sleep = float(os.environ.get("FAKE_FIT_SLEEP", "0"))
    strength = FAKE_MODELS[model_name] * hparams.get("scale", 1.0)
    rng = np.random.default_rng(seed * 1000 + sum(map(ord, model_name)))
    y = data.labels.numpy()[data.split_idx["test"].numpy()]
    logits = strength * (2 * y - 1) + rng.normal(size=y.shape)
    for e in range(max_epochs):
        on_epoch(e, {"aupr": 0.5 + 0.01 * e, "auroc": 0.6})
        if sleep:
            time.sleep(sleep)
    return FakeFit(1 / (1 + np.exp(-logits)), {"aupr": 0.7, "auroc": 0.8}, 0.01, max_epochs - 1, [{}] * max_epochs)


def install_fakes(setattr_fn=setattr) -> None:
    setattr_fn(runner, "load_cohort", lambda spec, progress=True: {"spec": spec})
    setattr_fn(runner, "source_data_id", lambda spec: spec.replace(":", "-"))
    setattr_fn(runner, "get_task", lambda name: name)
    setattr_fn(runner, "build_data", fake_build)
    setattr_fn(runner, "model_defaults", lambda name: {"lr": 1e-3, "scale": 1.0})
    setattr_fn(runner, "available_models", lambda: sorted(FAKE_MODELS))
    setattr_fn(runner, "fit_model", fake_fit)


@pytest.fixture
def fakes(monkeypatch):
    install_fakes(monkeypatch.setattr)


def _cfg(tmp_path, **kw):
    base = dict(task="mortality", data="synthetic:small", models=["mingle", "hypehr", "retain"], seeds=[0, 1, 2],
                out=str(tmp_path), epochs=3, patience=2, n_boot=200, progress=False, command="mingle-bench run (test)")
    base.update(kw)
    return runner.RunConfig(**base)


def test_run_writes_all_files_with_contents(fakes, tmp_path):
    s = runner.run_benchmark(_cfg(tmp_path))
    folder = tmp_path / "mortality" / "synthetic-small"
    assert s.folder == folder
    for name in ("table.md", "table.tex", "table.csv", "runs.jsonl", "splits.json", "config.json", "curves.png",
                 "comparison.json"):
        assert (folder / name).is_file(), name
    recs = R.load_runs(folder)
    assert len(recs) == 9 and {(r["model"], r["seed"]) for r in recs} == {(m, s) for m in ("mingle", "hypehr", "retain") for s in range(3)}
    for r in recs:
        assert set(r["metrics"]) == {"acc", "auroc", "aupr", "f1", "brier", "ece"}
        assert r["impl"] and r["device"] == "cpu" and r["train_s"] >= 0
        assert r["config"]["split_seed"] == 0 and r["config"]["epochs"] == 3
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


def test_rerun_skips_finished_cells_and_adds_new_ones(fakes, tmp_path, monkeypatch):
    runner.run_benchmark(_cfg(tmp_path, models=["mingle", "retain"], seeds=[0, 1]))
    folder = tmp_path / "mortality" / "synthetic-small"
    before = {(r["model"], r["seed"]): r["finished_at"] for r in R.load_runs(folder)}
    calls = []
    monkeypatch.setattr(runner, "fit_model", lambda *a, **k: calls.append(a[:1] + a[3:4]) or fake_fit(*a, **k))
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
    with pytest.raises(runner.RunError, match="epochs: 3 -> 4"):
        runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0], epochs=4))
    s = runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0], epochs=4, fresh=True))
    assert len(s.trained) == 1


def test_failed_cell_is_reported_and_others_kept(fakes, tmp_path, monkeypatch):
    def flaky(model_name, *a, **k):
        if model_name == "hypehr":
            raise RuntimeError("diverged")
        return fake_fit(model_name, *a, **k)

    monkeypatch.setattr(runner, "fit_model", flaky)
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
    with pytest.raises(runner.RunError, match="no CUDA|--device"):
        runner.resolve_device("cuda") if not torch.cuda.is_available() else runner.resolve_device("tpu")
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
    monkeypatch.setattr(runner, "fit_model", lambda m, d, hp, *a, **k: seen.setdefault(m, hp) and fake_fit(m, d, hp, *a, **k))
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
    code = ("import sys; sys.path.insert(0, %r); import test_runner as t; t.install_fakes();"
            "from mingle_bench.cli import main; sys.exit(main(%r))" % (str(TESTS_DIR), argv))
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigkill_midway_then_resume(tmp_path):
    """Kill a run with SIGKILL right after its first cell lands; the rerun skips that cell."""
    env = {**os.environ, "FAKE_FIT_SLEEP": "0.15"}
    argv = ["run", "--task", "mortality", "--data", "synthetic:small", "--models", "mingle,retain", "--seeds", "2",
            "--epochs", "4", "--out", str(tmp_path), "--quiet", "--bootstrap", "50"]
    folder = tmp_path / "mortality" / "synthetic-small"
    proc = _fake_cli(argv, env)
    deadline = time.time() + 60
    while time.time() < deadline and not (folder / R.RUNS_FILE).exists():
        time.sleep(0.02)
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
    for name in ("table.md", "table.tex", "table.csv", "comparison.json", "curves.png"):
        (folder / name).unlink()
    assert cli_main(["table", str(folder), "--write"]) == 0
    assert "| MINGLE" in capsys.readouterr().out
    for name in ("table.md", "table.tex", "table.csv", "comparison.json", "curves.png"):
        assert (folder / name).exists(), name


def test_changed_data_under_the_same_id_is_refused(fakes, tmp_path, monkeypatch):
    class Cohort:
        def __init__(self, sid):
            self.source_id = sid

    monkeypatch.setattr(runner, "load_cohort", lambda spec, progress=True: Cohort("aaaa"))
    runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0]))
    monkeypatch.setattr(runner, "load_cohort", lambda spec, progress=True: Cohort("bbbb"))
    with pytest.raises(runner.RunError, match="the data changed"):
        runner.run_benchmark(_cfg(tmp_path, models=["retain"], seeds=[0, 1]))


def test_graph_scope_and_code_types_reach_the_features_stage(tmp_path, fakes, monkeypatch):
    """`run --graph-scope/--code-types` go to build_task_data; defaults keep the old run fingerprint."""
    from mingle_bench.cli import main

    seen, tasks = [], []
    monkeypatch.setattr(runner, "build_data", lambda *a, **k: seen.append(k) or fake_build(*a, **k))
    monkeypatch.setattr(runner, "get_task", lambda name, code_types=None: tasks.append(code_types) or name)
    base = ["run", "--task", "mortality", "--data", "synthetic:small", "--models", "mingle", "--seeds", "1",
            "--epochs", "2", "--quiet", "--bootstrap", "0"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    assert seen[-1]["graph_scope"] == "all" and tasks[-1] is None
    cfg_a = json.loads((tmp_path / "a" / "mortality" / "synthetic-small" / "config.json").read_text())
    assert "graph_scope" not in cfg_a and "code_types" not in cfg_a

    assert main(base + ["--out", str(tmp_path / "b"), "--graph-scope", "samples",
                        "--code-types", "medication,service"]) == 0
    assert seen[-1]["graph_scope"] == "samples" and tasks[-1] == ("medication", "service")
    cfg_b = json.loads((tmp_path / "b" / "mortality" / "synthetic-small" / "config.json").read_text())
    assert cfg_b["graph_scope"] == "samples" and cfg_b["code_types"] == ["medication", "service"]
    assert cfg_b["fingerprint"] != cfg_a["fingerprint"]
    # a folder of the default scope refuses the other scope instead of mixing cells
    assert main(base + ["--out", str(tmp_path / "a"), "--graph-scope", "samples"]) == 1
    assert main(base + ["--out", str(tmp_path / "a"), "--code-types", "lab"]) == 1
