"""``run --tracker mlflow|tensorboard``: every cell's parameters, live validation curve and test
metrics, read back with the real packages (skipped, saying which extra, when one is absent)."""
from __future__ import annotations

import json

import pytest

from mingle_bench import tracking
from mingle_bench.pipeline import RunError
from pipeline_fakes import MINGLE_TINY, RETAIN_TINY


@pytest.fixture(autouse=True)
def _no_figures(monkeypatch, tmp_path):
    """The figures play no part here (and cost seconds)."""
    from mingle_bench.report import plots

    for fn in ("plot_curves", "plot_learning_curves"):
        monkeypatch.setattr(plots, fn, lambda *a, **kw: tmp_path / "figure.png")


def _run(tmp_path, tracker, **kw):
    from mingle_bench.runner import RunConfig, run_benchmark

    cfg = RunConfig(task="mortality", data="synthetic:small", models=kw.pop("models", ("retain", "logreg")),
                    seeds=kw.pop("seeds", [0]), out=str(tmp_path), max_steps=20, eval_every=5, patience=10,
                    progress=False, reference=None, n_boot=0, tracker=tracker,
                    hparam_overrides=kw.pop("overrides", {"retain": RETAIN_TINY}), **kw)
    return run_benchmark(cfg)


def _records(folder):
    return {(r["model"], r["seed"]): r for r in map(json.loads, (folder / "runs.jsonl").read_text().splitlines())}


def _same_curve(logged, curve):
    assert [int(step) for step, _ in logged] == [int(step) for step, _ in curve]
    assert [v for _, v in logged] == pytest.approx([v for _, v in curve], rel=1e-6)  # TensorBoard: float32


