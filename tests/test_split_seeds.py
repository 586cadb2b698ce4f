"""Repeated splits (``run --split-seeds``): one results folder per split seed, pooled with a
hierarchical bootstrap and the corrected resampled t-test."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mingle_bench import runner
from mingle_bench.pipeline import RunError
from mingle_bench.report.pooled import corrected_resampled_t


def _cfg(tmp_path, **kw):
    base = dict(task="mortality", data="synthetic:small", models=("mingle", "hypehr", "retain"), seeds=[0, 1],
                out=str(tmp_path), max_steps=30, eval_every=10, patience=2, progress=False, reference=None, n_boot=50)
    base.update(kw)
    return runner.RunConfig(**base)


def test_split_seeds_write_one_folder_per_split_and_a_pooled_report(fakes, tmp_path):
    res = runner.run_split_seeds(_cfg(tmp_path, split_seeds=(0, 1, 2)))
    names = [s.folder.name for s in res.runs]
    assert names == ["synthetic-small", "synthetic-small-split1", "synthetic-small-split2"]
    for s, seed in zip(res.runs, (0, 1, 2)):
        cfg = json.loads((s.folder / "config.json").read_text())
        assert cfg["split_seed"] == seed
        assert {r["split_seed"] for r in map(json.loads, (s.folder / "runs.jsonl").read_text().splitlines())} == {seed}
    # the split seed-0 folder is the single-split folder: same fingerprint as a plain run
    plain = runner.run_benchmark(_cfg(tmp_path))
    assert plain.folder == res.runs[0].folder and len(plain.skipped) == 6 and not plain.trained

    pooled = json.loads((res.pooled_folder / "pooled.json").read_text())
    assert res.pooled_folder.name == "synthetic-small-splits"
    assert [s["split_seed"] for s in pooled["splits"]] == [0, 1, 2]
    rows = {r["model"]: r for r in pooled["rows"]}
    assert rows["mingle"]["n_cells"] == 6 and rows["mingle"]["n_splits"] == 3
    lo, hi = rows["mingle"]["auroc_ci"]
    assert lo <= rows["mingle"]["auroc_mean"] <= hi
    comp = pooled["comparison"]
    assert comp["a"] == "mingle" and comp["b"] in ("hypehr", "retain")
    auroc = comp["metrics"]["auroc"]
    assert len(auroc["per_split"]) == 3 and auroc["t_test"]["df"] == 2
    assert auroc["ci_low"] <= auroc["diff"] <= auroc["ci_high"]
    table = (res.pooled_folder / "table.md").read_text()
    assert "hierarchical bootstrap" in table and "corrected resampled t-test" in table and "assumption" in table


def test_pooled_report_is_deterministic(fakes, tmp_path):
    a = runner.run_split_seeds(_cfg(tmp_path, split_seeds=(0, 1)))
    first = (a.pooled_folder / "pooled.json").read_text()
    b = runner.run_split_seeds(_cfg(tmp_path, split_seeds=(0, 1)))
    assert (b.pooled_folder / "pooled.json").read_text().replace(b.runs[0].folder.name, "") == \
        first.replace(a.runs[0].folder.name, "")


def test_split_seeds_refused_with_meds_split(fakes, tmp_path):
    with pytest.raises(RunError, match="--split-seeds"):
        runner.run_split_seeds(_cfg(tmp_path, split_seeds=(0, 1), split="meds"))


def test_corrected_resampled_t_matches_the_formula():
    d = [0.02, 0.01, 0.03, 0.00]
    out = corrected_resampled_t(d, n_test=200, n_train=700)
    mean, var, J = np.mean(d), np.var(d, ddof=1), 4
    t = mean / math.sqrt((1 / J + 200 / 700) * var)
    assert math.isclose(out["t"], t) and out["df"] == 3 and 0 < out["p"] < 1
    # the correction makes it more conservative than the plain t over splits
    assert abs(out["t"]) < abs(mean / math.sqrt(var / J))
    assert math.isnan(corrected_resampled_t([0.01], 200, 700)["t"])


def test_cli_split_seeds(fakes, tmp_path, capsys):
    from mingle_bench.cli import main

    rc = main(["run", "--task", "mortality", "--data", "synthetic:small", "--models", "mingle,retain", "--seeds", "1",
               "--split-seeds", "2", "--max-steps", "20", "--eval-every", "10", "--bootstrap", "20", "--quiet",
               "--reference", "none", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "2 repeated splits pooled" in out and "Pooled over 2 splits" in out
    assert (tmp_path / "mortality" / "synthetic-small-splits" / "pooled.json").is_file()
    rc = main(["run", "--split-seeds", "0,0", "--out", str(tmp_path)])
    assert rc == 1 and "--split-seeds" in capsys.readouterr().err


def test_reproduce_with_split_seeds_appends_the_pooled_tables(fakes, tmp_path):
    from mingle_bench import reproduce as RP

    res = RP.reproduce(data="synthetic:small", seeds=[0], out=str(tmp_path), max_steps=2, eval_every=1, patience=2,
                       n_boot=20, progress=False, reference=None, split_seeds="2")
    main = (res.folder / "main.md").read_text()
    assert "## Repeated splits, pooled" in main and main.count("2 repeated splits pooled") == 2
    for task in ("phenotype", "cvd"):
        assert (tmp_path / task / "synthetic-small-splits" / "pooled.json").is_file()
        assert (tmp_path / task / "synthetic-small-split1" / "runs.jsonl").is_file()
    assert res.task_folders["cvd"] == tmp_path / "cvd" / "synthetic-small"  # the paper rows: the first split
    with pytest.raises(RunError, match="--split-seeds with --protocol tuned"):
        RP.reproduce(data="synthetic:small", seeds=[0], out=str(tmp_path), split_seeds="2", protocol="tuned",
                     progress=False, reference=None)


def test_cli_reproduce_accepts_split_seeds():
    from mingle_bench.cli import build_parser

    args = build_parser().parse_args(["reproduce", "--split-seeds", "3"])
    assert args.split_seeds == "3"
