"""Metrics against values computed by hand (the paper's definitions, mingle_bench.metrics)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mingle_bench.metrics import (HIGHER_IS_BETTER, METRIC_LABELS, METRIC_NAMES, compute_metrics,
                                  expected_calibration_error, is_better, macro_label_count)

# 4 visits x 2 labels
Y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
P = np.array([[0.9, 0.2], [0.4, 0.6], [0.3, 0.8], [0.1, 0.7]])


def test_multilabel_hand_computed():
    m = compute_metrics(Y, P)
    # predictions at 0.5: [[1,0],[0,1],[0,1],[0,1]] -> 6 of 8 cells right
    assert m["acc"] == pytest.approx(6 / 8)
    # flattened: positives {.9,.8,.6,.3}, negatives {.7,.4,.2,.1}: 13 of 16 pairs ordered
    assert m["auroc"] == pytest.approx(13 / 16)
    # ranking P P N P N P N N: AP = (1 + 1 + 3/4 + 4/6) / 4
    assert m["aupr"] == pytest.approx((1 + 1 + 0.75 + 4 / 6) / 4)
    # macro over labels: label 0 F1 = 2/3 (P=1, R=1/2), label 1 F1 = 0.8 (P=2/3, R=1)
    assert m["f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    # squared errors sum to 1.40 over 8 cells
    assert m["brier"] == pytest.approx(1.40 / 8)
    # 10 bins: every cell falls in its own bin -> mean |y - p| = 2.8 / 8
    assert m["ece"] == pytest.approx(2.8 / 8)


def test_ece_two_bins_perfectly_calibrated():
    # bin (0, .5]: p mean .25, y mean .25; bin (.5, 1]: p mean .75, y mean .75
    assert expected_calibration_error(Y, P, n_bins=2) == pytest.approx(0.0)


def test_binary_f1_is_macro_over_both_classes():
    y = np.array([1, 0, 1, 0, 0])
    p = np.array([0.8, 0.3, 0.4, 0.6, 0.1])
    m = compute_metrics(y, p)
    assert m["acc"] == pytest.approx(3 / 5)
    # positive-class F1 = 0.5, negative-class F1 = 2/3
    assert m["f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    # [n] and [n, 1] and torch inputs agree
    assert compute_metrics(y[:, None], p[:, None]) == pytest.approx(m)
    assert compute_metrics(torch.tensor(y), torch.tensor(p)) == pytest.approx(m)


def test_threshold_changes_acc_only_for_threshold_metrics():
    a = compute_metrics(Y, P, threshold=0.5)
    b = compute_metrics(Y, P, threshold=0.75)
    assert a["auroc"] == b["auroc"] and a["aupr"] == b["aupr"]
    # at 0.75: preds [[1,0],[0,0],[0,1],[0,0]] -> wrong: (1,1),(2,0) -> 6/8
    assert b["acc"] == pytest.approx(6 / 8)


def test_undefined_metrics_are_nan_not_errors():
    m = compute_metrics(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4]))
    assert math.isnan(m["auroc"]) and math.isnan(m["aupr"])
    assert m["acc"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "y,p,msg",
    [
        (np.zeros(3), np.zeros(4), "does not match"),
        (np.array([0, 1, 2]), np.zeros(3), "0/1"),
        (np.array([0, 1]), np.array([0.5, np.nan]), "non-finite"),
        (np.array([0, 1]), np.array([-2.0, 3.0]), "probabilities"),
        (np.zeros(0), np.zeros(0), "empty"),
    ],
)
def test_bad_input_gives_clear_error(y, p, msg):
    with pytest.raises(ValueError, match=msg):
        compute_metrics(y, p)


def test_is_better_direction():
    assert is_better("auroc", 0.8, 0.7) and not is_better("auroc", 0.7, 0.8)
    assert is_better("brier", 0.1, 0.2)
    assert not is_better("acc", math.nan, 0.1) and is_better("acc", 0.1, math.nan)


@pytest.mark.parametrize("n_labels", [1, 4])
def test_bootstrap_fast_metrics_equal_sklearn_definitions(n_labels):
    from mingle_bench.report.comparison import fast_metric

    rng = np.random.default_rng(n_labels)
    y = (rng.random((60, n_labels)) < 0.3).astype(float)
    p = np.round(rng.random((60, n_labels)), 1)  # rounded: many ties
    ref = compute_metrics(y, p)
    for m in ("acc", "auroc", "aupr", "f1", "brier", "auroc_macro", "aupr_macro"):
        assert fast_metric(m, y, p) == pytest.approx(ref[m], abs=1e-12), m


def test_macro_metrics_hand_computed():
    m = compute_metrics(Y, P)
    # label 0: positives {.9,.3}, negatives {.4,.1}: 3 of 4 pairs; label 1: positives {.6,.8},
    # negatives {.2,.7}: 3 of 4 pairs
    assert m["auroc_macro"] == pytest.approx(0.75)
    # label 0 ranked P N P N: AP = (1 + 2/3) / 2; label 1 ranked P N P N: the same
    assert m["aupr_macro"] == pytest.approx(5 / 6)
    assert macro_label_count(Y) == 2


def test_macro_metrics_skip_one_class_labels_and_equal_sklearn():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(3)
    y = (rng.random((80, 5)) < 0.3).astype(int)
    y[:, 2] = 0  # no positive: left out of both means
    y[:, 4] = 1  # no negative: left out too
    p = np.round(rng.random((80, 5)), 2)
    m = compute_metrics(y, p)
    assert macro_label_count(y) == 3
    assert m["auroc_macro"] == pytest.approx(np.mean([roc_auc_score(y[:, k], p[:, k]) for k in (0, 1, 3)]), abs=1e-12)
    assert m["aupr_macro"] == pytest.approx(np.mean([average_precision_score(y[:, k], p[:, k]) for k in (0, 1, 3)]),
                                            abs=1e-12)
    # no label with both classes: nan, not an error
    m = compute_metrics(np.zeros((4, 2)), np.full((4, 2), 0.3))
    assert math.isnan(m["auroc_macro"]) and math.isnan(m["aupr_macro"])


def test_binary_macro_metrics_equal_the_plain_ones():
    y = np.array([1, 0, 1, 0, 0])
    p = np.array([0.8, 0.3, 0.4, 0.6, 0.1])
    m = compute_metrics(y, p)
    assert m["auroc_macro"] == m["auroc"] and m["aupr_macro"] == m["aupr"]
    assert macro_label_count(y) == 1


def test_macro_metrics_are_registered():
    for name in ("auroc_macro", "aupr_macro"):
        assert name in METRIC_NAMES and HIGHER_IS_BETTER[name] is True and "macro" in METRIC_LABELS[name]
    assert set(compute_metrics(Y, P)) == set(METRIC_NAMES)


def test_macro_means_equal_sklearn_on_many_tied_random_cases():
    from sklearn.metrics import average_precision_score, roc_auc_score

    from mingle_bench.metrics import macro_aupr, macro_auroc

    rng = np.random.default_rng(7)
    for _ in range(100):
        n, L = int(rng.integers(2, 40)), int(rng.integers(2, 6))
        y = (rng.random((n, L)) < rng.random()).astype(float)
        p = np.round(rng.random((n, L)), int(rng.integers(0, 3)))  # 0 decimals: scores 0/1, heavy ties
        keep = [k for k in range(L) if 0 < y[:, k].sum() < n]
        if not keep:
            assert math.isnan(macro_auroc(y, p)) and math.isnan(macro_aupr(y, p))
            continue
        assert macro_auroc(y, p) == pytest.approx(np.mean([roc_auc_score(y[:, k], p[:, k]) for k in keep]), abs=1e-12)
        assert macro_aupr(y, p) == pytest.approx(np.mean([average_precision_score(y[:, k], p[:, k]) for k in keep]),
                                                 abs=1e-12)


@pytest.mark.parametrize("n_labels", [1, 6])
def test_weighted_bootstrap_metrics_equal_the_metrics_of_the_resampled_arrays(n_labels):
    """boot_metric computes every resample from row multiplicities; it must give the values of
    fast_metric on the resampled arrays themselves (ties, one-class resamples and all)."""
    from mingle_bench.report.comparison import boot_counts, boot_metric, cluster_bootstrap, fast_metric

    rng = np.random.default_rng(7)
    n = 120
    y = (rng.random((n, n_labels)) < 0.15).astype(float)
    p = np.round(rng.random((n, n_labels)), 1)  # many ties
    boots = cluster_bootstrap(rng.integers(0, 40, n), 60, seed=3)
    counts = boot_counts(boots, n)
    for m in ("acc", "auroc", "aupr", "f1", "brier", "ece", "auroc_macro", "aupr_macro"):
        got = boot_metric(m, y, p, counts)
        want = np.array([fast_metric(m, y[i], p[i]) for i in boots])
        assert np.array_equal(np.isnan(got), np.isnan(want)), m
        np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=0, atol=1e-12, err_msg=m)


def test_model_ci_is_the_seed_mean_and_its_bootstrap_percentiles():
    from mingle_bench.report.comparison import boot_counts, cluster_bootstrap, fast_metric, model_ci, seed_draws

    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.3).astype(float)
    probs = {s: np.clip(y * 0.3 * (s + 1) + rng.random(200) * 0.7, 0, 1) for s in (0, 1, 2)}
    boots = cluster_bootstrap(np.arange(200), 200, seed=0)
    counts = boot_counts(boots, 200)
    ci = model_ci(y, probs, counts, ("auroc",))["auroc"]
    assert ci["value"] == pytest.approx(np.mean([fast_metric("auroc", y[:, None], p[:, None]) for p in probs.values()]))
    # two levels: per draw, the seeds drawn with replacement, then the patient resample
    picks = seed_draws(200, 3, 0)
    draws = [np.mean([fast_metric("auroc", y[i][:, None], probs[k][i][:, None]) for k in pick])
             for i, pick in zip(boots, picks)]
    assert (ci["ci_low"], ci["ci_high"]) == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])))
    assert ci["ci_low"] < ci["value"] < ci["ci_high"] and ci["n_valid"] == 200
    # the patient level alone: the seed mean on each resample
    fixed = model_ci(y, probs, counts, ("auroc",), resample_seeds=False)["auroc"]
    draws = [np.mean([fast_metric("auroc", y[i][:, None], p[i][:, None]) for p in probs.values()]) for i in boots]
    assert (fixed["ci_low"], fixed["ci_high"]) == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])))
    assert ci["ci_high"] - ci["ci_low"] > fixed["ci_high"] - fixed["ci_low"]  # the seeds differ a lot here


def test_paired_ci_covers_the_training_seeds_not_only_the_patients():
    """Seed 0 of A is far better than B, seed 1 far worse: the patient-only CI (seeds fixed) sits
    tightly around the mean difference, the two-level CI spans both seeds' differences. With one
    seed the two CIs agree."""
    from mingle_bench.report.comparison import RESAMPLE_PATIENTS, RESAMPLE_SEEDS_PATIENTS, paired_comparison

    rng = np.random.default_rng(1)
    n = 600
    y = (rng.random(n) < 0.3).astype(float)
    noise = rng.random(n)
    good, bad, mid = (np.clip(y * w + noise * (1 - w), 0, 1) for w in (0.6, 0.05, 0.3))
    comp = paired_comparison(y, {0: good, 1: bad}, {0: mid, 1: mid}, groups=np.arange(n), metrics=("auroc",),
                             n_boot=400)
    res = comp["metrics"]["auroc"]
    assert comp["resample"] == RESAMPLE_SEEDS_PATIENTS
    d0, d1 = res["per_seed"]["0"], res["per_seed"]["1"]
    assert d0 > 0.05 and d1 < -0.05
    lo_p, hi_p = res["ci_patients"]
    assert lo_p <= res["diff"] <= hi_p and hi_p - lo_p < 0.5 * (d0 - d1)
    assert res["ci_low"] < lo_p and res["ci_high"] > hi_p
    assert res["ci_low"] <= d1 + 0.02 and res["ci_high"] >= d0 - 0.02
    fixed = paired_comparison(y, {0: good, 1: bad}, {0: mid, 1: mid}, groups=np.arange(n), metrics=("auroc",),
                              n_boot=400, resample_seeds=False)
    assert fixed["resample"] == RESAMPLE_PATIENTS
    assert [fixed["metrics"]["auroc"]["ci_low"], fixed["metrics"]["auroc"]["ci_high"]] == pytest.approx([lo_p, hi_p])
    one = paired_comparison(y, {0: good}, {0: mid}, groups=np.arange(n), metrics=("auroc",), n_boot=200)
    r1 = one["metrics"]["auroc"]
    assert one["resample"] == RESAMPLE_PATIENTS and [r1["ci_low"], r1["ci_high"]] == pytest.approx(r1["ci_patients"])
