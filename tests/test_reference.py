"""The reference check (:mod:`mingle_bench.report.reference`): each cell of a run against the cell with
the same ``input_hash`` in a reference folder: identical / equivalent / differs / no reference; and the
machine description every cell records (:func:`mingle_bench.io.machine_info`).

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
                                    TOLERANCE_POINTS, reference_lines, resolve_reference)

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


def test_tampered_reference_cells_are_equivalent_or_differ(fakes, tmp_path):
    ref = tmp_path / "ref"
    _run(ref, None)
    _run(tmp_path / "b", None)
    recs = R.load_runs(ref / FOLDER)
    for r in recs:
        if (r["model"], r["seed"]) == ("retain", 0):  # 3 points: beyond the tolerance
            r["metrics"]["aupr"] += 0.03
            r["preds_sha256"] = "1" * 64
        if (r["model"], r["seed"]) == ("mingle", 0):  # 0.3 points: floating-point variation
            r["metrics"]["auroc"] -= 0.003
            r["preds_sha256"] = "2" * 64
        if (r["model"], r["seed"]) == ("hypehr", 1):  # other bits, same metrics
            r["preds_sha256"] = "0" * 64
    R.write_runs(ref / FOLDER, recs)
    mine_before = (tmp_path / "b" / FOLDER / R.RUNS_FILE).read_text()

    s = _run(tmp_path / "b", ref)  # resumes every cell, then checks them
    assert not s.trained
    rep = s.reference
    assert (rep["identical"], rep["equivalent"], rep["differs"], rep["no_reference"], rep["n"]) == (3, 2, 1, 0, 6)
    st = _status(rep)
    assert st[("retain", 0)] == "differs" and st[("mingle", 0)] == st[("hypehr", 1)] == "equivalent"
    cell = next(c for c in rep["cells"] if (c["model"], c["seed"]) == ("retain", 0))
    assert cell["metric_diff"] == {"aupr": pytest.approx(-0.03)} and cell["max_abs_diff_points"] == pytest.approx(3.0)
    cell = next(c for c in rep["cells"] if (c["model"], c["seed"]) == ("hypehr", 1))
    assert cell["metric_diff"] == {} and cell["max_abs_diff_points"] == 0
    # both sides ran on this machine: the same CPU, named
    assert cell["other_cpu"] is False and cell["machine"] == cell["reference_machine"] != "not recorded"
    assert rep["max_abs_diff_points"] == pytest.approx(0.3) and rep["tolerance_points"] == TOLERANCE_POINTS == 2.0
    lines = reference_lines(rep)
    assert lines[0] == (f"reference check: 3/6 cells identical, 2 equivalent (max |Δ| 0.30 points, same CPU), "
                        f"1 beyond 2 points (the committed reference ({ref / FOLDER}))")
    assert lines[1].startswith("  this run's CPU: ") and "the reference's: " in lines[1]
    assert "floating-point variation, not a broken install" in lines[2]
    # every cell recorded the (here: no) embeddings it read, all the same as the reference's
    assert lines[3].startswith("  cause: every embedding these cells read is bit-identical to the reference run's; "
                               "same CPU, thread count and math mode")
    assert "  equivalent: mingle seed 0 (auroc +0.30 points)" in lines
    assert "  equivalent: hypehr seed 1 (predictions differ, metrics equal)" in lines
    assert "  differs: retain seed 0 (same inputs; aupr -3.00 points; more than 2 points)" in lines
    assert len(lines) == 7
    # the run's own records are never replaced by the reference's
    assert (tmp_path / "b" / FOLDER / R.RUNS_FILE).read_text() == mine_before


def test_other_cpu_is_named_and_old_references_fall_back_to_their_machine_line(fakes, tmp_path):
    ref = tmp_path / "ref"
    _run(ref, None, seeds=[0])
    recs = R.load_runs(ref / FOLDER)
    for r in recs:
        r["preds_sha256"] = "3" * 64
        r["metrics"]["aupr"] -= 0.0093  # the largest cross-CPU difference measured: 0.93 AUPR points
        r["machine_info"] = {**r["machine_info"], "cpu": {"vendor": "AuthenticAMD", "family": 26, "model": 2,
                                                          "model_name": "AMD EPYC 9B45"}}
    R.write_runs(ref / FOLDER, recs)
    rep = _run(tmp_path / "b", ref, seeds=[0]).reference
    assert (rep["equivalent"], rep["n"]) == (3, 3)
    assert all(c["other_cpu"] is True for c in rep["cells"])
    lines = reference_lines(rep)
    assert lines[0].startswith("reference check: 0/3 cells identical, 3 equivalent (max |Δ| 0.93 points, other CPU)")
    assert "AMD EPYC 9B45 (AuthenticAMD family 26 model 2" in lines[1]
    # a reference written before cells recorded machine_info: its config's machine line stands in
    for r in recs:
        del r["machine_info"]
    R.write_runs(ref / FOLDER, recs)
    cfg = json.loads((ref / FOLDER / "config.json").read_text())
    cfg.pop("machine_info")
    cfg["machine"] = "Linux x86_64; AMD EPYC; 2 CPU cores; torch 2.13.0+cpu, 2 threads; device cpu"
    (ref / FOLDER / "config.json").write_text(json.dumps(cfg))
    rep = _run(tmp_path / "b", ref, seeds=[0]).reference
    assert {c["reference_machine"] for c in rep["cells"]} == {cfg["machine"]}
    assert all(c["other_cpu"] is None for c in rep["cells"])
    assert "reference CPU not recorded" in reference_lines(rep)[0]


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
    if n_missing == 6:
        assert lines[0].startswith("reference check: nothing to compare: the committed reference")
        assert "holds no cell with the same inputs as any of these 6 cells" in lines[0]
    else:
        assert lines[0].startswith(f"reference check: {6 - n_missing}/6 cells identical, {n_missing} without a reference")
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
    assert reference_lines(rep) == [f"reference check: nothing to compare: the committed reference "
                                    f"({tmp_path / 'empty' / FOLDER}) holds no cells for this task and data"]


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


def test_the_report_names_the_reference_without_this_machines_paths(fakes, tmp_path, monkeypatch):
    """reference_check.json is committed beside results: the checkout's results are named relatively."""
    from mingle_bench.report import reference

    ref = tmp_path / "ref"
    _run(ref, None)
    monkeypatch.setattr(reference, "default_reference_root", lambda: ref)
    s = _run(tmp_path / "b", "auto")
    assert s.reference["reference"] == f"results/{FOLDER}" and s.reference["identical"] == 6
    assert str(tmp_path) not in (s.folder / REFERENCE_FILE).read_text()


