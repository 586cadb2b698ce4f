"""Sizing a cohort by power: the test split a table needs to tell two models a given AUROC apart."""
from __future__ import annotations

import pytest

from mingle_bench.report.power import ci_halfwidth, required_test_samples


def test_required_test_samples_meets_the_halfwidth_and_is_minimal():
    n = required_test_samples(0.74, 0.55, 0.02, min_minority=300)
    assert ci_halfwidth(0.74, n, 0.55) <= 0.02
    assert ci_halfwidth(0.74, int(n / 1.05), 0.55) > 0.02  # within the search's 2% step of the smallest
    assert 2000 < n < 2600  # the cvd figure in docs/data.md


def test_the_minority_floor_binds_when_the_halfwidth_is_loose():
    n = required_test_samples(0.74, 0.1, 0.2, min_minority=300)
    assert n >= 3000 and round(n * 0.1) >= 300


def test_halfwidth_shrinks_with_samples_and_correlation():
    assert ci_halfwidth(0.74, 4000, 0.5) < ci_halfwidth(0.74, 1000, 0.5)
    assert ci_halfwidth(0.74, 1000, 0.5, rho=0.8) < ci_halfwidth(0.74, 1000, 0.5, rho=0.2)


def test_the_large_preset_is_sized_by_the_calculation():
    from mingle_bench.data.sources import SIZES

    need = required_test_samples(0.74, 0.55, 0.02, min_minority=300)
    # cvd: 0.47 samples per patient, 20% of patients in test (docs/data.md)
    assert SIZES["large"] * 0.2 * 0.47 >= need
    assert SIZES["default"] < SIZES["large"] < SIZES["mimic"]
