"""Patient-level splits: disjoint, seeded, reproducible manifests."""
from __future__ import annotations

import json

import pytest

from mingle_bench.splits import SplitManifest, split_patients

IDS = list(range(1000, 1100))


def test_split_is_patient_level_disjoint_and_7_1_2():
    m = split_patients(IDS, seed=0)
    parts = m.parts()
    assert {k: len(v) for k, v in parts.items()} == {"train": 70, "val": 10, "test": 20}
    assert set(parts["train"]).isdisjoint(parts["val"]) and set(parts["train"]).isdisjoint(parts["test"])
    assert set(parts["val"]).isdisjoint(parts["test"])
    assert set().union(*parts.values()) == set(IDS)


def test_same_seed_same_manifest_different_seed_different():
    a, b, c = split_patients(IDS, seed=3), split_patients(list(reversed(IDS)) + IDS[:5], seed=3), split_patients(IDS, seed=4)
    assert a == b and a.to_json() == b.to_json() and a.sha256 == b.sha256
    assert a.train != c.train and a.sha256 != c.sha256


def test_manifest_is_json_serialisable_and_round_trips(tmp_path):
    m = split_patients(IDS, seed=7)
    text = json.dumps(m.to_json())
    assert SplitManifest.from_json(json.loads(text)) == m
    path = m.save(tmp_path / "split.json")
    assert SplitManifest.load(path) == m
    assert not list(tmp_path.glob(".*.tmp"))


def test_edited_manifest_is_rejected(tmp_path):
    obj = split_patients(IDS, seed=1).to_json()
    obj["test"].append(obj["train"].pop())
    with pytest.raises(ValueError, match="hash does not match"):
        SplitManifest.from_json(obj)


def test_overlap_is_asserted_at_build_time():
    with pytest.raises(AssertionError, match="patient 5 is in both the train and the test split"):
        SplitManifest(seed=0, ratios=(0.7, 0.1, 0.2), train=(1, 5), val=(2,), test=(5,))


def test_bad_ratios_and_missing_files_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="ratios"):
        split_patients(IDS, seed=0, ratios=(0.8, 0.3, 0.1))
    with pytest.raises(FileNotFoundError, match="split manifest not found"):
        SplitManifest.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not a JSON split manifest"):
        SplitManifest.load(tmp_path / "bad.json")


def test_small_cohorts_keep_every_patient():
    for n in range(0, 12):
        m = split_patients(range(n), seed=0)
        assert sum(m.sizes().values()) == n
