"""The reference check (:mod:`mingle_bench.report.reference`): each cell of a run against the cell with
the same ``input_hash`` in a reference folder: identical / differs / no reference.

Most tests use the fake pipeline (tests/pipeline_fakes.py) (deterministic, seconds). Two use the real
trainer: on the toy TaskData, and on a small hand-built cohort through the real features stage
with a tiny deterministic text encoder.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mingle_bench import pipeline, runner
from mingle_bench import results as R
from mingle_bench.cli import main as cli_main
from mingle_bench.report.reference import (REFERENCE_FILE, check_reference, compare_cells, default_reference_root,
                                    reference_lines, resolve_reference)

from pipeline_fakes import MINGLE_TINY, RETAIN_TINY, fake_build

MODELS = ["mingle", "hypehr", "retain"]
FOLDER = Path("mortality") / "synthetic-small"


def _run(out: Path, reference, **kw) -> runner.RunSummary:
    base = dict(task="mortality", data="synthetic:small", models=MODELS, seeds=[0, 1], out=str(out), max_steps=3,
                eval_every=1, patience=2, n_boot=0, progress=False, command="mingle-bench run (test)",
                reference=None if reference is None else str(reference))
    base.update(kw)
    return runner.run_benchmark(runner.RunConfig(**base))


def _status(report: dict) -> dict:
    return {(c["model"], c["seed"]): c["status"] for c in report["cells"]}


def test_same_inputs_are_identical_to_the_reference(fakes, tmp_path):
    ref = tmp_path / "ref"
    _run(ref, None)
    s = _run(tmp_path / "b", ref)
    rep = s.reference
    assert rep["n"] == 6 == rep["identical"] and rep["differs"] == rep["no_reference"] == 0
    assert rep["reference"] == str(ref / FOLDER) and rep["reference_cells"] == 6
    assert json.loads((s.folder / REFERENCE_FILE).read_text()) == rep
    assert reference_lines(rep) == [f"reference check: 6/6 cells identical to the committed reference ({ref / FOLDER})"]
    # the check copies nothing: the run's own cells were trained, and they carry the same hashes
    assert len(s.trained) == 6
    mine = {(r["model"], r["seed"]): (r["input_hash"], r["preds_sha256"]) for r in R.load_runs(s.folder)}
    theirs = {(r["model"], r["seed"]): (r["input_hash"], r["preds_sha256"]) for r in R.load_runs(ref / FOLDER)}
    assert mine == theirs

    # a subset of the seeds in a new folder: those cells only, all identical
    s = _run(tmp_path / "c", ref, seeds=[1])
    assert (s.reference["identical"], s.reference["n"]) == (3, 3)
    assert set(_status(s.reference)) == {(m, 1) for m in MODELS}
    # a resumed invocation checks its own cells (here: the subset), trained or resumed
    s = _run(tmp_path / "b", ref, seeds=[1])
    assert not s.trained and len(s.skipped) == 3
    assert (s.reference["identical"], s.reference["n"]) == (3, 3)
    assert set(_status(s.reference)) == {(m, 1) for m in MODELS}


def test_tampered_reference_cells_differ(fakes, tmp_path):
    ref = tmp_path / "ref"
    _run(ref, None)
    _run(tmp_path / "b", None)
    recs = R.load_runs(ref / FOLDER)
    for r in recs:
        if (r["model"], r["seed"]) == ("retain", 0):
            r["metrics"]["aupr"] += 0.01
        if (r["model"], r["seed"]) == ("hypehr", 1):
            r["preds_sha256"] = "0" * 64
    R.write_runs(ref / FOLDER, recs)
    mine_before = (tmp_path / "b" / FOLDER / R.RUNS_FILE).read_text()

    s = _run(tmp_path / "b", ref)  # resumes every cell, then checks them
    assert not s.trained
    rep = s.reference
    assert (rep["identical"], rep["differs"], rep["no_reference"], rep["n"]) == (4, 2, 0, 6)
    st = _status(rep)
    assert st[("retain", 0)] == st[("hypehr", 1)] == "differs"
    cell = next(c for c in rep["cells"] if (c["model"], c["seed"]) == ("retain", 0))
    assert cell["metric_diff"] == {"aupr": pytest.approx(-0.01)}
    cell = next(c for c in rep["cells"] if (c["model"], c["seed"]) == ("hypehr", 1))
    assert cell["metric_diff"] == {}
    lines = reference_lines(rep)
    assert lines[0].startswith("reference check: 4/6 cells identical")
    assert "  differs: retain seed 0 (same inputs; aupr -1.0000)" in lines
    assert "  differs: hypehr seed 1 (same inputs; predictions differ)" in lines
    assert len(lines) == 3
    # the run's own records are never replaced by the reference's
    assert (tmp_path / "b" / FOLDER / R.RUNS_FILE).read_text() == mine_before


@pytest.mark.parametrize("change,n_missing", [
    ({"max_steps": 4}, 6),                                  # another budget
    ({"notes": "in-stay"}, 6),                              # another note policy
    ({"hparam_overrides": {"retain": {"scale": 2.0}}}, 2),  # other hyperparameters for one model
])
def test_other_inputs_have_no_reference(fakes, tmp_path, change, n_missing):
    ref = tmp_path / "ref"
    _run(ref, None)
    s = _run(tmp_path / "b", ref, **change)
    rep = s.reference
    assert rep["no_reference"] == n_missing and rep["identical"] == 6 - n_missing and rep["differs"] == 0
    lines = reference_lines(rep)
    assert lines[0].startswith(f"reference check: {6 - n_missing}/6 cells identical")
    missing = [line for line in lines if line.startswith("  no reference: ")]
    assert len(missing) == n_missing
    if n_missing == 2:
        assert {k for k, v in _status(rep).items() if v == "no reference"} == {("retain", 0), ("retain", 1)}


def test_other_data_under_the_same_id_has_no_reference(fakes, tmp_path, monkeypatch):
    """Same run configuration, other model inputs (TaskData.digest): nothing matches."""
    from dataclasses import replace

    ref = tmp_path / "ref"
    _run(ref, None)
    monkeypatch.setattr(pipeline, "build_features",
                        lambda *a, **k: replace(fake_build(*a, **k), digest={**fake_build(*a, **k).digest, "x": 1}))
    assert _run(tmp_path / "b", ref).reference["no_reference"] == 6


def test_empty_reference(fakes, tmp_path):
    (tmp_path / "empty").mkdir()
    rep = _run(tmp_path / "b", tmp_path / "empty").reference
    assert (rep["n"], rep["identical"], rep["no_reference"], rep["reference_cells"]) == (6, 0, 6, 0)
    lines = reference_lines(rep)
    assert lines[0].startswith("reference check: 0/6 cells identical")
    assert lines[1:] == ["  the reference holds no cells for this task and data (nothing committed to compare with)"]


def test_no_check_into_the_reference_itself_or_when_disabled(fakes, tmp_path):
    ref = tmp_path / "ref"
    s = _run(ref, ref)
    assert s.reference is None and not (s.folder / REFERENCE_FILE).exists()
    s = _run(ref, ref, seeds=[0, 1, 2])  # resumed + new cells: still no check against itself
    assert s.reference is None and not (s.folder / REFERENCE_FILE).exists()
    s = _run(tmp_path / "b", None)
    assert s.reference is None and not (s.folder / REFERENCE_FILE).exists()
    assert check_reference(s.folder, [r["input_hash"] for r in R.load_runs(s.folder)], None) is None
    assert reference_lines(None) == []


def test_auto_is_the_checkouts_results_folder():
    import mingle_bench

    root = Path(mingle_bench.__file__).resolve().parent.parent / "results"
    assert resolve_reference("auto") == default_reference_root() == (root if root.is_dir() else None)
    assert resolve_reference(None) is None
    assert resolve_reference("some/where") == Path("some/where")


def test_compare_cells_rules():
    run = [{"model": "retain", "seed": 0, "input_hash": "h0", "preds_sha256": "p0", "metrics": {"aupr": 0.5, "ece": None}},
           {"model": "retain", "seed": 1, "input_hash": "h1", "preds_sha256": "p1", "metrics": {"aupr": 0.5}},
           {"model": "gram", "seed": 0, "input_hash": "h2", "preds_sha256": "p2", "metrics": {"aupr": 0.5}}]
    ref = [{"model": "retain", "seed": 0, "input_hash": "h0", "preds_sha256": "p0", "metrics": {"aupr": 0.5, "ece": None}},
           {"model": "retain", "seed": 1, "input_hash": "h1", "preds_sha256": "p1", "metrics": {"aupr": 0.25}},
           {"model": "gram", "seed": 0, "preds_sha256": "p2", "metrics": {"aupr": 0.5}}]  # no hash: old format
    out = compare_cells(run, ref)
    assert [c["status"] for c in out] == ["identical", "differs", "no reference"]
    assert out[1]["metric_diff"] == {"aupr": 0.25}


def test_cli_prints_the_reference_check(fakes, tmp_path, capsys):
    ref = tmp_path / "ref"
    _run(ref, None)
    argv = ["run", "--task", "mortality", "--data", "synthetic:small", "--models", ",".join(MODELS), "--seeds", "2",
            "--max-steps", "3", "--eval-every", "1", "--patience", "2", "--bootstrap", "0", "--quiet",
            "--out", str(tmp_path / "b")]
    assert cli_main(argv + ["--reference", str(ref)]) == 0
    out = capsys.readouterr().out
    assert f"reference check: 6/6 cells identical to the committed reference ({ref / FOLDER})" in out
    assert cli_main(argv + ["--reference", "none"]) == 0
    assert "reference check" not in capsys.readouterr().out


def test_real_training_is_identical_to_its_reference(toy_pipeline, tmp_path):
    """The real trainer is deterministic: a second run of the same cells (other folder, same
    process) reproduces every prediction bit for bit."""
    hp = {"retain": RETAIN_TINY, "mingle": MINGLE_TINY}
    kw = dict(models=["retain", "mingle", "logreg"], seeds=[0, 1], max_steps=3, hparam_overrides=hp)
    ref = tmp_path / "ref"
    _run(ref, None, **kw)
    rep = _run(tmp_path / "b", ref, **kw).reference
    assert (rep["identical"], rep["n"]) == (6, 6), rep
    # a changed budget is another input, not a difference
    rep = _run(tmp_path / "c", ref, **{**kw, "max_steps": 4}).reference
    assert (rep["identical"], rep["no_reference"]) == (0, 6)


@pytest.fixture
def small_cohort_pipeline(tmp_path_factory, monkeypatch):
    """The real task and features stages on a small hand-built cohort with a tiny deterministic
    text encoder (concept and note embeddings through the embedding cache)."""
    from factories import RecordingEncoder, make_cohort

    from mingle_bench.features import build_task_data

    base = tmp_path_factory.mktemp("cohort")
    cohort = make_cohort(base / "data", n_patients=60, seed=0)
    cache = base / "cache"

    def build(cohort, task, *, split_seed, encoder, progress, **kw):
        kw = {k: v for k, v in kw.items() if k in ("max_notes_per_visit", "max_tokens", "graph_scope")}
        return build_task_data(cohort, task, split_seed=split_seed, encoder=RecordingEncoder(dim=8), progress=False,
                               cache_dir=cache, deepwalk_dim=8, deepwalk_walks_per_node=2, deepwalk_walk_length=8, **kw)

    monkeypatch.setattr(pipeline, "load_cohort", lambda spec, progress=True: cohort)
    monkeypatch.setattr(pipeline, "source_data_id", lambda spec: spec.replace(":", "-"))
    monkeypatch.setattr(pipeline, "build_features", build)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_real_pipeline_with_an_encoder_resumes_and_matches_its_reference(small_cohort_pipeline, tmp_path):
    """Task samples, features and note/concept embeddings built twice from the same cohort are
    the same inputs: the rerun resumes every cell and another folder matches it bit for bit.
    (The input digest must not depend on the embedding cache's state or on timings.)"""
    kw = dict(task="readmission", models=["logreg", "retain"], seeds=[0], max_steps=3,
              hparam_overrides={"retain": RETAIN_TINY})
    ref = tmp_path / "ref"
    _run(ref, None, **kw)
    cfg1 = json.loads((ref / "readmission" / "synthetic-small" / "config.json").read_text())
    assert cfg1["input_digest"]["encoder"] and cfg1["data_report"]["visits_with_input_notes"] > 0
    s = _run(ref, None, **kw)  # the same command again
    cfg2 = json.loads((ref / "readmission" / "synthetic-small" / "config.json").read_text())
    assert cfg2["input_digest"] == cfg1["input_digest"]
    assert not s.trained and len(s.skipped) == 2
    rep = _run(tmp_path / "b", ref, **kw).reference
    assert (rep["identical"], rep["n"]) == (2, 2), rep
