"""MEDS round trip: a cohort exported with ``data export --format meds`` and read back with
``--data meds:DIR`` is the same cohort, and every task builds identical samples from it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mingle_bench.data.meds_export import export_meds
from mingle_bench.data.sources import load_source
from mingle_bench.tasks.registry import get_task, list_tasks


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("meds-roundtrip")
    original = load_source("synthetic:small", progress=False)  # the session's cache, shared with other tests
    export_meds(original, root / "meds")
    back = load_source(f"meds:{root / 'meds'}", progress=False)
    return original, back


def _sorted(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return df.sort_values(keys, kind="mergesort").reset_index(drop=True)


def _assert_same_stays(a, b) -> None:
    """Admissions, codes, code texts and note metadata equal (row order aside)."""
    pd.testing.assert_frame_equal(_sorted(a.admissions, ["hadm_id"]), _sorted(b.admissions, ["hadm_id"]))
    keys = ["hadm_id", "code_id", "time", "seq_num"]
    pd.testing.assert_frame_equal(_sorted(a.codes, keys), _sorted(b.codes, keys))
    pd.testing.assert_frame_equal(_sorted(a.code_texts, ["code_id"]), _sorted(b.code_texts, ["code_id"]))
    pd.testing.assert_frame_equal(_sorted(a.notes.drop(columns="n_chars"), ["note_id"]),
                                  _sorted(b.notes.drop(columns="n_chars"), ["note_id"]))


def test_counts_match(pair):
    from mingle_bench.commands.data_cmd import summary

    a, b = (summary(c) for c in pair)
    for key in ("patients", "admissions", "in_hospital_deaths", "diagnoses", "procedures", "prescriptions",
                "services", "notes", "notes_without_admission", "distinct_codes", "ages_capped", "ages_unknown"):
        assert a[key] == b[key], key


def test_tables_match(pair):
    a, b = pair
    pd.testing.assert_frame_equal(_sorted(a.patients, ["patient_id"]), _sorted(b.patients, ["patient_id"]))
    _assert_same_stays(a, b)
    ids = a.notes["note_id"].tolist()
    assert a.read_note_texts(ids) == b.read_note_texts(ids)


@pytest.mark.parametrize("task", list_tasks())
def test_task_samples_identical(pair, task):
    a, b = (get_task(task).build(c) for c in pair)
    pd.testing.assert_frame_equal(a.samples.reset_index(drop=True), b.samples.reset_index(drop=True))
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.input_codes == b.input_codes
    assert a.input_note_ids == b.input_note_ids
    assert a.history == b.history


def test_mimic3_demo_round_trip(mimic3_demo_dir, tmp_path):
    """The real MIMIC-III demo (ODbL), read in place: export, read back, same counts and samples."""
    from mingle_bench.commands.data_cmd import summary

    original = load_source(f"mimic3:{mimic3_demo_dir}", progress=False)
    export_meds(original, tmp_path / "meds")
    back = load_source(f"meds:{tmp_path / 'meds'}", progress=False)
    a, b = summary(original), summary(back)
    for key in ("patients", "admissions", "in_hospital_deaths", "diagnoses", "procedures", "prescriptions",
                "services", "notes", "distinct_codes", "ages_capped", "ages_unknown"):
        assert a[key] == b[key], key
    for task in ("mortality", "readmission"):
        x, y = (get_task(task).build(c) for c in (original, back))
        pd.testing.assert_frame_equal(x.samples.reset_index(drop=True), y.samples.reset_index(drop=True))
        np.testing.assert_array_equal(x.labels, y.labels)
        assert x.input_codes == y.input_codes


def test_mimic4_round_trip(tmp_path):
    """MIMIC-IV (ICD-9 and ICD-10 mixed, timed procedures, string note ids) through MEDS and back."""
    from test_data_mimic4 import make_mimic4

    original = load_source(f"mimic4:{make_mimic4(tmp_path / 'm4')}", progress=False)
    export_meds(original, tmp_path / "meds")
    back = load_source(f"meds:{tmp_path / 'meds'}", progress=False)
    a, b = _sorted(original.patients, ["patient_id"]), _sorted(back.patients, ["patient_id"])
    pd.testing.assert_frame_equal(a.drop(columns="dod"), b.drop(columns="dod"))
    # MEDS has one kind of death event: a patient who died in hospital without a recorded dod
    # gets the day of that death as dod on the way back; a known dod is kept
    known = a["dod"].notna()
    pd.testing.assert_series_equal(a["dod"][known], b["dod"][known])
    died = original.admissions.loc[original.admissions["hospital_expire_flag"] == 1]
    day = died.groupby("patient_id")["deathtime"].min().dt.normalize()
    for pid, when in zip(b["patient_id"][~known], b["dod"][~known]):
        assert (pd.isna(when) and pid not in day.index) or when == day[pid]
    _assert_same_stays(original, back)
    assert {c.split(":")[0] for c in back.codes["code_id"]} >= {"dx9", "dx10"}