def test_compare_cells_rules():
    run = [{"model": "retain", "seed": 0, "input_hash": "h0", "preds_sha256": "p0",
            "metrics": {"aupr": 0.5, "ece": None, "auroc_macro": 0.7}},  # a new metric the reference lacks
           {"model": "retain", "seed": 1, "input_hash": "h1", "preds_sha256": "p1", "metrics": {"aupr": 0.5}},
           {"model": "gram", "seed": 0, "input_hash": "h2", "preds_sha256": "p2", "metrics": {"aupr": 0.5}},
           {"model": "gram", "seed": 1, "input_hash": "h3", "preds_sha256": "p3", "metrics": {"aupr": 0.5, "auroc": 0.6}},
           {"model": "gram", "seed": 2, "input_hash": "h4", "preds_sha256": "p4", "metrics": {"auroc": None}}]
    ref = [{"model": "retain", "seed": 0, "input_hash": "h0", "preds_sha256": "p0", "metrics": {"aupr": 0.5, "ece": None}},
           {"model": "retain", "seed": 1, "input_hash": "h1", "preds_sha256": "x1", "metrics": {"aupr": 0.25}},
           {"model": "gram", "seed": 0, "preds_sha256": "p2", "metrics": {"aupr": 0.5}},  # no hash: old format
           {"model": "gram", "seed": 1, "input_hash": "h3", "preds_sha256": "x3", "metrics": {"aupr": 0.51, "auroc": 0.599}},
           {"model": "gram", "seed": 2, "input_hash": "h4", "preds_sha256": "x4", "metrics": {"auroc": 0.5}}]
    out = compare_cells(run, ref)
    assert [c["status"] for c in out] == ["identical", "differs", "no reference", "equivalent", "differs"]
    assert out[1]["metric_diff"] == {"aupr": 0.25} and out[1]["max_abs_diff_points"] == pytest.approx(25)
    assert out[3]["max_abs_diff_points"] == pytest.approx(1.0)  # exactly at the tolerance: equivalent
    assert out[4]["undefined_in_one"] == ["auroc"]  # n/a in one cell: never equivalent
    assert [c["status"] for c in compare_cells(run[3:4], ref[3:4], tolerance=0.5)] == ["differs"]


