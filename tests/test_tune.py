"""Tuning mechanics on the fake pipeline (tests/pipeline_fakes.py): resume, 2 workers on one SQLite study,
the total-trials cap, validation-only objective, the version-detecting retry helper."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from mingle_bench import pipeline, runner, tuning
from pipeline_fakes import fake_fit

TESTS_DIR = Path(__file__).resolve().parent


def _tune(tmp_path, **kw):
    base = dict(task="mortality", model="retain", trials=4, data="synthetic:small", max_steps=3, eval_every=1,
                patience=2, out=str(tmp_path), progress=False)
    base.update(kw)
    return tuning.tune(**base)


def test_tune_saves_best_params_from_validation_only(fakes, tmp_path, monkeypatch):
    seen_test = []
    real_fit = fake_fit

    def fit(model_name, data, hp, *a, **k):
        res = real_fit(model_name, data, hp, *a, **k)
        res.val_metrics = {"aupr": 1 - abs(hp["scale"] - 2.0) / 3, "auroc": 0.5}  # peak at scale 2
        res.test_probs = res.test_probs * 0 + 0.5  # a test set the objective must never look at
        seen_test.append(True)
        return res

    monkeypatch.setattr(pipeline, "fit", fit)
    res = _tune(tmp_path, trials=6)
    assert res.counts["complete"] + res.counts["pruned"] == 6
    saved = json.loads((tmp_path / "tuning" / "mortality-retain-synthetic-small.json").read_text())
    assert saved["model"] == "retain" and saved["best_params"] == res.best_params
    assert saved["hparams"]["lr"] == 1e-3 and saved["hparams"]["scale"] == res.best_params["scale"]
    study = optuna.load_study(study_name=res.study_name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    for t in study.trials:
        if t.state.name == "COMPLETE":
            assert t.value == pytest.approx(1 - abs(t.params["scale"] - 2.0) / 3)
    assert study.user_attrs["split_sha256"] and study.user_attrs["monitor"] == "aupr"
    assert {k: study.user_attrs[k] for k in ("pipeline", "max_steps", "eval_every", "patience", "notes")} == \
        {"pipeline": pipeline.PIPELINE_VERSION, "max_steps": 3, "eval_every": 1, "patience": 2, "notes": "default"}
    for t in study.trials:  # reported at every evaluation, keyed by optimiser step
        assert set(t.intermediate_values) <= {1, 2, 3} and t.user_attrs["stopped"] in ("budget", "early")
        if t.state.name == "COMPLETE":
            assert t.user_attrs["best_step"] == 3 and set(t.intermediate_values) == {1, 2, 3}
    assert (tmp_path / "tuning" / f"{res.study_name}_trials.csv").exists()
    # resume: the study already holds 6 finished trials, raising the cap to 8 runs only 2 more
    res2 = _tune(tmp_path, trials=8)
    assert res2.counts["complete"] + res2.counts["pruned"] == 8
    # a finished study tuned again (reproduce reuses it) leaves its committed file as it was
    saved_file = tmp_path / "tuning" / "mortality-retain-synthetic-small.json"
    before = saved_file.read_bytes()
    assert _tune(tmp_path, trials=8).best_params == res2.best_params
    assert saved_file.read_bytes() == before
    # run --tuned picks the saved params
    seen = {}
    monkeypatch.setattr(pipeline, "fit", lambda m, d, hp, *a, **k: seen.setdefault(m, hp) and real_fit(m, d, hp, *a, **k))
    runner.run_benchmark(runner.RunConfig(task="mortality", data="synthetic:small", models=["retain"], seeds=[0],
                                          out=str(tmp_path), max_steps=3, eval_every=1, patience=2, n_boot=0,
                                          progress=False, tuned=[res.study_name], reference=None))
    assert seen["retain"]["scale"] == res2.best_params["scale"]


def test_joining_a_study_with_another_setup_is_refused(fakes, tmp_path):
    _tune(tmp_path, trials=1, study_name="s1")
    with pytest.raises(tuning.TuneError, match="max_steps: study has 3, this worker 4"):
        _tune(tmp_path, trials=2, study_name="s1", max_steps=4)
    with pytest.raises(tuning.TuneError, match="eval_every: study has 1, this worker 3"):
        _tune(tmp_path, trials=2, study_name="s1", eval_every=3)
    with pytest.raises(tuning.TuneError, match="notes: study has 'default', this worker 'in-stay'"):
        _tune(tmp_path, trials=2, study_name="s1", notes="in-stay")
    with pytest.raises(pipeline.RunError, match="--notes must be one of"):
        _tune(tmp_path, trials=2, study_name="s1", notes="nope")
    with pytest.raises(runner.RunError, match="--max-steps must be an integer >= 1"):
        _tune(tmp_path, trials=2, study_name="s1", max_steps=0)
    # the same setup joins the study
    res = _tune(tmp_path, trials=2, study_name="s1")
    assert res.counts["complete"] + res.counts["pruned"] == 2


def test_note_policy_reaches_the_task_when_tuning(fakes, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(pipeline, "get_task", lambda name, code_types=None, notes="default": seen.append(notes) or name)
    _tune(tmp_path, trials=1, notes="in-stay")
    assert seen == ["in-stay"]


def test_retry_helper_handles_both_callback_names():
    kw = tuning.stale_trial_retry_kwargs(max_retry=2)
    import optuna.storages as st

    params = __import__("inspect").signature(st.RDBStorage.__init__).parameters
    if "heartbeat_stale_trial_callback" in params:
        assert isinstance(kw["heartbeat_stale_trial_callback"], st.RetryHeartbeatStaleTrialCallback)
    else:
        assert isinstance(kw["failed_trial_callback"], st.RetryFailedTrialCallback)

    class OldStorage:  # the signature of Optuna <= 4.8
        def __init__(self, url, engine_kwargs=None, *, heartbeat_interval=None, grace_period=None,
                     failed_trial_callback=None):
            pass

    class NoHeartbeat:
        def __init__(self, url):
            pass

    assert list(tuning.stale_trial_retry_kwargs(storage_cls=OldStorage)) == ["failed_trial_callback"]
    assert tuning.stale_trial_retry_kwargs(storage_cls=NoHeartbeat) == {}
    storage = tuning.make_storage("sqlite:///:memory:", heartbeat_interval=5, grace_period=10)
    assert storage.get_heartbeat_interval() == 5
    assert tuning.redact("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"
    with pytest.raises(tuning.TuneError, match="--storage"):
        tuning.make_storage("nosuchdialect://x")


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_storage(request, tmp_path) -> str:
    """An Optuna RDB URL that several processes share: a SQLite file, or a real PostgreSQL 16
    server started from the ``pgserver`` wheel (``postgres_url`` in tests/conftest.py)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'optuna.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.mark.slow