@pytest.mark.slow  # a new MLflow SQLite store runs MLflow's ~50 Alembic migrations: 4 s of CPU, 15-30 s on a busy machine
def test_mlflow_logs_one_run_per_cell_with_params_curve_and_test_metrics(toy_pipeline, tmp_path):
    """Two cells, then a rerun that resumes them (no new runs) and adds a cell that diverges (FAILED)."""
    pytest.importorskip("mlflow", reason="--tracker mlflow needs the extra: pip install -e '.[mlflow]'")
    from mlflow.tracking import MlflowClient

    s = _run(tmp_path, "mlflow")
    recs = _records(s.folder)
    client = MlflowClient(f"sqlite:///{s.folder.resolve()}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name(f"mortality/{s.folder.name}")
    runs = client.search_runs([exp.experiment_id])
    assert sorted((r.data.params["model"], int(r.data.params["seed"])) for r in runs) == sorted(recs)
    for run in runs:
        rec = recs[(run.data.params["model"], int(run.data.params["seed"]))]
        assert run.info.status == "FINISHED" and run.info.run_name == f"{rec['model']}-seed{rec['seed']}"
        assert run.data.params["input_hash"] == rec["input_hash"] == run.data.tags["mingle.input_hash"]
        assert run.data.params["split_seed"] == "0" and run.data.params["max_steps"] == "20"
        assert run.data.tags["mingle.folder"] == str(s.folder.resolve())
        for k, v in rec["config"]["hparams"].items():
            assert run.data.params[f"hp.{k}"] == str(v)
        history = client.get_metric_history(run.info.run_id, "val_aupr")
        _same_curve(sorted((m.step, m.value) for m in history), rec["curve"])
        for k, v in rec["metrics"].items():
            assert run.data.metrics[f"test_{k}"] == pytest.approx(v)
        assert run.data.metrics["best_step"] == rec["best_step"]
    retain = next(r for r in runs if r.data.params["model"] == "retain")
    assert len(client.get_metric_history(retain.info.run_id, "val_auroc")) == 4  # live: every metric, every evaluation

    again = _run(tmp_path, "mlflow", models=("retain", "logreg", "mingle"),
                 overrides={"retain": RETAIN_TINY, "mingle": {**MINGLE_TINY, "lr": 1e12}})
    assert sorted(again.skipped) == sorted(recs) and [f["model"] for f in again.failed] == ["mingle"]
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == len(recs) + 1
    assert [r.info.status for r in runs if r.data.params["model"] == "mingle"] == ["FAILED"]


class Recording(tracking.Tracker):
    """A backend that records what the runner hands it."""

    name = "recording"
    calls: list = []

    def _begin(self, model, seed):
        self.calls.append(("begin", model, seed, self.params(model, seed)))

    def _evaluation(self, key, step, metrics):
        self.calls.append(("eval", *key, step, metrics))

    def _finish(self, key, record):
        self.calls.append(("finish", *key, record["metrics"]))

    def _abandon(self, key, status):
        self.calls.append(("abandon", *key, status))


def test_the_runner_feeds_the_tracker_live_evaluations_params_and_results(toy_pipeline, tmp_path, monkeypatch):
    """The trainer's on_eval reaches the tracker at every evaluation; a solver fit gets its record's
    curve; a failed cell is abandoned as FAILED."""
    Recording.calls = []
    monkeypatch.setattr(tracking, "check_tracker", lambda name: name)
    monkeypatch.setattr(tracking, "open_tracker", lambda name, folder, cfg: Recording(folder, cfg))
    s = _run(tmp_path, "recording", models=("retain", "logreg", "mingle"),
             overrides={"retain": RETAIN_TINY, "mingle": {**MINGLE_TINY, "lr": 1e12}})
    recs = _records(s.folder)
    calls = Recording.calls
    assert [c[:3] for c in calls if c[0] != "eval"] == [
        ("begin", "retain", 0), ("finish", "retain", 0), ("begin", "logreg", 0), ("finish", "logreg", 0),
        ("begin", "mingle", 0), ("abandon", "mingle", 0)]
    assert calls[-1][3] == "FAILED"
    params = calls[0][3]
    assert params["input_hash"] == recs[("retain", 0)]["input_hash"] and params["hp.emb_dim"] == 8
    assert params["max_steps"] == 20 and params["split_seed"] == 0 and params["seed"] == 0
    for model in ("retain", "logreg"):
        evals = [(c[3], c[4]["aupr"]) for c in calls if c[0] == "eval" and c[1] == model]
        _same_curve(evals, recs[(model, 0)]["curve"])
    assert {"auroc", "brier"} <= set(next(c for c in calls if c[0] == "eval")[4])  # every validation metric
    assert next(c for c in calls if c[:2] == ("finish", "retain"))[3] == recs[("retain", 0)]["metrics"]


def test_tensorboard_writes_one_event_folder_per_cell(toy_pipeline, tmp_path):
    pytest.importorskip("tensorboard", reason="--tracker tensorboard needs the extra: pip install -e '.[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    s = _run(tmp_path, "tensorboard")
    recs = _records(s.folder)
    assert sorted(p.name for p in (s.folder / "tensorboard").iterdir()) == ["logreg-0", "retain-0"]
    for (model, seed), rec in recs.items():
        acc = EventAccumulator(str(s.folder / "tensorboard" / f"{model}-{seed}")).Reload()
        _same_curve([(e.step, e.value) for e in acc.Scalars("val/aupr")], rec["curve"])


def test_a_tracker_without_its_package_is_one_line_naming_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(RunError, match=r"--tracker mlflow needs the mlflow package: pip install 'mingle-bench\[mlflow\]'"):
        tracking.check_tracker("mlflow")
    with pytest.raises(RunError, match="--tracker 'wandb': expected one of none, mlflow, tensorboard"):
        tracking.check_tracker("wandb")
    assert tracking.check_tracker("none") == "none"


def test_the_tracker_is_not_part_of_the_fingerprint(fakes, tmp_path):
    """A rerun with --tracker none after one with a tracker reuses every cell."""
    first = _run(tmp_path, "none", models=("mingle",), seeds=[0])
    second = _run(tmp_path, "tensorboard" if tracking.importlib.util.find_spec("tensorboard") else "none",
                  models=("mingle",), seeds=[0])
    assert first.trained == [("mingle", 0)] and second.skipped == [("mingle", 0)]
