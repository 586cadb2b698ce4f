"""MIMIC-IV source on a small generated fixture with the documented v2.x column names."""
from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pandas as pd
import pytest

from mingle_bench.data.mimic4 import load_mimic4
from mingle_bench.data.sources import data_id, load_source

HOSP = {
    "patients": (["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"], [
        [10000032, "F", 52, 2180, "2014 - 2016", "2180-09-09"],
        [10000084, "M", 91, 2160, "2017 - 2019", ""],
        [10000117, "F", 40, 2174, "2008 - 2010", ""],
    ]),
    "admissions": (["subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type",
                    "admit_provider_id", "admission_location", "discharge_location", "insurance", "language",
                    "marital_status", "race", "edregtime", "edouttime", "hospital_expire_flag"], [
        [10000032, 22595853, "2180-05-06 22:23:00", "2180-05-07 17:15:00", "", "URGENT", "P874LG",
         "TRANSFER FROM HOSPITAL", "HOME", "Other", "ENGLISH", "WIDOWED", "WHITE", "2180-05-06 19:17:00",
         "2180-05-06 23:30:00", 0],
        [10000032, 22841357, "2180-06-26 18:27:00", "2180-06-27 18:49:00", "", "EW EMER.", "P09Q6Y",
         "EMERGENCY ROOM", "HOME", "Medicaid", "ENGLISH", "WIDOWED", "WHITE", "", "", 0],
        [10000084, 23052089, "2160-11-21 01:56:00", "2160-11-25 14:52:00", "2160-11-25 14:52:00", "EW EMER.",
         "P6957U", "WALK-IN/SELF REFERRAL", "DIED", "Medicare", "ENGLISH", "MARRIED", "WHITE", "", "", 1],
        [10000117, 22927623, "2181-11-15 02:05:00", "2181-11-15 14:52:00", "", "EU OBSERVATION", "P38TI6",
         "EMERGENCY ROOM", "", "Other", "ENGLISH", "DIVORCED", "WHITE", "", "", 0],
    ]),
    "diagnoses_icd": (["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"], [
        [10000032, 22595853, 1, "5723", 9], [10000032, 22595853, 2, "78959", 9],
        [10000032, 22841357, 1, "07071", 9], [10000032, 22841357, 2, "4019", 9],
        [10000084, 23052089, 1, "G3183", 10], [10000084, 23052089, 2, "I10", 10],
        [10000117, 22927623, 1, "R1013", 10], [10000117, 22927623, 2, "I10", 10],
    ]),
    "procedures_icd": (["subject_id", "hadm_id", "seq_num", "chartdate", "icd_code", "icd_version"], [
        [10000032, 22595853, 1, "2180-05-07", "5491", 9],
        [10000084, 23052089, 1, "2160-11-22", "0DJ08ZZ", 10],
    ]),
    "prescriptions": (["subject_id", "hadm_id", "pharmacy_id", "poe_id", "poe_seq", "order_provider_id", "starttime",
                       "stoptime", "drug_type", "drug", "formulary_drug_cd", "gsn", "ndc", "prod_strength", "form_rx",
                       "dose_val_rx", "dose_unit_rx", "form_val_disp", "form_unit_disp", "doses_per_24_hrs", "route"], [
        [10000032, 22595853, 12775705, "10000032-55", 55, "P85UQ1", "2180-05-07 00:00:00", "2180-05-07 22:00:00",
         "MAIN", "Furosemide", "FURO40I", "008208", "51079007320", "40mg Tab", "", "40", "mg", "1", "TAB", 1, "PO"],
        [10000084, 23052089, 1, "10000084-1", 1, "P1", "2160-11-21 08:00:00", "", "MAIN", "Heparin", "HEPA5I",
         "", "", "5000 Units", "", "5000", "UNIT", "1", "mL", 2, "SC"],
    ]),
    "services": (["subject_id", "hadm_id", "transfertime", "prev_service", "curr_service"], [
        [10000032, 22595853, "2180-05-06 22:24:57", "", "MED"],
        [10000084, 23052089, "2160-11-21 01:57:00", "", "NMED"],
    ]),
    "d_icd_diagnoses": (["icd_code", "icd_version", "long_title"], [
        ["5723", 9, "Portal hypertension"], ["78959", 9, "Other ascites"], ["4019", 9, "Unspecified essential hypertension"],
        ["G3183", 10, "Dementia with Lewy bodies"], ["I10", 10, "Essential (primary) hypertension"],
        ["R1013", 10, "Epigastric pain"],
        # 07071 deliberately missing: kept with the code as its text
    ]),
    "d_icd_procedures": (["icd_code", "icd_version", "long_title"], [
        ["5491", 9, "Percutaneous abdominal drainage"],
        ["0DJ08ZZ", 10, "Inspection of Upper Intestinal Tract, Via Natural or Artificial Opening Endoscopic"],
    ]),
}
NOTES = {
    "discharge": (["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"], [
        ["10000032-DS-21", 10000032, 22595853, "DS", 21, "2180-05-07 00:00:00", "2180-05-09 15:26:00",
         "Name: ___\nChief Complaint: abdominal distension\nDischarge Condition: stable"],
        ["10000084-DS-17", 10000084, 23052089, "DS", 17, "2160-11-25 00:00:00", "", "Patient expired."],
    ]),
    "radiology": (["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"], [
        ["10000032-RR-14", 10000032, 22595853, "RR", 14, "2180-05-06 21:19:00", "2180-05-06 23:32:00",
         "EXAMINATION: CHEST (PA AND LAT)\nIMPRESSION: No acute process."],
        ["10000032-RR-99", 10000032, "", "RR", 99, "2180-04-01 10:00:00", "", "Outpatient ultrasound."],
    ]),
}


