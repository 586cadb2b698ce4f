"""``--monitor loss``: the validation BCE (lower is better) selects the best step, the best baseline
and tune's objective, like any metric (issue 22 item 8)."""
from __future__ import annotations

import json

import optuna
import pytest

from mingle_bench import pipeline, runner, runspec, tuning
from mingle_bench import results as R
from mingle_bench.metrics import MONITORS, is_better
from mingle_bench.report.finalize import select_baseline
from pipeline_fakes import MINGLE_TINY, RETAIN_TINY, fake_fit


def test_loss_is_an_accepted_monitor_everywhere_it_is_named():
    assert MONITORS["loss"] is False and is_better("loss", 0.3, 0.4) and not is_better("loss", 0.4, 0.3)
    pipeline.check_monitor("loss")
    assert "loss" in runspec.get("monitor").allowed()
    with pytest.raises(pipeline.RunError, match="--monitor must be one of .*loss"):
        pipeline.check_monitor("los")


def test_run_with_monitor_loss_selects_on_validation_loss_and_tabulates(toy_pipeline, tmp_path):
    cfg = runner.RunConfig(task="mortality", data="synthetic:small", models=["mingle", "retain", "logreg"], seeds=[0],
                           out=str(tmp_path), max_steps=6, eval_every=2, patience=50, n_boot=50, progress=False,
                           command="mingle-bench run (test)", reference=None, monitor="loss",
                           hparam_overrides={"retain": RETAIN_TINY, "mingle": MINGLE_TINY})
    s = runner.run_benchmark(cfg)
    recs = R.load_runs(s.folder)
    for r in recs:
        assert r["monitor_used"] == "loss" and "loss" in r["val_metrics"], r["model"]
        if r["model"] != "logreg":  # the best step is the evaluation of least validation loss
            assert r["best_step"] == min(r["curve"], key=lambda c: c[1])[0], r["model"]
    comp = json.loads((s.folder / "comparison.json").read_text())
    assert comp["b"] == select_baseline(recs, "loss") == min(
        ("retain", "logreg"), key=lambda m: next(r["val_metrics"]["loss"] for r in recs if r["model"] == m))
    table = (s.folder / "table.md").read_text()
    assert "without a better validation loss" in table and "MINGLE" in table


def test_tune_with_monitor_loss_minimises(fakes, tmp_path, monkeypatch):
    def fit(model_name, data, hp, *a, **k):
        res = fake_fit(model_name, data, hp, *a, **k)
        res.val_metrics = {"aupr": 0.5, "loss": abs(hp["scale"] - 2.0) / 3}  # least at scale 2
        return res

    monkeypatch.setattr(pipeline, "fit", fit)
    res = tuning.tune(task="mortality", model="retain", trials=5, data="synthetic:small", max_steps=2, eval_every=1,
                      patience=2, out=str(tmp_path), progress=False, monitor="loss")
    study = optuna.load_study(study_name=res.study_name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE and study.user_attrs["monitor"] == "loss"
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert res.best_value == min(t.value for t in done) == pytest.approx(abs(res.best_params["scale"] - 2.0) / 3)
