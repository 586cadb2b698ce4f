"""Tables that say what they can tell apart (mingle_bench.report.power, mingle_bench.report.tables):
counts, the minimum detectable AUROC difference, the UNDERPOWERED note, the selection metric, what
the ± is over, and the bold rules (never a constant, flagged or one-class-at-0.5 cell, never n/a).

Most tests write a small results folder by hand (config.json, runs.jsonl, predictions and labels as
safetensors); two run the fake pipeline (tests/pipeline_fakes.py). All take seconds.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mingle_bench import results as R
from mingle_bench.metrics import compute_metrics
from mingle_bench.report.power import (ASSUMED_CORRELATION, hanley_mcneil_variance, min_detectable_auroc_difference,
                                       power_summary, split_counts, underpowered_reasons)
from mingle_bench.report.tables import aggregate, best_rows, render_run

Z = 1.959963984540054 + 0.8416212335729143  # two-sided alpha 0.05, power 0.8


# ------------------------------------------------------------------------------- the power arithmetic


def test_hanley_mcneil_variance_and_the_detectable_difference():
    # at A = 0.5, Q1 = Q2 = 1/3: V = (1/4 + (P + N - 2) / 12) / (P N)
    assert hanley_mcneil_variance(0.5, 50, 150) == pytest.approx((0.25 + 198 / 12) / (50 * 150))
    v = hanley_mcneil_variance(0.7, 59, 582)
    assert min_detectable_auroc_difference(0.7, 59, 582) == pytest.approx(Z * math.sqrt(2 * v * (1 - ASSUMED_CORRELATION)))
    # more positives, or models that agree more, detect smaller differences
    assert min_detectable_auroc_difference(0.7, 300, 3000) < min_detectable_auroc_difference(0.7, 59, 582)
    assert min_detectable_auroc_difference(0.7, 59, 582, rho=0.8) < min_detectable_auroc_difference(0.7, 59, 582)
    assert math.isnan(min_detectable_auroc_difference(0.7, 0, 100))


def test_hanley_mcneil_matches_the_spread_of_simulated_aurocs():
    """Binormal scores with a true AUROC near 0.75: the formula's SE is the empirical SD of the AUROC
    over 400 simulated test sets, within 15%."""
    from mingle_bench.metrics import auroc_mann_whitney

    rng = np.random.default_rng(0)
    n_pos, n_neg = 60, 540
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    aucs = [auroc_mann_whitney(y, np.r_[rng.normal(0.95, 1, n_pos), rng.normal(0, 1, n_neg)]) for _ in range(400)]
    se = math.sqrt(hanley_mcneil_variance(float(np.mean(aucs)), n_pos, n_neg))
    assert np.std(aucs, ddof=1) == pytest.approx(se, rel=0.15)


def test_counts_and_underpowered_reasons():
    config = {"label_names": ["a", "b"], "n_samples": {"train": 700, "val": 100, "test": 200},
              "data_report": {"positives_by_split": {"val": {"a": 30, "b": 5}, "test": {"a": 60, "b": 9}}}}
    y = np.zeros((200, 2))
    y[:60, 0], y[:9, 1] = 1, 1
    c = split_counts(config, y)
    assert (c["test_samples"], c["test_positives"], c["test_negatives"], c["test_label_positives"]) == (200, 69, 331, [60, 9])
    assert (c["val_samples"], c["val_positives"], c["val_negatives"]) == (100, 35, 165)
    assert underpowered_reasons(c) == ["69 positive cells in the test split (fewer than 100)",
                                       "35 positive cells in the validation split (fewer than 50)"]
    info = power_summary(c, 0.8)
    assert (info["smallest_label"], info["smallest_label_positives"]) == ("b", 9)
    assert info["mdd_smallest_label"] > info["mdd"] > 0
    # binary, positives the majority: the negatives are the minority class that counts
    cfg = {"label_names": ["y"], "n_samples": {"val": 300}, "data_report": {"positives_by_split": {"val": {"y": 200}}}}
    c = split_counts(cfg, np.r_[np.ones(150), np.zeros(80)])
    assert underpowered_reasons(c) == ["80 negatives in the test split (fewer than 100)"]
    # nothing recorded for validation (an older folder): only the test split is judged
    c = split_counts({"label_names": ["y"]}, np.r_[np.ones(120), np.zeros(400)])
    assert c["val_positives"] is None and underpowered_reasons(c) == []


# ------------------------------------------------------------------------------- a hand-written folder


def _folder(tmp_path: Path, cells: dict[str, dict], y: np.ndarray, *, config: dict | None = None,
            comparison: dict | None = None) -> Path:
    """A results folder: ``cells`` maps ``model`` (or ``model@split_seed``) to ``{"probs": [n, L] or
    [S, n, L] per seed, "flags": ..., "drop_metrics": [...]}``; metrics come from compute_metrics."""
    folder = tmp_path / "mortality" / "synthetic-test"
    folder.mkdir(parents=True)
    y = y[:, None] if y.ndim == 1 else y
    names = [f"label{k}" for k in range(y.shape[1])] if y.shape[1] > 1 else ["in_hospital_mortality"]
    cfg = {"task": "mortality", "data": "synthetic:test", "data_id": "synthetic-test", "split_seed": 0,
           "max_steps": 10, "eval_every": 1, "patience": 2, "monitor": "aupr", "command": "mingle-bench run (test)",
           "machine": "test machine", "models": [m.split("@")[0] for m in cells], "label_names": names,
           "n_samples": {"train": 700, "val": 300, "test": int(y.shape[0])},
           "data_report": {"positives_by_split": {"val": {n: 120 for n in names}}}, **(config or {})}
    (folder / R.CONFIG_FILE).write_text(json.dumps(cfg))
    R.save_array(R.labels_path(folder), {"y_true": y.astype(np.float32)})
    records = []
    for key, spec in cells.items():
        model, _, split = key.partition("@")
        for seed, probs in enumerate(spec["probs"]):
            probs = np.asarray(probs, dtype=np.float32).reshape(y.shape)
            seed = seed + 10 * int(split or 0)  # distinct prediction files per split seed
            metrics = compute_metrics(y, probs)
            for m in spec.get("drop_metrics", ()):
                metrics.pop(m)
            rec = {"model": model, "seed": seed, "metrics": metrics, "stopped": "early", "best_step": 1}
            if split:
                rec["split_seed"] = int(split)
            if "flags" in spec:
                rec["flags"] = spec["flags"]
            records.append(rec)
            R.save_array(R.preds_path(folder, model, seed), {"probs": probs})
    R.write_runs(folder, records)
    if comparison:
        (folder / R.COMPARISON_FILE).write_text(json.dumps(comparison))
    return folder


def _row(md: str, model: str) -> str:
    """The table line of ``model`` (its registered display name)."""
    from mingle_bench.report.tables import display_name

    return next(line for line in md.splitlines() if line.startswith(f"| {display_name(model)} "))


def _cols(md: str, model: str) -> list[str]:
    return [c.strip() for c in _row(md, model).split("|")[1:-1]]


def _header(md: str) -> str:
    return next(line for line in md.splitlines() if line.startswith("| Model"))


def _scores(y: np.ndarray, strength: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 1 / (1 + np.exp(-(strength * (2 * y - 1) + rng.normal(size=y.shape) - 1.5)))


def test_bold_never_goes_to_constant_flagged_or_one_sided_cells(tmp_path):
    rng = np.random.default_rng(1)
    y = (rng.random(400) < 0.3).astype(float)
    good = [_scores(y, 1.0, s) for s in range(2)]
    cells = {
        # constant predictions in an older record (no flags key): found in its predictions file
        "prior": {"probs": [np.full(400, 0.3)] * 2},
        # the trainer's flag on a new record; predictions every one below 0.5 (one class at the threshold)
        "retain": {"probs": [np.full(400, 0.2) + 1e-3 * y] * 2,
                   "flags": [{"kind": "constant_predictions", "message": "every test probability is the same value"}]},
        # a strong model, flagged: never bold
        "gram": {"probs": [_scores(y, 3.0, s) for s in range(2)],
                 "flags": [{"kind": "diverged_after_best", "message": "validation loss exploded at step 40"}]},
        # every prediction below 0.5 but a good ranking: bold in AUROC allowed, never in ACC / F1
        "hypehr": {"probs": [0.49 * _scores(y, 2.0, s) for s in range(2)], "flags": []},
        # monitor fallback: marked, still eligible
        "mingle": {"probs": good, "flags": [{"kind": "monitor_fallback", "message": "no validation positive"}]},
        "logreg": {"probs": [_scores(y, 0.5, s) for s in range(2)], "flags": []},
    }
    folder = _folder(tmp_path, cells, y)
    rows = aggregate(R.load_runs(folder), folder=folder, split_seed=0)
    by = {r["model"]: r for r in rows}
    assert by["prior"]["n_constant"] == 2 and by["retain"]["n_constant"] == 2
    assert by["hypehr"]["n_one_sided"] == 2 and by["mingle"]["n_fallback"] == 2 and by["gram"]["flags"]
    # prior's ACC (the majority share) would be best: nobody constant or one-sided gets it
    assert best_rows(rows, "acc") <= {"mingle", "logreg"}
    assert best_rows(rows, "auroc") == {"hypehr"}  # gram ranks better but is flagged
    md = render_run(folder, "md")
    for model in ("prior", "retain", "gram"):
        assert "**" not in _row(md, model), model
    assert _cols(md, "prior")[0].endswith(" §") and _cols(md, "retain")[0] == "RETAIN §"
    assert _cols(md, "gram")[0] == "GRAM ¶" and _cols(md, "mingle")[0] == "MINGLE ‡"
    cols = _cols(md, "hypehr")
    assert cols[0] == "HypEHR ◦"
    assert cols[2].startswith("**") and not cols[1].startswith("**") and not cols[4].startswith("**")  # AUROC; ACC, F1
    for text in ("§ constant test predictions", "¶ flagged cells, never bold: GRAM seed 0: diverged_after_best",
                 "‡ monitor fallback in some cells (MINGLE 2/2)", "◦ every prediction on one side of 0.5"):
        assert text in md, text
    tex = render_run(folder, "latex")
    assert r"\S{}" in tex and r"$^\ddagger$" in tex and r"\P{}" in tex and r"$^\circ$" in tex


def test_header_states_selection_counts_power_and_underpowered(tmp_path, capsys):
    rng = np.random.default_rng(2)
    y = (rng.random(300) < 0.1).astype(float)  # ~30 test positives
    folder = _folder(tmp_path, {"mingle": {"probs": [_scores(y, 1.0, s) for s in range(3)]},
                                "logreg": {"probs": [_scores(y, 0.8, s) for s in range(3)]}}, y,
                     config={"data_report": {"positives_by_split": {"val": {"in_hospital_mortality": 20}}}})
    md = render_run(folder, "md")
    pos = int(y.sum())
    assert md.splitlines()[2] == (f"> **UNDERPOWERED**: {pos} positives in the test split (fewer than 100) and 20 "
                                  "positives in the validation split (fewer than 50). Differences smaller than the "
                                  "detectable difference below are noise, and early stopping and selection see few "
                                  "positives.")
    assert "- selection: early stopping, the restored best step and the comparison's baseline all use validation AUPR" in md
    assert f"- counts: test 300 samples, {pos} positives; validation 300 samples, 20 positives" in md
    assert "detects at 80% power (two-sided alpha 0.05) is" in md and "assumed correlation of 0.5" in md
    assert "mean ± std over seeds (one split)" in md
    # binary: no macro columns (they equal AUROC and AUPR), and the header says so
    assert "AUROC macro" not in md and "equal AUROC and AUPR" in md
    assert r"\textbf{UNDERPOWERED}" in render_run(folder, "latex")
    csv_text = render_run(folder, "csv")
    assert ",underpowered" in csv_text.splitlines()[0] and "(fewer than 100)" in csv_text
    # finalize warns on stderr, once, and writes the note into table.md
    from mingle_bench.report.finalize import finalize

    finalize(folder, "aupr", n_boot=0)
    err = capsys.readouterr().err
    assert err.count("UNDERPOWERED") == 1 and str(folder) in err
    assert "UNDERPOWERED" in (folder / "table.md").read_text()


def test_a_powered_folder_has_no_underpowered_note(tmp_path, capsys):
    rng = np.random.default_rng(3)
    y = (rng.random(1500) < 0.2).astype(float)
    folder = _folder(tmp_path, {"mingle": {"probs": [_scores(y, 1.0, 0)]}}, y)
    from mingle_bench.report.finalize import finalize

    finalize(folder, "aupr", n_boot=0)
    assert "UNDERPOWERED" not in (folder / "table.md").read_text() and "UNDERPOWERED" not in capsys.readouterr().err


def test_multilabel_macro_columns_and_older_records(tmp_path):
    rng = np.random.default_rng(4)
    y = (rng.random((200, 4)) < 0.3).astype(float)
    y[:, 3] = 0  # one class in the test set: left out of the macro means, named
    cells = {"mingle": {"probs": [_scores(y, 1.0, s) for s in range(2)]},
             # an older record: no macro metrics in runs.jsonl, computed from its predictions
             "retain": {"probs": [_scores(y, 1.2, s) for s in range(2)], "drop_metrics": ["auroc_macro", "aupr_macro"]}}
    folder = _folder(tmp_path, cells, y)
    md = render_run(folder, "md")
    assert "| AUROC macro " in _header(md) and "| AUPR macro " in _header(md)
    assert "macro AUROC / AUPR: mean over the 3 of 4 labels with both classes in the test set (left out, one class " \
           "only: label3)" in md
    assert "positive cells (smallest label: label3, 0)" in md
    rows = {r["model"]: r for r in aggregate(R.load_runs(folder), folder=folder, split_seed=0)}
    want = np.mean([compute_metrics(y, _scores(y, 1.2, s).astype(np.float32))["auroc_macro"] for s in range(2)])
    assert rows["retain"]["auroc_macro_mean"] == pytest.approx(want, abs=1e-6)
    # without predictions files (e.g. copied runs.jsonl alone) the missing metric is n/a, not an error
    no_files = aggregate(R.load_runs(folder), split_seed=0)
    assert math.isnan({r["model"]: r for r in no_files}["retain"]["auroc_macro_mean"])


def test_one_class_test_set_is_na_with_a_reason_and_never_bold(tmp_path):
    y = np.zeros(150)
    folder = _folder(tmp_path, {"mingle": {"probs": [_scores(y, 1.0, 0)]},
                                "logreg": {"probs": [_scores(y, 0.5, 0)]}}, y)
    md = render_run(folder, "md")
    cols = _cols(md, "mingle")
    assert cols[2] == cols[3] == "n/a" and "**" not in cols[2] + cols[3]
    assert "AUROC, AUPR and their macro means are n/a: the test set holds only one class" in md
    assert "power: not computable" in md


def test_plus_minus_is_over_split_x_seed_cells_when_splits_repeat(tmp_path):
    rng = np.random.default_rng(5)
    y = (rng.random(200) < 0.3).astype(float)
    cells = {"mingle@0": {"probs": [_scores(y, 1.0, s) for s in range(2)]},
             "mingle@1": {"probs": [_scores(y, 1.0, s + 5) for s in range(2)]},
             "logreg@0": {"probs": [_scores(y, 0.5, s) for s in range(2)]},
             "logreg@1": {"probs": [_scores(y, 0.5, s + 5) for s in range(2)]}}
    folder = _folder(tmp_path, cells, y)
    rows = {r["model"]: r for r in aggregate(R.load_runs(folder), folder=folder, split_seed=0)}
    assert rows["mingle"]["n_seeds"] == 4 and rows["mingle"]["split_seeds"] == [0, 1]
    md = render_run(folder, "md")
    assert "mean ± std over split × seed cells (2 split seeds: 0, 1" in md and "split seeds 0, 1;" in md
    assert "| cells " in _header(md) and _cols(md, "mingle")[7] == "4"
    assert "positives (split seed 0; the other split seeds' splits are drawn the same way)" in md


def test_comparison_column_says_what_it_is(tmp_path):
    rng = np.random.default_rng(6)
    y = (rng.random(200) < 0.3).astype(float)
    comp = {"a": "mingle", "b": "retain", "selected_by": "aupr", "baseline_selected_by": "validation aupr",
            "n_boot": 100, "metrics": {"aupr": {"diff": 0.01, "ci_low": -0.02, "ci_high": 0.04, "a_better_seeds": 3,
                                                "n_seeds": 5, "p_not_better": 0.3, "n_valid": 100}}}
    folder = _folder(tmp_path, {"mingle": {"probs": [_scores(y, 1.0, 0)]}, "retain": {"probs": [_scores(y, 1.0, 1)]}},
                     y, comparison=comp)
    md = render_run(folder, "md")
    assert "P(not better)" not in md
    assert "| bootstrap share ≤ 0 " in md and "not a p-value" in md and "0.300" in md


# ------------------------------------------------------------------------------- through the runner


def test_run_on_a_multilabel_task_compares_macro_metrics_too(fakes, tmp_path, capsys):
    from mingle_bench import runner

    cfg = runner.RunConfig(task="phenotype", data="synthetic:small", models=["mingle", "retain"], seeds=[0, 1],
                           out=str(tmp_path), max_steps=2, eval_every=1, patience=2, n_boot=20, progress=False,
                           command="mingle-bench run (test)", reference=None)
    s = runner.run_benchmark(cfg)
    comp = json.loads((s.folder / R.COMPARISON_FILE).read_text())
    assert {"acc", "auroc", "aupr", "f1", "auroc_macro", "aupr_macro"} == set(comp["metrics"])
    assert "not a p-value" in comp["p_not_better_is"]
    md = (s.folder / "table.md").read_text()
    assert "| AUROC macro " in _header(md)
    assert "UNDERPOWERED" in md and "UNDERPOWERED" in capsys.readouterr().err  # 40 test patients
    for r in R.load_runs(s.folder):
        assert {"auroc_macro", "aupr_macro"} <= set(r["metrics"])


def test_paper_tables_carry_counts_macro_columns_and_bold_rules(fakes, tmp_path):
    from mingle_bench import reproduce as RP

    res = RP.reproduce(data="synthetic:small", seeds=[0], out=str(tmp_path), max_steps=2, eval_every=1, patience=2,
                       n_boot=0, progress=False, command="mingle-bench reproduce (test)", reference=None)
    main = (res.folder / "main.md").read_text()
    pheno, cvd = main.split("## cvd (")
    assert "AUROC macro" in pheno and "AUROC macro" not in cvd  # phenotype is multi-label in the fakes
    assert pheno.count("- counts: test") == 1 and cvd.count("- counts: test") == 1
    assert "> **UNDERPOWERED**" in cvd and "detects at 80% power" in cvd and "detects at 80% power" in pheno
    assert "UNDERPOWERED" in (res.folder / "main.tex").read_text()
