"""MEDS-evaluation prediction files, `evaluate`, checkpoints and `predict` (issue 21 items 4 and 5).

One toy run (the real trainer and models on the toy TaskData, tests/pipeline_fakes.py) with
``save_checkpoints`` serves the module: its files are read, evaluated, predicted again."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mingle_bench import checkpoints as CK
from mingle_bench import predictions as PR
from mingle_bench import results as R
from mingle_bench import runner
from mingle_bench.cli import main as cli_main
from mingle_bench.metrics import compute_metrics
from pipeline_fakes import MINGLE_TINY, RETAIN_TINY, install_toy_pipeline

#: every checkpointable kind: message-passing, minibatch, and each solver-fitted reference
MODELS = ["mingle", "retain", "logreg", "prior", "tfidf-lr", "codes-notes-lr", "gbm"]
GBM_TINY = {"n_estimators": 20, "early_stopping_rounds": 5, "min_data_in_leaf": 5}


def _cfg(out, **kw) -> runner.RunConfig:
    base = dict(task="mortality", data="synthetic:small", models=MODELS, seeds=[0], out=str(out), max_steps=4,
                eval_every=1, patience=2, n_boot=20, progress=False, command="mingle-bench run (test)", reference=None,
                hparam_overrides={"retain": RETAIN_TINY, "mingle": MINGLE_TINY, "gbm": GBM_TINY})
    base.update(kw)
    return runner.RunConfig(**base)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A toy run of :data:`MODELS` with checkpoints; yields ``(folder, records by model)`` with the
    toy pipeline still installed (``predict`` rebuilds the same toy TaskData)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        install_toy_pipeline(mp.setattr)
        s = runner.run_benchmark(_cfg(tmp_path_factory.mktemp("toy"), save_checkpoints=True))
        assert not s.failed, s.failed
        yield s.folder, {r["model"]: r for r in R.load_runs(s.folder)}
    torch.set_num_threads(before)


def _write(table: pa.Table, path: Path) -> Path:
    pq.write_table(table, path)
    return path


# ---------------------------------------------------------------------------------------------
# the files a run writes


def test_every_cell_writes_meds_predictions_in_test_order(toy_run):
    folder, recs = toy_run
    samples = pq.read_table(folder / PR.TEST_SAMPLES_FILE).to_pandas()
    labels = R.load_array(R.labels_path(folder))
    assert list(samples.columns) == ["sample_id", "patient_id", "hadm_id", "prediction_time"]
    assert len(samples) == len(labels["test_idx"]) and samples["sample_id"].tolist() == [
        f"toy-{i}" for i in labels["test_idx"]]
    for m in MODELS:
        t = pq.read_table(PR.meds_preds_path(folder, m, 0))
        assert t.schema.names == list(PR.MEDS_COLUMNS) + ["hadm_id", "sample_id", "split"]
        assert {n: str(t.schema.field(n).type) for n in PR.MEDS_COLUMNS} == PR.MEDS_COLUMNS
        probs = R.load_array(R.preds_path(folder, m, 0))["probs"][:, 0]
        got = t.column("predicted_boolean_probability").to_numpy()
        assert got.dtype == np.float32 and np.array_equal(got, probs)  # bit-exact
        assert np.array_equal(t.column("predicted_boolean_value").to_numpy(zero_copy_only=False), probs >= 0.5)
        assert np.array_equal(t.column("boolean_value").to_numpy(zero_copy_only=False), labels["y_true"][:, 0] == 1)
        assert t.column("subject_id").to_pylist() == samples["patient_id"].tolist()
        assert set(t.column("split").to_pylist()) == {"test"}


def test_files_validate_against_the_meds_evaluation_schema(toy_run):
    """The five MEDS columns pass meds-evaluation's PredictionSchema (its package when installed;
    our written-down spec otherwise). The package (meds LabelSchema 0.4) allows no extra column,
    so a strict reader selects the five (docs/extending.md)."""
    folder, _ = toy_run
    t = pq.read_table(PR.meds_preds_path(folder, "mingle", 0))
    PR.check_schema(t, "ours")
    meds_cols = pq.read_table(PR.meds_preds_path(folder, "mingle", 0), columns=list(PR.MEDS_COLUMNS))
    try:
        from meds_evaluation.schema import PredictionSchema
    except ImportError:
        pytest.skip("meds-evaluation is not installed (pip install -e '.[test]'); checked against our spec above")
    aligned = PredictionSchema.align(meds_cols)
    assert aligned.equals(meds_cols)
    assert str(PredictionSchema.predicted_boolean_probability_dtype) == PR.MEDS_COLUMNS["predicted_boolean_probability"]


# ---------------------------------------------------------------------------------------------
# evaluate


def test_evaluate_reproduces_runs_jsonl_exactly(toy_run, capsys):
    folder, recs = toy_run
    for m in MODELS:
        res = PR.evaluate_files([PR.meds_preds_path(folder, m, 0)], n_boot=0)
        got, want = res["files"][0]["metrics"], recs[m]["metrics"]
        assert got.keys() == want.keys()
        for k in want:  # equal to the last bit (NaN where undefined)
            assert got[k] == want[k] or (math.isnan(got[k]) and math.isnan(want[k])), (m, k)
    assert cli_main(["evaluate", "--preds", str(PR.meds_preds_path(folder, "retain", 0)), "--json",
                     "--bootstrap", "30"]) == 0
    out = json.loads(capsys.readouterr().out)
    f = out["files"][0]
    assert f["metrics"]["auroc"] == recs["retain"]["metrics"]["auroc"] and f["n_samples"] == 12
    lo, hi = f["ci"]["brier"]
    assert lo <= f["metrics"]["brier"] <= hi


def test_an_outside_models_file_compares_with_ours(toy_run, tmp_path, capsys):
    """Perturb our probabilities, keep only the MEDS columns, shuffle the rows: matched by
    (subject_id, prediction_time), scored and compared with the run's file."""
    folder, recs = toy_run
    ours = PR.meds_preds_path(folder, "mingle", 0)
    t = pq.read_table(ours, columns=list(PR.MEDS_COLUMNS))
    p = t.column("predicted_boolean_probability").to_numpy()
    rng = np.random.default_rng(0)
    theirs = np.clip(p + rng.normal(0, 0.2, p.shape), 0, 1).astype(np.float32)
    order = rng.permutation(len(p))
    outside = t.set_column(4, "predicted_boolean_probability", pa.array(theirs, pa.float32()))
    outside = outside.set_column(3, "predicted_boolean_value", pa.array(theirs >= 0.5)).take(order)
    path = _write(outside, tmp_path / "outside.parquet")
    res = PR.evaluate_files([ours, path], n_boot=50)
    assert res["matched_by"] == "subject_id+prediction_time"
    y = t.column("boolean_value").to_numpy(zero_copy_only=False).astype(np.float32)
    assert res["files"][1]["metrics"] == compute_metrics(y[:, None], theirs[:, None])
    comp = res["comparisons"][0]
    assert comp["a"] == str(path) and comp["b"] == str(ours)
    d = comp["comparison"]["metrics"]["auroc"]
    assert d["diff"] == pytest.approx(res["files"][1]["metrics"]["auroc"] - recs["mingle"]["metrics"]["auroc"])
    assert d["n_valid"] > 0 and d["ci_low"] <= d["diff"] <= d["ci_high"]
    assert cli_main(["evaluate", "--preds", str(ours), "--preds", str(path), "--bootstrap", "20"]) == 0
    text = capsys.readouterr().out
    assert "paired, same samples, clusters = subject_id" in text and "AUROC" in text


