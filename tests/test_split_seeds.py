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


@pytest.mark.slow  # end to end: tunes or trains every split
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


@pytest.mark.slow  # end to end: tunes or trains every split
def test_tuned_repeated_splits_tune_each_split_on_its_own_validation_patients(fakes, tmp_path, monkeypatch):
    """reproduce --protocol tuned --split-seeds: one study per split seed; every split's cells train
    with the parameters of the study tuned on that split."""
    import json
    from pathlib import Path

    from mingle_bench import pipeline
    from mingle_bench import reproduce as RP
    from mingle_bench import results as R

    monkeypatch.setattr(pipeline, "search_space", lambda model, trial: {"scale": trial.suggest_float("scale", 0.5, 2.0)})
    RP.reproduce(data="synthetic:small", seeds=[0], tasks=["cvd"], models=["retain", "mingle"], out=str(tmp_path),
                 max_steps=2, eval_every=1, patience=2, n_boot=0, progress=False, reference=None, split_seeds="0,2",
                 protocol="tuned", trials=2)
    tuning = tmp_path / "tuning"
    for model in ("retain", "mingle"):
        base = f"cvd-{model}-synthetic-small-s2e1p2-default"
        assert json.loads((tuning / f"{base}.json").read_text())["split_seed"] == 0
        assert json.loads((tuning / f"{base}-split2.json").read_text())["split_seed"] == 2
    for folder, split_seed in (("synthetic-small-tuned", 0), ("synthetic-small-tuned-split2", 2)):
        for r in R.load_runs(tmp_path / "cvd" / folder):
            tuned = json.loads(Path(r["config"]["tuned_from"]).read_text())
            assert tuned["split_seed"] == split_seed and r["config"]["hparams"]["scale"] == tuned["best_params"]["scale"]
    assert (tmp_path / "cvd" / "synthetic-small-tuned-splits" / "pooled.json").is_file()


def test_tune_split_seeds_names_one_study_per_split_and_run_refuses_another_splits_parameters(fakes, tmp_path,
                                                                                              monkeypatch, capsys):
    import json

    from mingle_bench import pipeline, runner, tuning
    from mingle_bench.cli import main

    monkeypatch.setattr(pipeline, "search_space", lambda model, trial: {"scale": trial.suggest_float("scale", 0.5, 2.0)})
    assert tuning.split_study_name("s", 0) == "s" and tuning.split_study_name("s", 3) == "s-split3"
    assert runner.tuned_for_split("s", 0) == "s" and runner.tuned_for_split("s", 2) == "s-split2"
    assert runner.tuned_for_split("d/s.json", 2) == "d/s-split2.json"
    rc = main(["tune", "--task", "cvd", "--model", "retain", "--data", "synthetic:small", "--trials", "1",
               "--split-seeds", "2", "--max-steps", "2", "--eval-every", "1", "--patience", "2", "--out", str(tmp_path),
               "--quiet", "--json"])
    studies = json.loads(capsys.readouterr().out)["studies"]
    assert rc == 0 and [s["study_name"] for s in studies] == ["cvd-retain-synthetic-small",
                                                              "cvd-retain-synthetic-small-split1"]
    base = dict(task="cvd", data="synthetic:small", models=["retain"], seeds=[0], out=str(tmp_path), max_steps=2,
                eval_every=1, patience=2, n_boot=0, progress=False, reference=None)
    # split seed 1 with split seed 0's parameters: refused (they were chosen on some of its test patients)
    with pytest.raises(RunError, match="split seed: tuned on split seed 0's validation patients, this run split seed 1"):
        runner.run_benchmark(runner.RunConfig(**base, split_seed=1, tuned=["cvd-retain-synthetic-small"]))
    res = runner.run_split_seeds(runner.RunConfig(**base, split_seeds=(0, 1), tuned=["cvd-retain-synthetic-small"]))
    used = [json.loads(open(r["config"]["tuned_from"]).read())["split_seed"]
            for s in res.runs for r in __import__("mingle_bench.results", fromlist=["x"]).load_runs(s.folder)]
    assert used == [0, 1]
    with pytest.raises(Exception, match="--split-seed with --split-seeds"):
        tuning.tune_split_seeds("2", task="cvd", model="retain", data="synthetic:small", split_seed=1, trials=1,
                                out=str(tmp_path), progress=False)


def test_cli_reproduce_accepts_split_seeds():
    from mingle_bench.cli import build_parser

    args = build_parser().parse_args(["reproduce", "--split-seeds", "3"])
    assert args.split_seeds == "3"


def test_pooled_bootstrap_resamples_the_training_seeds_within_a_split():
    """The pooled CI's middle level: per drawn split, the seeds drawn with replacement (the same
    positions for every model with as many seeds, so a comparison stays seed-paired)."""
    from mingle_bench.report.comparison import fast_metric
    from mingle_bench.report.pooled import _seed_mean

    rng = np.random.default_rng(0)
    y = (rng.random((80, 1)) < 0.4).astype(float)
    preds = {("m", s): np.clip(y * w + rng.random((80, 1)) * (1 - w), 0, 1) for s, w in ((0, 0.6), (1, 0.1), (2, 0.3))}
    split = {"y": y, "preds": preds}
    per_seed = [fast_metric("auroc", y, preds[("m", s)]) for s in (0, 1, 2)]
    assert _seed_mean(split, "m", "auroc") == pytest.approx(np.mean(per_seed))
    # u in [0, 1): position floor(u * S); slots beyond the model's seed count are unused
    assert _seed_mean(split, "m", "auroc", u=np.array([0.0, 0.1, 0.5, 0.9])) == \
        pytest.approx(np.mean([per_seed[0], per_seed[0], per_seed[1]]))
    assert _seed_mean(split, "m", "auroc", u=np.array([0.99, 0.99, 0.99])) == pytest.approx(per_seed[2])
    idx = np.arange(40)
    assert _seed_mean(split, "m", "auroc", idx, np.array([0.7, 0.7, 0.7])) == \
        pytest.approx(fast_metric("auroc", y[idx], preds[("m", 2)][idx]))
