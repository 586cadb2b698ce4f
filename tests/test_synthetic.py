"""Synthetic generator: MIMIC-III format, determinism, realism and the documented latent signal."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from mingle_bench.data.synthetic import HEADERS, LATENTS_FILE, generate
from mingle_bench.data.synthetic_vocab import dx_titles
from mingle_bench.data.sources import data_id, load_source, synthetic_dir


def _digests(d: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


@pytest.fixture(scope="module")
def small():
    return load_source("synthetic:small", progress=False)


@pytest.fixture(scope="module")
def physician(small):
    """Per admission: the concatenated physician admission notes."""
    n = small.notes[small.notes.category == "Physician"]
    texts = small.read_note_texts(n.note_id.tolist())
    n = n.assign(text=n.note_id.map(texts))
    return n.groupby("hadm_id").text.apply(" ".join)


def test_same_seed_byte_identical_and_seed_matters(tmp_path):
    generate(tmp_path / "a", patients=25, seed=3)
    generate(tmp_path / "b", patients=25, seed=3)
    generate(tmp_path / "c", patients=25, seed=4)
    a, b, c = _digests(tmp_path / "a"), _digests(tmp_path / "b"), _digests(tmp_path / "c")
    assert a == b
    assert a["ADMISSIONS.csv"] != c["ADMISSIONS.csv"] and a["NOTEEVENTS.csv"] != c["NOTEEVENTS.csv"]
    assert a["D_ICD_DIAGNOSES.csv"] == c["D_ICD_DIAGNOSES.csv"]  # the dictionary does not depend on the seed


def test_mimic3_file_format(tmp_path):
    generate(tmp_path, patients=12, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{t}.csv" for t in HEADERS] + [LATENTS_FILE])
    for table, cols in HEADERS.items():
        first = (tmp_path / f"{table}.csv").open(encoding="utf-8").readline().rstrip("\n")
        assert first == ",".join(f'"{c}"' for c in cols)  # quoted UPPER-case header as released
    raw = (tmp_path / "NOTEEVENTS.csv").read_text(encoding="utf-8")
    notes = pd.read_csv(tmp_path / "NOTEEVENTS.csv", dtype=str, keep_default_na=False)
    assert raw.count("\n") > len(notes) + 1  # quoted newlines inside TEXT
    assert notes.TEXT.str.contains("\n").all()
    assert set(notes.CATEGORY) <= {"Nursing", "Physician ", "Radiology", "Discharge summary"}
    assert notes.CHARTDATE.str.match(r"^2[12]\d\d-\d\d-\d\d$").all()  # shifted into the 2100s
    ds = notes[notes.CATEGORY == "Discharge summary"]
    assert (ds.CHARTTIME == "").all()  # discharge summaries carry a date only, as in MIMIC-III
    adm = pd.read_csv(tmp_path / "ADMISSIONS.csv", dtype=str, keep_default_na=False)
    assert adm.ADMITTIME.str.match(r"^2[12]\d\d-\d\d-\d\d \d\d:\d\d:\d\d$").all()
    assert set(adm.HOSPITAL_EXPIRE_FLAG) <= {"0", "1"}
    assert (adm.loc[adm.HOSPITAL_EXPIRE_FLAG == "1", "DEATHTIME"] != "").all()
    d = pd.read_csv(tmp_path / "D_ICD_DIAGNOSES.csv", dtype=str)
    assert len(d) == 14567  # the full ICD-9-CM v32 list, like MIMIC-III's dictionary
    assert d.set_index("ICD9_CODE").loc["4280", "LONG_TITLE"] == "Congestive heart failure, unspecified"


def test_generate_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="patients"):
        generate(tmp_path, patients=0)
    with pytest.raises(ValueError, match="seed"):
        generate(tmp_path, patients=3, seed=-1)


def test_small_realism(small):
    a, codes = small.admissions, small.codes
    per_patient = a.groupby("patient_id").size()
    assert 150 <= len(small.patients) == 200
    assert (per_patient >= 2).mean() >= 0.30  # enough multi-admission patients for next-visit tasks
    assert per_patient.max() >= 4
    n = len(a)
    counts = codes.code_type.value_counts()
    assert 8 <= counts["diagnosis"] / n <= 14
    assert 2.5 <= counts["procedure"] / n <= 6
    assert counts["medication"] / n >= 30
    assert 0.05 <= a.hospital_expire_flag.mean() <= 0.2
    died = a[a.hospital_expire_flag == 1]
    assert died.deathtime.notna().all() and (died.deathtime == died.dischtime).all()
    assert a.age_capped.any()
    # every diagnosis is a real ICD-9-CM code with its real title
    titles = dx_titles()
    dx_text = small.code_texts[small.code_texts.code_type == "diagnosis"]
    assert all(titles[cid.split(":")[1]] == t for cid, t in zip(dx_text.code_id, dx_text.text))
    # Zipf-like: a long tail of codes used once or twice
    vc = codes[codes.code_type == "diagnosis"].code_id.value_counts()
    assert (vc <= 2).sum() > 0.4 * len(vc) and vc.iloc[0] > 0.25 * n


def test_small_notes_timing(small):
    a = small.admissions.set_index("hadm_id")
    n = small.notes
    assert set(n.category) == {"Nursing", "Physician", "Radiology", "Discharge summary"}
    assert n.hadm_id.isna().sum() > 0  # notes without HADM_ID, kept per patient
    linked = n[n.hadm_id.notna()]
    adm = a.loc[linked.hadm_id.astype("int64")]
    ds = linked.category.values == "Discharge summary"
    assert (linked.chartdate.values[ds] >= adm.dischtime.dt.normalize().values[ds]).all()
    assert (linked.chartdate.values[ds] > adm.dischtime.values[ds]).any()  # some after the stay's end
    early = linked[~ds & ((linked.charttime - adm.admittime.values) <= pd.Timedelta(hours=48)).values]
    per_adm = early.groupby("hadm_id").size()
    assert 1.3 <= per_adm.reindex(a.index, fill_value=0).mean() <= 3.0
    texts = small.read_note_texts(early.note_id.head(200).tolist())
    words = pd.Series([len(t.split()) for t in texts.values()])
    assert 30 <= words.mean() <= 250
    raw = pd.read_csv(synthetic_dir("small", 0) / "NOTEEVENTS.csv", dtype=str, keep_default_na=False)
    n_err = int((raw.ISERROR == "1").sum())
    assert small.report["skipped"].get("NOTEEVENTS: ISERROR=1 (marked as an error by the hospital)", 0) == n_err
    assert len(n) == len(raw) - n_err


def test_signal_only_in_notes(small, physician):
    """DNR/DNI and social context are written, never coded; DNR raises mortality."""
    a = small.admissions.set_index("hadm_id")
    text = physician.reindex(a.index, fill_value="")
    dnr = text.str.contains("DNR")
    assert 0.03 < dnr.mean() < 0.3
    assert a.hospital_expire_flag[dnr].mean() > 2 * a.hospital_expire_flag[~dnr].mean()
    all_code_text = " ".join(small.code_texts.text).lower()
    assert "do not resuscitate" not in all_code_text and "homeless" not in all_code_text
    lactate = text.str.extract(r"lactate (\d+\.\d)")[0].astype(float)
    ok = lactate.notna()
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(a.hospital_expire_flag[ok], lactate[ok]) > 0.7


def test_signal_in_codes_and_near_synonyms(small, physician):
    codes = small.codes
    dx = codes[codes.code_type == "diagnosis"]
    # CKD is coded far more often than it is named in notes (a codes-mostly signal)
    ckd_coded = dx[dx.code.str.match(r"^(585|403)")].hadm_id.nunique()
    ckd_named = physician.str.contains("chronic kidney disease").sum()
    assert ckd_coded > 2 * ckd_named
    # rare near-synonymous AMI codes (410.x1) beside the common 41071
    ami = dx[dx.code.str.match(r"^410\d1$")].code.value_counts()
    assert ami.index[0] == "41071" and len(ami) >= 5 and (ami.iloc[1:] < 0.3 * ami.iloc[0]).all()
    texts = small.code_texts.set_index("code_id").text
    assert all("myocardial infarction" in texts[f"dx9:{c}"].lower() or "infarction" in texts[f"dx9:{c}"].lower()
               for c in ami.index)


def test_synthetic_source_ids():
    assert data_id("synthetic") == "synthetic-default"
    assert data_id("synthetic:small") == "synthetic-small"
    assert data_id("synthetic:small:7") == "synthetic-small-s7"
    with pytest.raises(ValueError, match="unknown synthetic size"):
        data_id("synthetic:huge")


def test_outcome_is_written_only_in_discharge_summaries(small):
    """No leakage by construction: admission-time notes never state the outcome or the stay's end."""
    n = small.notes
    texts = small.read_note_texts(n.note_id.tolist())
    early = n[n.category != "Discharge summary"].note_id
    words = ("expired", "died", "discharge disposition", "discharge date")
    assert not any(w in texts[i].lower() for i in early for w in words)
    died = set(small.admissions.loc[small.admissions.hospital_expire_flag == 1, "hadm_id"])
    ds = n[(n.category == "Discharge summary") & n.hadm_id.isin(died)].note_id
    assert len(ds) > 0 and all("Expired" in texts[i] for i in ds)