def test_multilabel_long_form_round_trips_and_reproduces_the_run(fakes, tmp_path):
    """A 3-label task (the fakes' phenotype): one row per sample and label, sample-major, the
    label's name in ``label``; evaluate gives the run's metrics on the flattened matrix."""
    s = runner.run_benchmark(_cfg(tmp_path, task="phenotype", models=["mingle", "retain"], seeds=[0]))
    rec = {r["model"]: r for r in R.load_runs(s.folder)}
    path = PR.meds_preds_path(s.folder, "mingle", 0)
    t = pq.read_table(path)
    n = len(R.load_array(R.labels_path(s.folder))["test_idx"])
    assert t.num_rows == 3 * n and t.column("label").to_pylist()[:4] == ["y0", "y1", "y2", "y0"]
    back = PR.read_predictions(path)
    assert np.array_equal(back.probs, R.load_array(R.preds_path(s.folder, "mingle", 0))["probs"])
    assert back.label_names == ["y0", "y1", "y2"]
    res = PR.evaluate_files([path, PR.meds_preds_path(s.folder, "retain", 0)], n_boot=10)
    assert res["files"][0]["metrics"] == rec["mingle"]["metrics"]
    assert "auroc_macro" in res["comparisons"][0]["comparison"]["metrics"]


def _table(**cols) -> pa.Table:
    base = {"subject_id": pa.array([1, 2, 3], pa.int64()),
            "prediction_time": pa.array(np.array(["2100-01-01"] * 3, dtype="datetime64[us]")),
            "boolean_value": pa.array([True, False, True]),
            "predicted_boolean_probability": pa.array([0.9, 0.2, 0.4], pa.float32())}
    base.update(cols)
    return pa.table({k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize("cols,needle", [
    ({"predicted_boolean_probability": None}, "no column 'predicted_boolean_probability'"),
    ({"boolean_value": pa.array([True, None, False])}, "row 1: boolean_value is null"),
    ({"predicted_boolean_probability": pa.array([0.1, 1.5, 0.3], pa.float32())}, "row 1: predicted_boolean_probability 1.5"),
    ({"subject_id": pa.array([1, 1, 2], pa.int64())}, "row 1: sample subject_id 1"),
    ({"subject_id": pa.array(["a", "b", "c"])}, "column 'subject_id' is string"),
])
def test_bad_files_are_one_line_naming_file_and_column_or_row(tmp_path, capsys, cols, needle):
    path = _write(_table(**cols), tmp_path / "bad.parquet")
    with pytest.raises(PR.PredictionsError, match="bad.parquet"):
        PR.read_predictions(path)
    assert cli_main(["evaluate", "--preds", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mingle-bench evaluate: error: --preds ") and needle in err and "\n" not in err


def test_a_missing_or_foreign_file_and_other_samples_are_refused(tmp_path, capsys):
    (tmp_path / "x.parquet").write_text("not parquet")
    for path, needle in ((tmp_path / "none.parquet", "no such file"), (tmp_path / "x.parquet", "not a parquet file")):
        assert cli_main(["evaluate", "--preds", str(path)]) == 1
        assert needle in capsys.readouterr().err
    a = _write(_table(), tmp_path / "a.parquet")
    b = _write(_table(subject_id=pa.array([1, 2, 4], pa.int64())), tmp_path / "b.parquet")
    c = _write(_table(boolean_value=pa.array([True, True, True])), tmp_path / "c.parquet")
    with pytest.raises(PR.PredictionsError, match="b.parquet: lacks 1 of .*a.parquet's samples"):
        PR.evaluate_files([a, b], n_boot=0)
    with pytest.raises(PR.PredictionsError, match="c.parquet: .*not the same labels"):
        PR.evaluate_files([a, c], n_boot=0)


# ---------------------------------------------------------------------------------------------
# checkpoints and predict


def test_checkpoints_hold_weights_and_config_and_no_pickle(toy_run):
    folder, recs = toy_run
    for m in MODELS:
        d = CK.cell_dir(folder, m, 0)
        cfg = json.loads((d / CK.CONFIG_FILE).read_text())
        assert cfg["model"] == m and cfg["seed"] == 0 and cfg["input_hash"] == recs[m]["input_hash"]
        assert cfg["run"]["task"] == "mortality" and cfg["label_names"] == ["label0"] and cfg["checkpointable"]
        assert cfg["preds_sha256"] == recs[m]["preds_sha256"]
        assert sorted(p.name for p in d.iterdir()) == sorted(
            [CK.CONFIG_FILE, CK.WEIGHTS_FILE] + ([CK.FITTED_FILE] if m in CK.FITTED_MODELS else []))
        for f in d.iterdir():
            assert not f.read_bytes().startswith(b"\x80")  # no pickle protocol header anywhere
    fitted = json.loads((CK.cell_dir(folder, "gbm", 0) / CK.FITTED_FILE).read_text())
    assert any(b is not None and b["model"].startswith("tree") for b in fitted["boosters"])


def test_predict_is_bit_identical_to_the_runs_test_predictions(toy_run, tmp_path, capsys):
    folder, _ = toy_run
    for m in MODELS:
        out = tmp_path / f"{m}.parquet"
        assert cli_main(["predict", "--checkpoint", str(CK.cell_dir(folder, m, 0)), "--out", str(out), "--quiet"]) == 0
        assert "identical to the run's test predictions" in capsys.readouterr().out, m
        assert pq.read_table(out).equals(pq.read_table(PR.meds_preds_path(folder, m, 0))), m
    out = tmp_path / "all.parquet"
    assert cli_main(["predict", "--checkpoint", str(CK.cell_dir(folder, "retain", 0)), "--out", str(out),
                     "--split", "all", "--quiet"]) == 0
    t = pq.read_table(out).to_pandas()
    assert len(t) == 60 and sorted(set(t["split"])) == ["test", "train", "val"]
    test_rows = pq.read_table(PR.meds_preds_path(folder, "retain", 0)).to_pandas().set_index("sample_id")
    mine = t[t["split"] == "test"].set_index("sample_id").loc[test_rows.index]
    # a minibatch model scores every sample alone: the same bits on any split
    assert np.array_equal(mine["predicted_boolean_probability"], test_rows["predicted_boolean_probability"])


def test_predict_refuses_what_it_cannot_use(toy_run, tmp_path, capsys):
    folder, _ = toy_run
    ck = CK.cell_dir(folder, "retain", 0)
    assert cli_main(["predict", "--checkpoint", str(ck), "--task", "los", "--out", str(tmp_path / "p.parquet")]) == 1
    assert "trained on task 'mortality'" in capsys.readouterr().err
    assert cli_main(["predict", "--checkpoint", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p.parquet")]) == 1
    assert "no such folder" in capsys.readouterr().err
    torn = tmp_path / "torn"
    torn.mkdir()
    for f in (CK.CONFIG_FILE, CK.WEIGHTS_FILE):
        (torn / f).write_bytes((ck / f).read_bytes())
    (torn / CK.WEIGHTS_FILE).write_bytes((ck / CK.WEIGHTS_FILE).read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CK.CheckpointError, match="does not match the sha256"):
        CK.load_checkpoint(torn)
    with pytest.raises(CK.CheckpointError, match="--executor local only"):
        CK.request_state(type("Ray", (), {"name": "ray"})())


def test_resume_backfills_prediction_files_and_trains_cells_without_checkpoints(fakes, tmp_path, monkeypatch):
    """A folder from before these files: a resumed run writes the missing MEDS files from preds/
    without training; with --save-checkpoints the cells lacking a checkpoint are trained again."""
    cfg = _cfg(tmp_path, models=["mingle", "retain"], seeds=[0])
    s = runner.run_benchmark(cfg)
    before = {p.name: p.read_bytes() for p in (s.folder / PR.MEDS_PREDS_DIR).iterdir()}
    for p in (s.folder / PR.MEDS_PREDS_DIR).iterdir():
        p.unlink()
    s = runner.run_benchmark(cfg)
    assert not s.trained and len(s.skipped) == 2
    assert {p.name: p.read_bytes() for p in (s.folder / PR.MEDS_PREDS_DIR).iterdir()} == before
    # the fakes' fit has no model: export_state is swapped for a stand-in state
    monkeypatch.setattr("mingle_bench.checkpoints.export_state", lambda model, data=None: ({"w": np.ones(2)}, None))
    monkeypatch.setattr("mingle_bench.pipeline.fit", _fit_with_model)
    s = runner.run_benchmark(_cfg(tmp_path, models=["mingle", "retain"], seeds=[0], save_checkpoints=True))
    assert len(s.trained) == 2 and all(CK.has_checkpoint(s.folder, m, sd) for m, sd in s.trained)
    s = runner.run_benchmark(_cfg(tmp_path, models=["mingle", "retain"], seeds=[0], save_checkpoints=True))
    assert not s.trained and len(s.skipped) == 2


def _fit_with_model(*args, **kw):
    from pipeline_fakes import fake_fit

    res = fake_fit(*args, **kw)
    res.model = None
    return res


def test_fresh_discards_prediction_files_and_checkpoints(fakes, tmp_path, monkeypatch):
    monkeypatch.setattr("mingle_bench.checkpoints.export_state", lambda model, data=None: ({"w": np.ones(2)}, None))
    monkeypatch.setattr("mingle_bench.pipeline.fit", _fit_with_model)
    s = runner.run_benchmark(_cfg(tmp_path, models=["mingle", "retain"], seeds=[0], save_checkpoints=True))
    assert CK.has_checkpoint(s.folder, "retain", 0)
    s = runner.run_benchmark(_cfg(tmp_path, models=["mingle"], seeds=[0], fresh=True))
    assert not (s.folder / CK.CHECKPOINTS_DIR).exists()
    assert sorted(p.name for p in (s.folder / PR.MEDS_PREDS_DIR).iterdir()) == ["mingle-0.parquet"]