def test_the_check_names_embeddings_whose_last_bits_differ():
    """Same inputs, other bits: the cells record the sha256 of the embeddings they read, and the
    check says which ones differ from the reference run's (the fresh-cache case), or that none do."""
    cpu = {"cpu": {"vendor": "AuthenticAMD", "family": 25, "model": 17, "model_name": "AMD EPYC"},
           "torch_cpu_capability": "AVX2", "kernel_isa": "avx2", "torch_threads": 2}

    def cell(model, sha, computed, **extra):
        return {"model": model, "seed": 0, "input_hash": f"h-{model}", "preds_sha256": sha, "machine_info": cpu,
                "metrics": {"aupr": 0.5}, **({"computed_sha256": computed} if computed is not None else {}), **extra}

    run = [cell("mingle", "a", {"concept_emb": "c1", "visit_note_emb": "n2"}), cell("note-mlp", "b", {"visit_note_emb": "n2"}),
           cell("logreg", "c", {})]
    ref = [cell("mingle", "x", {"concept_emb": "c1", "visit_note_emb": "n1"}), cell("note-mlp", "y", {"visit_note_emb": "n1"}),
           cell("logreg", "c", {})]
    out = compare_cells(run, ref)
    assert [c["status"] for c in out] == ["equivalent", "equivalent", "identical"]
    assert out[0]["other_computed_inputs"] == out[1]["other_computed_inputs"] == ["visit_note_emb"]
    rep = {"n": 3, "identical": 1, "equivalent": 2, "differs": 0, "no_reference": 0, "reference_cells": 3,
           "reference": "results/mortality/synthetic-default", "cells": out, "max_abs_diff_points": 0.0}
    cause = [line for line in reference_lines(rep) if line.startswith("  cause: ")]
    assert len(cause) == 1 and cause[0].startswith("  cause: 2 of these 2 cells read note vectors whose last bits differ")
    # the same vectors on both sides: the cause is elsewhere, and the line says so
    run[0]["computed_sha256"] = ref[0]["computed_sha256"]
    out = compare_cells(run[:1], ref[:1])
    assert out[0]["other_computed_inputs"] == []
    rep.update(n=1, identical=0, equivalent=1, cells=out)
    assert any(line.startswith("  cause: every embedding these cells read is bit-identical") and "same CPU" in line
               for line in reference_lines(rep))
    # the same vectors, another thread count: that is the cause named
    out = compare_cells(run[:1], [{**ref[0], "machine_info": {**cpu, "torch_threads": 8}}])
    rep.update(cells=out)
    assert out[0]["other_threads"] is True and out[0]["other_cpu"] is False
    cause = [line for line in reference_lines(rep) if line.startswith("  cause: ")]
    assert cause == ["  cause: other torch thread count (2 here, 8 in the reference): ATen splits large reductions "
                     "into one chunk per thread; --math reproducible pins 2 unless $MINGLE_THREADS says otherwise"]
    # the same vectors and threads, another math mode: named too
    native = {**cpu, "math": {"mode": "native"}}
    out = compare_cells([{**run[0], "machine_info": {**cpu, "math": {"mode": "reproducible"}}}],
                        [{**ref[0], "machine_info": native}])
    rep.update(cells=out)
    cause = [line for line in reference_lines(rep) if line.startswith("  cause: ")]
    assert cause == ["  cause: other math mode (reproducible here, native in the reference): the CPU kernels differ "
                     "(--math, docs/reproducibility.md)"]
    # a reference cell written before cells recorded their embeddings: no diagnosis, no claim
    out = compare_cells(run[:1], [cell("mingle", "x", None)])
    assert out[0]["other_computed_inputs"] is None
    rep.update(cells=out)
    assert not any(line.startswith("  cause: ") for line in reference_lines(rep))