def _write(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def make_mimic4(root: Path, with_notes: bool = True) -> Path:
    for t, (h, rows) in HOSP.items():
        _write(root / "hosp" / f"{t}.csv.gz", h, rows)
    if with_notes:
        for t, (h, rows) in NOTES.items():
            _write(root / "note" / f"{t}.csv.gz", h, rows)
    return root


@pytest.fixture(scope="module")
def m4(tmp_path_factory):
    root = make_mimic4(tmp_path_factory.mktemp("mimic4"))
    return root, load_mimic4(root, tmp_path_factory.mktemp("m4out"))


def test_mimic4_counts_and_code_identity(m4):
    _, c = m4
    assert len(c.patients) == 3 and len(c.admissions) == 4
    assert c.admissions["hospital_expire_flag"].tolist().count(1) == 1
    dx = c.codes[c.codes.code_type == "diagnosis"]
    assert len(dx) == 8
    # ICD-9 and ICD-10 are distinct identities; I10 appears under version 10 only
    assert set(dx.code_id) >= {"dx9:4019", "dx10:I10", "dx10:G3183", "dx9:5723"}
    assert set(dx.loc[dx.code == "I10", "icd_version"].astype(int)) == {10}
    px = c.codes[c.codes.code_type == "procedure"]
    assert set(px.code_id) == {"px9:5491", "px10:0DJ08ZZ"}
    assert px.loc[px.code == "5491", "time"].iloc[0] == pd.Timestamp("2180-05-07")
    texts = dict(zip(c.code_texts.code_id, c.code_texts.text))
    assert texts["dx10:I10"] == "Essential (primary) hypertension"
    assert texts["dx9:07071"] == "07071"  # missing from the dictionary: kept, code as text
    assert set(c.codes.loc[c.codes.code_type == "medication", "code_id"]) == {"rx:furosemide", "rx:heparin"}


def test_mimic4_ages_from_anchor(m4):
    _, c = m4
    a = c.admissions.set_index("hadm_id")
    assert a.loc[23052089, "age_capped"] and a.loc[23052089, "age"] == 90.0  # anchor_age 91
    assert 52 <= a.loc[22595853, "age"] < 53.5
    assert not a.loc[22595853, "age_capped"]


def test_mimic4_notes(m4):
    _, c = m4
    n = c.notes
    assert len(n) == 4
    assert set(n.category) == {"Discharge summary", "Radiology"}
    assert n.hadm_id.isna().sum() == 1  # outpatient radiology kept per patient
    texts = c.read_note_texts(n.note_id.tolist())
    assert any("\nChief Complaint" in t for t in texts.values())
    ds = n[n.category == "Discharge summary"]
    assert (ds.note_id < n[n.category == "Radiology"].note_id.min()).all()  # discharge ranked first


def test_mimic4_without_notes_and_missing_hosp(tmp_path):
    root = make_mimic4(tmp_path / "m", with_notes=False)
    c = load_mimic4(root, tmp_path / "out")
    assert len(c.notes) == 0 and "notes" in c.report["info"]
    (root / "hosp" / "services.csv.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"services\.csv\.gz"):
        load_mimic4(root, tmp_path / "out2")
    with pytest.raises(FileNotFoundError, match="hosp/"):
        load_mimic4(tmp_path, tmp_path / "out3")


def test_mimic4_through_load_source(tmp_path):
    root = make_mimic4(tmp_path / "m")
    c = load_source(f"mimic4:{root}", progress=False)
    assert len(c.admissions) == 4
    assert data_id(f"mimic4:{root}").startswith("mimic4-") and len(data_id(f"mimic4:{root}")) == len("mimic4-") + 8


def test_mimic4_strict_integers_and_versions(tmp_path):
    """Non-integer anchors, icd_version 9.4 and a note file beside a differing copy: counted or refused."""
    import copy

    hosp = copy.deepcopy(HOSP)
    hosp["patients"][1][2][2] = "91.5"  # anchor_age not an integer: no dob, age unknown, counted
    hosp["diagnoses_icd"][1][0][4] = "9.4"  # would round to 9
    root = tmp_path / "m"
    for t, (h, rows) in hosp.items():
        _write(root / "hosp" / f"{t}.csv.gz", h, rows)
    c = load_mimic4(root, tmp_path / "out")
    sk = c.report["skipped"]
    assert sk["patients: anchor_age or anchor_year not an integer (dob and age missing)"] == 1
    assert sk["DIAGNOSES_ICD: icd_version missing or not 9/10"] == 1
    assert c.admissions.set_index("hadm_id")["age"].isna().sum() == 1
    assert "ages_unknown" in c.report["info"]
    h, rows = HOSP["services"]
    _write(root / "hosp" / "services.csv.tmp", h, rows[:1])
    (root / "hosp" / "services.csv.tmp").rename(root / "hosp" / "services.csv")  # gzip bytes, other content
    with pytest.raises(ValueError, match=r"ambiguous source for table services"):
        load_mimic4(root, tmp_path / "out2")
