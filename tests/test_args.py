"""Arguments checked up front, each with one line naming the flag or file (issue 23 item 3, issue 22).

Seeds (range, aliasing, count), ``--tuned`` files (shape, task, data, model), hyperparameters
(names, types and ranges of each model's declared space, before any data is prepared), lost
Optuna studies (``tune --fresh``), ``tune --model`` and ``--version``. In-process through
``mingle_bench.cli.main``; training is the fake pipeline (tests/pipeline_fakes.py) or the real
registry on the toy data where the real hyperparameter rules matter.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mingle_bench import pipeline as P
from mingle_bench import runner, tuning
from mingle_bench.cli import main
from mingle_bench.zoo import get_model, list_models
from test_cli_errors import check

RUN = ["run", "--task", "mortality", "--data", "synthetic:small", "--models", "retain", "--seeds", "1",
       "--max-steps", "2", "--eval-every", "1", "--patience", "1", "--quiet", "--bootstrap", "0", "--reference", "none"]
TUNE = ["tune", "--task", "mortality", "--data", "synthetic:small", "--model", "retain", "--max-steps", "2",
        "--eval-every", "1", "--patience", "1", "--quiet"]


def _no_data(monkeypatch) -> None:
    """Preparing data is a failure of the test: every check must come before it."""
    def prepare(*a, **k):
        raise AssertionError("data was prepared before the arguments were checked")

    monkeypatch.setattr(P, "prepare", prepare)


def _tuned_file(path: Path, **fields) -> Path:
    payload = {"study_name": "s", "model": "retain", "task": "mortality", "data": "synthetic:small",
               "data_id": "synthetic-small", "best_params": {"lr": 0.002}, **fields}
    path.write_text(json.dumps(payload))
    return path


# -- seeds --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,words", [
    ("1000000000000", "at most 1000 seeds"),          # a count that would allocate a trillion ints
    ("1001", "at most 1000 seeds"),
    ("0,4294967296", "seed 4294967296 is out of range"),  # 2**32 trains exactly like seed 0
    ("0,18446744073709551616", "out of range"),
    ("-1", ">= 1"),
    ("0,-3", "out of range"),
    ("0,1,1", "1 more than once"),
    (",", "is empty"),
])
def test_bad_seeds_are_one_line(fakes, tmp_path, capsys, monkeypatch, value, words):
    _no_data(monkeypatch)
    line = check(capsys, RUN + ["--seeds", value, "--out", tmp_path], "--seeds")
    assert words in line
    if "out of range" in words:
        assert "0..4294967295" in line and "2**32" in line  # the range and why


def test_seed_range_edges():
    assert runner.parse_seeds("0,4294967295") == [0, 4294967295]
    assert runner.parse_seeds(1000) == list(range(1000))
    assert runner.parse_seeds([3, 1]) == [3, 1]
    with pytest.raises(runner.RunError, match="--seeds must be integers"):
        runner.parse_seeds([1.5])


def test_reproduce_checks_its_seeds_before_any_data(fakes, tmp_path, capsys, monkeypatch):
    _no_data(monkeypatch)
    check(capsys, ["reproduce", "--seeds", "0,4294967296", "--out", tmp_path], "--seeds")


@pytest.mark.parametrize("extra,culprit", [
    (["--seed", "4294967296"], "--seed"),
    (["--seed", "4294967295", "--worker-id", "1"], "--worker-id"),  # the sampler's seed is seed + worker id
    (["--model", "nope"], "--model nope"),                        # the flag the user typed, not --models
])
def test_tune_arguments_name_the_flag(fakes, tmp_path, capsys, monkeypatch, extra, culprit):
    _no_data(monkeypatch)
    argv = TUNE + ["--out", tmp_path]
    if extra[0] == "--model":
        argv = [a for a in argv if a != "retain" and a != "--model"]
    line = check(capsys, argv + extra, culprit)
    assert "--models" not in line


def test_version(capsys):
    from mingle_bench import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"mingle-bench {__version__}"


# -- --tuned files ------------------------------------------------------------------------------------
def test_tuned_file_not_utf8_names_itself(fakes, tmp_path, capsys, monkeypatch):
    _no_data(monkeypatch)
    f = tmp_path / "study.json"
    f.write_bytes(b'{"model": "retain", "best_params": {"lr": 0.1}, "note": "caf\xe9"}')
    line = check(capsys, RUN + ["--out", tmp_path / "runs", "--tuned", f], str(f))
    assert "UTF-8" in line


def test_tuned_best_params_must_be_an_object(fakes, tmp_path, capsys, monkeypatch):
    _no_data(monkeypatch)
    f = _tuned_file(tmp_path / "study.json", best_params=[0.1, 64])
    line = check(capsys, RUN + ["--out", tmp_path / "runs", "--tuned", f], str(f))
    assert "'best_params' must be an object" in line and "list" in line


@pytest.mark.parametrize("fields,run_args,sides", [
    ({"task": "mortality"}, ["--task", "los"], ("tuned on 'mortality'", "this run 'los'")),
    ({"data": "synthetic:default", "data_id": "synthetic-default"}, [],
     ("tuned on 'synthetic-default'", "this run 'synthetic-small'")),
])
def test_tuned_on_another_task_or_data_is_refused(fakes, tmp_path, capsys, monkeypatch, fields, run_args, sides):
    _no_data(monkeypatch)
    f = _tuned_file(tmp_path / "study.json", **fields)
    line = check(capsys, RUN + run_args + ["--out", tmp_path / "runs", "--tuned", f], "--tuned")
    assert all(s in line for s in sides) and "--tuned-anyway" in line


def test_tuned_anyway_uses_it_with_a_warning(fakes, tmp_path, capsys):
    f = _tuned_file(tmp_path / "study.json", task="mortality")
    assert main(RUN + ["--task", "los", "--out", str(tmp_path / "runs"), "--tuned", str(f), "--tuned-anyway"]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "warning" in line and "--tuned" in line]
    assert len(warning) == 1 and "tuned on 'mortality', this run 'los'" in warning[0]
    cfg = json.loads((tmp_path / "runs" / "los" / "synthetic-small" / "config.json").read_text())
    assert cfg["hparams"]["retain"]["lr"] == 0.002


def test_tuned_for_a_model_not_in_the_run_is_refused(fakes, tmp_path, capsys, monkeypatch):
    _no_data(monkeypatch)
    f = _tuned_file(tmp_path / "study.json", model="gram")
    check(capsys, RUN + ["--out", tmp_path / "runs", "--tuned", f], "'gram', which is not in --models")


# -- hyperparameters: the real registry, checked before any data -----------------------------------------
BAD_HPARAMS = [
    ({"lr": "0.01"}, "lr='0.01' must be a number"),
    ({"lr": -1e-3}, "lr=-0.001 must be > 0"),
    ({"lr": 0}, "lr=0 must be > 0"),
    ({"emb_dim": -64}, "emb_dim=-64 must be a positive integer"),
    ({"emb_dim": 64.5}, "emb_dim=64.5 must be an integer"),
    ({"dropout_emb": 1.5}, "dropout_emb=1.5 must be in [0, 1)"),
    ({"weight_decay": -1}, "weight_decay=-1 must be >= 0"),
    ({"use_time": "yes"}, "use_time='yes' must be true or false"),
    ({"hidden": 64}, "unknown hyperparameter(s) ['hidden']"),
]


@pytest.mark.parametrize("params,words", BAD_HPARAMS, ids=[w for _, w in BAD_HPARAMS])
def test_bad_tuned_hyperparameters_fail_before_any_data(toy_pipeline, tmp_path, capsys, monkeypatch, params, words):
    _no_data(monkeypatch)
    f = _tuned_file(tmp_path / "study.json", best_params=params)
    line = check(capsys, RUN + ["--out", tmp_path / "runs", "--tuned", f], str(f))
    assert "model 'retain'" in line and words in line


def test_every_registered_model_accepts_its_own_defaults_and_search_space():
    import optuna

    for name in list_models():
        cls = get_model(name)
        assert cls.check_hparams(cls.default_hparams) == cls.default_hparams, name
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(5):  # whatever the search proposes is valid
            cls.check_hparams(cls.search_space(study.ask()), where="search")


@pytest.mark.parametrize("name,params,words", [
    ("mingle", {"heads": 5}, "hidden=48 must be divisible by heads=5"),
    ("mingle", {"layers": 0}, "layers=0 must be a positive integer"),
    ("mingle", {"dropout": 1.0}, "must be in [0, 1)"),
    ("mingle", {"lr": float("inf")}, "must be finite"),
    ("mingle-no-notes", {"use_notes": True}, "fixes use_notes=False"),
    ("transformer", {"heads": 3}, "emb_dim=128 must be divisible by heads=3"),
    ("logreg", {"C": 0}, "C=0 must be > 0"),
    ("hypergat", {"negative_slope": -0.2}, "must be >= 0"),
    ("gram", {"batch_size": -1}, "batch_size=-1 must be >= 0"),
])
def test_check_hparams_rules(name, params, words):
    with pytest.raises(ValueError, match="^--tuned f.json: ") as e:
        get_model(name).check_hparams(params, where="--tuned f.json")
    assert words in str(e.value)


def test_solver_models_and_full_batch_pass():
    assert get_model("logreg").check_hparams({"lr": 0.0})["lr"] == 0.0  # unused by the solver
    assert get_model("retain").check_hparams({"batch_size": 0, "lr": 1})["batch_size"] == 0


# -- lost studies -------------------------------------------------------------------------------------
STUDY = "mortality-retain-synthetic-small"


def _saved_best(out: Path) -> Path:
    """``<out>/tuning/<study>.json`` as ``tune`` writes it: the best parameters of an earlier study."""
    path = out / "tuning" / f"{STUDY}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"study_name": STUDY, "storage": f"sqlite:///{out / 'optuna.db'}", "model": "retain",
                                "best_params": {"lr": 0.004}, "counts": {"complete": 7}}))
    return path


def test_an_emptied_study_database_is_refused_unless_fresh(fakes, tmp_path, capsys, monkeypatch):
    saved = _saved_best(tmp_path)
    before = saved.read_text()
    (tmp_path / "optuna.db").write_bytes(b"")  # truncated to 0 bytes
    with monkeypatch.context() as m:
        _no_data(m)
        line = check(capsys, TUNE + ["--out", tmp_path], "is lost")
    assert f"{tmp_path / 'optuna.db'} is empty (0 bytes)" in line and str(saved) in line and "--fresh" in line
    assert saved.read_text() == before and (tmp_path / "optuna.db").stat().st_size == 0
    tuning.check_lost_study(f"sqlite:///{tmp_path / 'optuna.db'}", STUDY, tmp_path, fresh=True)
    err = capsys.readouterr().err
    (kept,) = saved.parent.glob(f"{STUDY}.lost-*.json")
    assert not saved.exists() and kept.read_text() == before
    assert len(err.splitlines()) == 1 and "warning" in err and str(kept) in err


def test_a_study_missing_from_its_storage_is_refused(fakes, tmp_path, capsys, monkeypatch):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # as tune does: no "new study created" lines
    _saved_best(tmp_path)
    _no_data(monkeypatch)
    line = check(capsys, TUNE + ["--out", tmp_path], "is lost")  # the database is gone
    assert f"{tmp_path / 'optuna.db'} does not exist" in line
    other = f"sqlite:///{tmp_path / 'other.db'}"
    optuna.create_study(study_name="elsewhere", storage=other)  # a database holding another study
    line = check(capsys, TUNE + ["--out", tmp_path, "--storage", other], "is lost")
    assert f"holds no study {STUDY!r} (it holds elsewhere)" in line
    optuna.create_study(study_name=STUDY, storage=other)  # the study is there: it resumes
    tuning.check_lost_study(other, STUDY, tmp_path)


@pytest.mark.slow
def test_tune_after_its_database_was_emptied(fakes, tmp_path, capsys):
    """End to end: tune, truncate optuna.db, the resume is refused, --fresh starts anew and keeps the old file."""
    argv = [str(a) for a in TUNE + ["--trials", "2", "--out", tmp_path]]
    assert main(argv) == 0
    saved = tmp_path / "tuning" / f"{STUDY}.json"
    before = saved.read_text()
    (tmp_path / "optuna.db").write_bytes(b"")
    capsys.readouterr()
    check(capsys, argv, "is lost")
    assert saved.read_text() == before
    assert main(argv + ["--fresh"]) == 0
    (kept,) = saved.parent.glob(f"{STUDY}.lost-*.json")
    assert kept.read_text() == before and json.loads(saved.read_text())["counts"]["complete"] >= 1
    assert main(argv + ["--trials", "3"]) == 0  # the new study is in the storage: it resumes
