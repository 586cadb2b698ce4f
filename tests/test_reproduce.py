"""`mingle-bench reproduce` on the fake pipeline: tables, published numbers, relative improvement."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from mingle_bench import reproduce as RP
from mingle_bench.cli import main as cli_main

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_runner as fakes_mod  # noqa: E402


@pytest.fixture
def fakes(monkeypatch):
    fakes_mod.install_fakes(monkeypatch.setattr)


def test_relative_improvement_definition():
    rows = [{"model": "mingle", "acc_mean": 0.80, "brier_mean": 0.1},
            {"model": "retain", "acc_mean": 0.70, "brier_mean": 0.2},
            {"model": "hypehr", "acc_mean": 0.75, "brier_mean": 0.15},
            {"model": "mingle-no-notes", "acc_mean": 0.99, "brier_mean": 0.01}]  # an ablation, never "the baseline"
    ri = RP.relative_improvement(rows, "acc")
    assert ri["baseline"] == "hypehr" and ri["value"] == pytest.approx(100 * (0.80 - 0.75) / 0.75)
    assert RP.relative_improvement([{"model": "retain", "acc_mean": 0.7}], "acc") is None


def test_reproduce_writes_paper_tables(fakes, tmp_path, capsys):
    res = RP.reproduce(data="synthetic:small", seeds=[0, 1], out=str(tmp_path), epochs=2, patience=2, n_boot=50,
                       progress=False, command="mingle-bench reproduce (test)")
    folder = tmp_path / "paper" / "synthetic-small"
    assert res.folder == folder
    for name in ("main.md", "main.tex", "ablation.md", "ablation.tex", "relative_improvement.md",
                 "relative_improvement.tex", "relative_improvement.png", "paper.csv", "paper.json"):
        assert (folder / name).is_file(), name
    assert set(res.task_folders) == {"phenotype", "cvd"}
    main = (folder / "main.md").read_text()
    assert "## phenotype (the paper's MIMIC-III task)" in main and "## cvd (the paper's CRADLE task)" in main
    for name in ("RETAIN", "GRAM", "HyperGAT", "HypEHR", "MINGLE"):
        assert f"| {name} " in main
    assert "w/o" not in main  # ablations live in their own table
    # the published row sits beside ours, labelled with its data
    pub = next(line for line in main.splitlines() if "MINGLE (published)" in line)
    assert "published: MIMIC-III" in pub and "80.17" in pub and "≈46" in pub
    assert main.count("SYNTHETIC (synthetic-small)") >= 10  # every row of ours says which data produced it
    abl = (folder / "ablation.md").read_text()
    for name in ("MINGLE w/o concept semantics", "MINGLE w/o note semantics", "HypEHR"):
        assert name in abl
    rel = (folder / "relative_improvement.md").read_text()
    assert "RI = (MINGLE − B) / B × 100" in rel and "+11.83%" in rel
    payload = json.loads((folder / "paper.json").read_text())
    ri = payload["relative_improvement"]["cvd"]["aupr"]
    rows = {r["model"]: r for r in payload["tasks"]["cvd"]["rows"]}
    best = max((m for m in RP.BASELINES), key=lambda m: rows[m]["aupr_mean"])
    assert ri["baseline"] == best
    assert ri["value"] == pytest.approx(100 * (rows["mingle"]["aupr_mean"] - rows[best]["aupr_mean"]) / rows[best]["aupr_mean"])
    assert r"\begin{tabular}" in (folder / "main.tex").read_text()
    # table re-renders the paper folder in all formats
    for fmt, needle in (("md", "# Main table"), ("latex", r"\begin{tabular}"), ("csv", "task,model,data,metric")):
        assert cli_main(["table", str(folder), "--format", fmt]) == 0
        assert needle in capsys.readouterr().out
    assert not math.isnan(ri["value"])


def test_tables_only_composes_finished_cells(fakes, tmp_path):
    from mingle_bench import runner

    for task in ("phenotype", "cvd"):  # e.g. two machines, one task each, one seed finished
        runner.run_benchmark(runner.RunConfig(task=task, data="synthetic:small", models=list(RP.PAPER_MODELS),
                                              seeds=[0], out=str(tmp_path), epochs=2, patience=2, n_boot=20,
                                              progress=False, command=f"mingle-bench run --task {task}"))
    res = RP.reproduce(data="synthetic:small", out=str(tmp_path), tables_only=True, n_boot=20, progress=False,
                       command="mingle-bench reproduce --tables-only")
    payload = json.loads((res.folder / "paper.json").read_text())
    assert payload["seeds"] == [0]  # what the folders hold, not the default 5
    assert "mingle-bench run --task phenotype" in payload["command"] and "--tables-only" in payload["command"]
    with pytest.raises(FileNotFoundError, match="holds no run"):
        RP.reproduce(data="synthetic:small", tasks=["los"], out=str(tmp_path), tables_only=True, progress=False)