def test_two_worker_processes_share_one_study(tmp_path, shared_storage):
    """Two `tune` processes on one study (SQLite, and PostgreSQL through psycopg2): both contribute,
    the total is capped at --trials plus at most one trial a worker had started, no duplicate points."""
    code = ("import sys, pipeline_fakes; pipeline_fakes.install_fakes();"
            "from mingle_bench.cli import main; sys.exit(main(%r))")
    env = {**os.environ, "FAKE_FIT_SLEEP": "0.05",
           "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)}
    procs = []
    for w in (0, 1):
        argv = ["tune", "--task", "mortality", "--model", "retain", "--data", "synthetic:small", "--trials", "6",
                "--max-steps", "3", "--eval-every", "1", "--patience", "2", "--out", str(tmp_path), "--study-name", "shared",
                "--worker-id", str(w), "--quiet", "--storage", shared_storage]
        procs.append(subprocess.Popen([sys.executable, "-c", code % argv], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    study = optuna.load_study(study_name="shared", storage=shared_storage)
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert 6 <= len(done) <= 7  # capped at 6; a worker mid-trial at the cap may finish one more
    workers = {t.user_attrs.get("worker_id") for t in done}
    assert workers == {0, 1}, "both workers must have run trials"
    scales = [t.params["scale"] for t in study.trials]
    assert len(set(scales)) == len(scales), "workers proposed duplicate points"
    assert "saved to" in outs[0] + outs[1]


def test_tune_reports_and_fails_stale_running_trials(fakes, tmp_path, caplog):
    """A worker killed mid-trial leaves it RUNNING: the next `tune` reports it, fails it past the grace
    period (re-queueing it) and says so; a trial still beating is left alone."""
    import logging
    import sqlite3

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    store = tuning.make_storage(url, heartbeat_interval=60, grace_period=120)
    study = optuna.create_study(study_name="mortality-retain-synthetic-small", storage=store, direction="maximize")
    with pytest.warns(UserWarning, match="Heartbeat"):  # Optuna: heartbeats are meant for optimize()
        dead, live, silent = study.ask(), study.ask(), study.ask()
    store.record_heartbeat(dead._trial_id)
    store.record_heartbeat(live._trial_id)
    del store, study
    con = sqlite3.connect(tmp_path / "optuna.db")  # the dead worker's last beat: an hour ago
    con.execute("UPDATE trial_heartbeats SET heartbeat = datetime('now', '-3600 seconds') WHERE trial_id = ?",
                (dead._trial_id,))
    con.commit()
    con.close()

    with caplog.at_level(logging.WARNING, logger="mingle_bench.tuning"):
        res = _tune(tmp_path, trials=3)
    st = res.stale
    assert [r["number"] for r in st["running"]] == [0, 1, 2]
    assert st["running"][0]["heartbeat_age_s"] == pytest.approx(3600, abs=120)
    assert st["running"][1]["heartbeat_age_s"] < 120 and st["running"][2]["heartbeat_age_s"] is None
    assert st["failed"] == [0] and st["live"] == [1] and st["no_heartbeat"] == [2] and len(st["requeued"]) == 1
    assert "3 trial(s) left RUNNING" in caplog.text and "#0 (last heartbeat" in caplog.text
    assert "failed 1 stale trial(s)" in caplog.text and "#0" in caplog.text and "re-queued as" in caplog.text
    study = optuna.load_study(study_name=res.study_name, storage=url)
    states = {t.number: t.state.name for t in study.trials}
    assert states[0] == "FAIL" and states[1] == "RUNNING" and states[2] == "RUNNING"
    assert res.counts["fail"] == 1
    # the re-queued copy ran as a normal trial
    assert states[st["requeued"][0]] in ("COMPLETE", "PRUNED")

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mingle_bench.tuning"):
        res2 = _tune(tmp_path, trials=3)  # nothing new to clean: the two survivors are reported again
    assert res2.stale["failed"] == [] and [r["number"] for r in res2.stale["running"]] == [1, 2]


def test_tune_without_stale_trials_reports_nothing(fakes, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="mingle_bench.tuning"):
        res = _tune(tmp_path, trials=2)
    assert res.stale["running"] == [] and "RUNNING" not in caplog.text


def test_tune_with_the_meds_split(fakes, tmp_path, monkeypatch):
    """tune --split meds: the features are built on the MEDS split, and the study's name and
    attributes say so (a random-split study of the same data is another study)."""
    seen = []
    build = pipeline.build_features
    monkeypatch.setattr(pipeline, "build_features", lambda *a, **k: seen.append(k.get("split")) or build(*a, **k))
    res = _tune(tmp_path, trials=1, data="meds:x", split="meds")
    assert "meds" in seen and res.study_name == "mortality-retain-meds-x-meds-split"
    study = optuna.load_study(study_name=res.study_name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert study.user_attrs["split"] == "meds" and study.user_attrs["data_id"] == "meds-x-meds-split"
    assert _tune(tmp_path, trials=1, data="meds:x").study_name == "mortality-retain-meds-x"


def test_every_gradient_trained_model_also_tunes_eval_every_and_run_trains_with_it(fakes, tmp_path, monkeypatch):
    """The study searches eval_every (5, 10, 20 and the run's) beside the model's hyperparameters; the
    saved file keeps it apart from best_params, and run --tuned trains that model's cells with it
    (their own input hash); a solver-fitted model searches no eval_every."""
    from mingle_bench import results as R
    from mingle_bench import tuning

    budgets = []
    real_fit = fake_fit

    def fit(model_name, data, hp, seed, device, budget, *a, **k):
        budgets.append(budget.eval_every)
        res = real_fit(model_name, data, hp, seed, device, budget, *a, **k)
        res.val_metrics = {"aupr": 1.0 if budget.eval_every == 20 else 0.5, "auroc": 0.5}
        return res

    monkeypatch.setattr(pipeline, "fit", fit)
    kw = dict(task="mortality", data="synthetic:small", out=str(tmp_path), max_steps=40, eval_every=10, patience=2,
              progress=False)
    res = tuning.tune(model="retain", trials=8, seed=1, **kw)
    assert set(budgets) <= {5, 10, 20} and 20 in budgets
    saved = json.loads(res.path.read_text())
    assert saved["eval_every"] == 20 == res.eval_every and "eval_every" not in saved["best_params"]
    assert "and eval_every 20" in tuning.summary_line(res)
    assert tuning.eval_every_choices("logreg", pipeline.make_budget(40, 10, 2)) == ()
    assert tuning.eval_every_choices("retain", pipeline.make_budget(8, 10 // 2, 2)) == (5,)
    cfg = dict(task="mortality", data="synthetic:small", models=["retain"], seeds=[0], max_steps=40, eval_every=10,
               patience=2, n_boot=0, progress=False, reference=None)
    runner.run_benchmark(runner.RunConfig(**cfg, out=str(tmp_path / "plain")))
    budgets.clear()
    runner.run_benchmark(runner.RunConfig(**cfg, out=str(tmp_path), tuned=[str(res.path)]))
    assert budgets == [20]
    rec = R.load_runs(tmp_path / "mortality" / "synthetic-small")[0]
    plain = R.load_runs(tmp_path / "plain" / "mortality" / "synthetic-small")[0]
    assert rec["config"]["eval_every"] == 20 and plain["config"]["eval_every"] == 10
    assert rec["input_hash"] != plain["input_hash"]
    cfgjson = json.loads((tmp_path / "mortality" / "synthetic-small" / "config.json").read_text())
    assert cfgjson["tuned_eval_every"] == {"retain": 20} and cfgjson["eval_every"] == 10
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**saved, "eval_every": 0}))
    with pytest.raises(runner.RunError, match="'eval_every' must be an integer from 1 to --max-steps"):
        runner.run_benchmark(runner.RunConfig(**cfg, out=str(tmp_path / "b"), tuned=[str(bad)]))
