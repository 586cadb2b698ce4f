"""MIMIC-III source on the real PhysioNet demo (read in place from ../shared), with exact counts."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from mingle_bench.data.cohort import Cohort
from mingle_bench.data.sources import data_id, load_source

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def demo(mimic3_demo_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("demo-cache")
    return mimic3_demo_dir, cache, load_source(f"mimic3:{mimic3_demo_dir}", cache_dir=cache, progress=False)


def test_demo_exact_counts(demo):
    d, _, c = demo
    assert len(c.patients) == 100
    assert len(c.admissions) == 129
    assert int(c.admissions.hospital_expire_flag.sum()) == 40
    dx = c.codes[c.codes.code_type == "diagnosis"]
    assert len(dx) == 1761
    assert dx.code_id.nunique() == 581
    # cross-check against an independent read of the file
    raw = pd.read_csv(d / "DIAGNOSES_ICD.csv", dtype=str)
    assert len(raw) == 1761 and raw.icd9_code.nunique() == 581
    assert c.report["read"]["ADMISSIONS"] == 129


def test_demo_types_and_contract(demo):
    _, _, c = demo
    c.validate()
    assert c.admissions.hospital_expire_flag.dtype == "int8"
    assert set(c.admissions.hospital_expire_flag.unique()) == {0, 1}
    # deathtime only for in-hospital deaths
    assert c.admissions.deathtime.notna().sum() <= 40
    assert c.admissions.loc[c.admissions.hospital_expire_flag == 0, "deathtime"].isna().all()
    # ICD-9 without a dot, ids by type
    dx = c.codes[c.codes.code_type == "diagnosis"]
    assert not dx.code.str.contains(r"\.").any()
    assert (dx.code_id == "dx9:" + dx.code).all()
    assert set(c.codes.code_type) == {"diagnosis", "procedure", "medication", "service"}
    assert c.codes.code_id.str.match(r"^(dx9|px9|rx|svc):").all()
    assert set(c.code_texts.code_id) == set(c.codes.code_id)
    texts = dict(zip(c.code_texts.code_id, c.code_texts.text))
    assert texts["dx9:4019"] == "Unspecified essential hypertension"
    assert texts["svc:MED"] == "General medical"


def test_demo_ages_capped(demo):
    _, _, c = demo
    a = c.admissions
    assert a.age.max() == 90.0
    assert a.age_capped.sum() == 9 and (a.loc[a.age_capped, "age"] == 90.0).all()
    assert (a.loc[~a.age_capped, "age"] < 90).all() and (a.age > 0).all()
    assert "ages_capped" in c.report["info"]


def test_demo_empty_noteevents(demo):
    _, cache, c = demo
    assert len(c.notes) == 0
    assert c.read_note_texts([]) == {}
    assert c.report["read"]["NOTEEVENTS"] == 0
    assert c.notes_text_path is not None


def test_demo_cache_is_reused_and_report_saved(demo):
    d, cache, c = demo
    folders = list((cache / "cohorts").iterdir())
    assert len(folders) == 1
    rep = json.loads((folders[0] / "load_report.json").read_text())
    assert rep["read"]["DIAGNOSES_ICD"] == 1761
    again = load_source(f"mimic3:{d}", cache_dir=cache, progress=False)
    assert again.source_id == c.source_id
    pd.testing.assert_frame_equal(again.codes, c.codes)
    assert list((cache / "cohorts").iterdir()) == folders
    assert Cohort.load(folders[0]).admissions.shape == (129, 9)
    assert data_id(f"mimic3:{d}", cache_dir=cache) == "mimic3-" + c.source_id[:8]


def test_demo_skips_are_counted(demo):
    _, _, c = demo
    skipped = c.report["skipped"]
    # the demo has repeated prescription rows and one procedure coded twice per admission
    assert skipped["PRESCRIPTIONS: exact duplicate row (all columns but ROW_ID equal)"] > 0
    kept_rx = int((c.codes.code_type == "medication").sum())
    assert kept_rx + skipped["PRESCRIPTIONS: exact duplicate row (all columns but ROW_ID equal)"] == \
        c.report["read"]["PRESCRIPTIONS"]