def test_machine_info_records_what_changes_low_bits():
    from mingle_bench.io import _CPUINFO_KEYS, _parse_cpu_fields, kernel_isa, machine_description, machine_info, torch_blas

    info = machine_info("cpu")
    assert {"os", "cpu", "cpu_cores", "torch", "torch_threads", "torch_cpu_capability", "kernel_isa", "env",
            "device"} <= set(info)
    assert info["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["kernel_isa"] == kernel_isa() in ("avx2", "base", "reference", "unknown")
    from mingle_bench import ops

    if ops.fused_available("cpu"):
        assert info["kernel_isa"] == torch.ops.mingle.cpu_isa()
    assert info["cpu"].get("model_name")
    line = machine_description("cpu")
    assert "CPU cores" in line and f"kernel ISA {info['kernel_isa']}" in line and "CPU capability" in line

    cpuinfo = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
               "model name\t: AMD EPYC 9B45\nstepping\t: 1\n\nprocessor\t: 1\nvendor_id\t: Other\n")
    assert _parse_cpu_fields(cpuinfo, _CPUINFO_KEYS) == {"vendor": "AuthenticAMD", "family": 26, "model": 2,
                                                          "model_name": "AMD EPYC 9B45", "stepping": 1}
    config = ("PyTorch built with:\n  - Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605\n"
              "  - Intel(R) MKL-DNN v3.12.0 (Git Hash 80af)\n  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release\n")
    assert torch_blas(config) == {"blas": "mkl", "blas_version": "Intel(R) oneAPI Math Kernel Library Version "
                                  "2024.2-Product Build 20240605", "onednn": "v3.12.0"}
    assert torch_blas("PyTorch built with:\n  - Build settings: BLAS_INFO=open, X=1\n") == {"blas": "open"}


def test_runs_record_their_machine(fakes, tmp_path):
    s = _run(tmp_path / "b", None, seeds=[0])
    cfg = json.loads((s.folder / "config.json").read_text())
    assert cfg["machine_info"]["kernel_isa"] and cfg["machine_info"]["cpu"]
    assert all(r["machine_info"] == cfg["machine_info"] for r in R.load_runs(s.folder))


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
    kw = dict(task="readmission", models=["logreg", "retain", "note-mlp"], seeds=[0], max_steps=3,
              hparam_overrides={"retain": RETAIN_TINY})
    ref = tmp_path / "ref"
    _run(ref, None, **kw)
    cfg1 = json.loads((ref / "readmission" / "synthetic-small" / "config.json").read_text())
    assert cfg1["input_digest"]["encoder"] and cfg1["data_report"]["visits_with_input_notes"] > 0
    # each cell records the sha256 of the embeddings it read (the note vectors for note-mlp only)
    computed = {r["model"]: r["computed_sha256"] for r in R.load_runs(ref / "readmission" / "synthetic-small")}
    assert computed["logreg"] == computed["retain"] == {} and set(computed["note-mlp"]) == {"visit_note_emb"}
    s = _run(ref, None, **kw)  # the same command again
    cfg2 = json.loads((ref / "readmission" / "synthetic-small" / "config.json").read_text())
    assert cfg2["input_digest"] == cfg1["input_digest"]
    assert not s.trained and len(s.skipped) == 3
    s = _run(tmp_path / "b", ref, **kw)
    assert (s.reference["identical"], s.reference["n"]) == (3, 3), s.reference
    assert R.load_runs(s.folder)[2]["computed_sha256"] == computed["note-mlp"]


def test_kernel_isa_is_what_the_op_dispatches_to(tmp_path):
    """``MINGLE_CPU_ISA=base`` makes the fused CPU op take its portable kernels: the recorded ISA
    (and the env var) say so. A fresh process: the op picks its ISA once, when it loads."""
    import os
    import subprocess
    import sys

    from mingle_bench import ops

    if not ops.fused_available("cpu"):
        pytest.skip("the compiled extension is not built: the op runs its pure-PyTorch reference")
    code = "import json; from mingle_bench.io import machine_info; print(json.dumps(machine_info()))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MINGLE_CPU_ISA": "base"},
                         capture_output=True, text=True, check=True, timeout=120).stdout
    info = json.loads(out.strip().splitlines()[-1])
    assert info["kernel_isa"] == "base" and info["env"]["MINGLE_CPU_ISA"] == "base"
