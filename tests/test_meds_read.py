"""``--data meds:DIR``: a small MEDS folder written with pyarrow, read into a cohort exactly; the
interval (no ``hadm_id``) variant, a YAML mapping override, each bad input (named error or
counted skip) and ``--split meds``."""
from __future__ import annotations

import json
from datetime import datetime as D
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mingle_bench.data.meds import load_meds, locate_meds
from mingle_bench.data.meds_mapping import load_mapping
from mingle_bench.data.sources import data_id, load_source, parse_spec

COLS = {"subject_id": pa.int64(), "time": pa.timestamp("us"), "code": pa.string(), "numeric_value": pa.float32(),
        "text_value": pa.large_string(), "hadm_id": pa.int64()}


def E(s, t, code, h=None, **kw) -> dict:
    return {"subject_id": s, "time": t, "code": code, "hadm_id": h, **kw}


def write_meds(root: Path, rows: list[dict], *, hadm: bool = True, shards: int = 2, codes: dict | None = None,
               splits: dict | None = None, cols: dict | None = None) -> Path:
    """A MEDS folder: ``rows`` cut into ``shards`` data files, codes.parquet, subject_splits.parquet."""
    cols = dict(cols or COLS)
    if not hadm:
        cols.pop("hadm_id")
    (root / "data" / "train").mkdir(parents=True, exist_ok=True)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    table = pa.table({c: pa.array([r.get(c) for r in rows], type=t) for c, t in cols.items()})
    cut = np.linspace(0, len(rows), shards + 1).astype(int)
    for i in range(shards):
        pq.write_table(table.slice(cut[i], cut[i + 1] - cut[i]), root / "data" / "train" / f"{i}.parquet")
    (root / "metadata" / "dataset.json").write_text(json.dumps({"dataset_name": "tiny", "dataset_version": "1"}))
    codes = {"DIAGNOSIS//ICD//9//4019": "Hypertension NOS", "PROCEDURE//ICD//9//3893": "Venous cath NEC",
             "DIAGNOSIS//ICD//10//I10": "Essential hypertension"} if codes is None else codes
    pq.write_table(pa.table({"code": pa.array(list(codes), pa.string()),
                             "description": pa.array(list(codes.values()), pa.string()),
                             "parent_codes": pa.array([[] for _ in codes], pa.list_(pa.string()))}),
                   root / "metadata" / "codes.parquet")
    if splits is not None:
        pq.write_table(pa.table({"subject_id": pa.array(list(splits), pa.int64()),
                                 "split": pa.array(list(splits.values()), pa.string())}),
                       root / "metadata" / "subject_splits.parquet")
    return root


ROWS = [
    E(1, None, "GENDER//F"), E(1, D(2100, 1, 1), "MEDS_BIRTH"),
    E(1, D(2150, 1, 1, 8), "HOSPITAL_ADMISSION//EMERGENCY//ER", 10),
    E(1, D(2150, 1, 1, 9), "PROCEDURE//ICD//9//3893", 10),
    E(1, D(2150, 1, 1, 10), "MEDICATION//START//Heparin", 10),
    E(1, D(2150, 1, 1, 12), "MEDICATION//STOP//Heparin", 10),
    E(1, D(2150, 1, 2, 10), "LAB//51221//%", 10, numeric_value=30.0),
    E(1, D(2150, 1, 3, 10), "NOTE//Discharge summary", 10, text_value="pt doing well"),
    E(1, D(2150, 1, 3, 10), "DIAGNOSIS//ICD//9//4019", 10),
    E(1, D(2150, 1, 3, 10), "DIAGNOSIS//ICD//9//25000", 10),
    E(1, D(2150, 1, 3, 10), "HOSPITAL_DISCHARGE//HOME", 10),
    E(1, D(2151, 6, 1), "NOTE//Radiology", None, text_value="chest clear"),   # in no admission: kept, no hadm
    E(2, None, "GENDER//M"), E(2, D(2090, 5, 5), "MEDS_BIRTH"),
    E(2, D(2140, 2, 1), "HOSPITAL_ADMISSION//ELECTIVE", 20),
    E(2, D(2140, 2, 2), "DIAGNOSIS//ICD//10//I10", 20),
    E(2, D(2140, 2, 3), "MEDS_DEATH", 20),
    E(2, D(2140, 2, 3), "HOSPITAL_DISCHARGE//UNK", 20),
    E(3, D(2080, 1, 1), "MEDS_BIRTH"),
    E(3, D(2079, 1, 1), "DIAGNOSIS//ICD//9//4019"),                           # before birth: skipped
    E(3, D(2120, 3, 1), "HOSPITAL_ADMISSION//URGENT"),                       # no hadm_id: paired by time
    E(3, D(2120, 3, 1, 6), "SERVICE//MED"),
    E(3, D(2120, 3, 4), "HOSPITAL_DISCHARGE//DIED"),
]
SPLITS = {1: "train", 2: "tuning", 3: "held_out"}


@pytest.fixture(scope="module")
def meds_dir(tmp_path_factory) -> Path:
    return write_meds(tmp_path_factory.mktemp("meds") / "tiny", ROWS, splits=SPLITS)


@pytest.fixture(scope="module")
def cohort(meds_dir, tmp_path_factory):
    return load_meds(meds_dir, tmp_path_factory.mktemp("out"), source="meds:tiny")


def test_locate(meds_dir, tmp_path):
    files = locate_meds(meds_dir)
    assert list(files) == ["data/train/0.parquet", "data/train/1.parquet", "metadata/dataset.json",
                           "metadata/codes.parquet", "metadata/subject_splits.parquet"]
    with pytest.raises(FileNotFoundError, match="MEDS folder not found"):
        locate_meds(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="lacks the data/ sub-folder"):
        locate_meds(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(FileNotFoundError, match="no parquet shard"):
        locate_meds(tmp_path)


def test_cohort_tables(cohort):
    p = cohort.patients
    assert p["patient_id"].tolist() == [1, 2, 3]
    assert p["sex"].tolist() == ["F", "M", ""]
    assert p["dob"].tolist() == [pd.Timestamp(2100, 1, 1), pd.Timestamp(2090, 5, 5), pd.Timestamp(2080, 1, 1)]
    assert p["dod"].isna().tolist() == [True, False, True] and p["dod"][1] == pd.Timestamp(2140, 2, 3)

    a = cohort.admissions.set_index("hadm_id")
    assert a.index.tolist() == [10, 20, 21]  # 21: the id-less admission, numbered after the largest hadm_id
    assert a["patient_id"].tolist() == [1, 2, 3]
    assert a["admission_type"].tolist() == ["EMERGENCY", "ELECTIVE", "URGENT"]
    assert a.loc[10, "admittime"] == pd.Timestamp(2150, 1, 1, 8) and a.loc[10, "dischtime"] == pd.Timestamp(2150, 1, 3, 10)
    assert a["hospital_expire_flag"].tolist() == [0, 1, 1]
    assert a.loc[20, "deathtime"] == pd.Timestamp(2140, 2, 3)          # the MEDS_DEATH (linked by hadm_id)
    assert a.loc[21, "deathtime"] == pd.Timestamp(2120, 3, 4)          # HOSPITAL_DISCHARGE//DIED: the discharge
    assert pd.isna(a.loc[10, "deathtime"])

    c = cohort.codes
    got = {(int(r.hadm_id), r.code_id): (None if pd.isna(r.time) else r.time) for r in c.itertuples()}
    assert got == {
        (10, "dx9:25000"): None, (10, "dx9:4019"): None,                # diagnoses are untimed
        (10, "px9:3893"): pd.Timestamp(2150, 1, 1, 9), (10, "rx:heparin"): pd.Timestamp(2150, 1, 1, 10),
        (20, "dx10:I10"): None, (21, "svc:MED"): pd.Timestamp(2120, 3, 1, 6),
    }
    texts = dict(zip(cohort.code_texts["code_id"], cohort.code_texts["text"]))
    assert texts == {"dx9:25000": "25000", "dx9:4019": "Hypertension NOS", "px9:3893": "Venous cath NEC",
                     "rx:heparin": "heparin", "dx10:I10": "Essential hypertension", "svc:MED": "General medical"}

    n = cohort.notes
    assert n["category"].tolist() == ["Discharge summary", "Radiology"]
    assert n["hadm_id"].tolist()[0] == 10 and pd.isna(n["hadm_id"].tolist()[1])
    assert n["charttime"].tolist()[0] == pd.Timestamp(2150, 1, 3, 10)
    assert cohort.read_note_texts(n["note_id"].tolist()) == dict(zip(n["note_id"].tolist(), ["pt doing well", "chest clear"]))

    assert cohort.subject_splits.to_dict("list") == {"subject_id": [1, 2, 3], "split": ["train", "tuning", "held_out"]}


def test_report(cohort):
    rep = cohort.report
    assert rep["read"] == {"MEDS events": len(ROWS)}
    assert rep["skipped"] == {"MEDS: event before the subject's MEDS_BIRTH": 1}
    assert rep["info"]["meds_first_offending"] == {"MEDS: event before the subject's MEDS_BIRTH": "data/train/1.parquet row 8"}
    assert rep["info"]["meds_codes_not_used"] == {"LAB": 1, "MEDICATION": 1}
    assert "1 medication event(s) match medication_exclude" in rep["info"]["meds_medication_excluded"]
    assert rep["info"]["meds_codes_without_description"].startswith("1 diagnosis/procedure code(s) in use")
    assert "e.g. dx9:25000" in rep["info"]["meds_codes_without_description"]
    assert "1 note(s) fall in no admission" in rep["info"]["meds_notes_without_admission"]
    assert rep["kept"] == {"patients": 3, "admissions": 3, "codes": 6, "code_texts": 6, "notes": 2}


def test_interval_variant_without_hadm_id(tmp_path):
    c = load_meds(write_meds(tmp_path / "m", ROWS, hadm=False), tmp_path / "out")
    a = c.admissions
    assert a["hadm_id"].tolist() == [1, 2, 3]                           # ids by (subject, admit time)
    assert a["patient_id"].tolist() == [1, 2, 3] and a["hospital_expire_flag"].tolist() == [0, 1, 1]
    assert sorted(zip(c.codes["hadm_id"], c.codes["code_id"])) == [
        (1, "dx9:25000"), (1, "dx9:4019"), (1, "px9:3893"), (1, "rx:heparin"), (2, "dx10:I10"), (3, "svc:MED")]
    assert c.notes["hadm_id"].tolist()[0] == 1 and c.subject_splits is None
    assert c.report["skipped"] == {"MEDS: event before the subject's MEDS_BIRTH": 1}


def test_mapping_override_yaml(tmp_path):
    rows = [E(1, D(2100, 1, 1), "MEDS_BIRTH"), E(1, D(2150, 1, 1), "ADMIT//X"),
            E(1, D(2150, 1, 2), "DX//9//4019"), E(1, D(2150, 1, 3), "DISCH")]
    root = write_meds(tmp_path / "m", rows, hadm=False, codes={"DX//9//4019": "Hypertension NOS"})
    cfg = tmp_path / "map.yaml"
    cfg.write_text('admission: "^ADMIT(?://(?P<admission_type>.*))?$"\ndischarge: "^DISCH$"\n'
                   'diagnosis: "^DX//(?P<version>[0-9]+)//(?P<code>.+)$"\nuntimed: []\n')
    c = load_meds(root, tmp_path / "out", mapping=load_mapping(cfg))
    assert c.admissions["admission_type"].tolist() == ["X"]
    assert c.codes["code_id"].tolist() == ["dx9:4019"] and c.codes["time"].tolist() == [pd.Timestamp(2150, 1, 2)]
    assert c.code_texts["text"].tolist() == ["Hypertension NOS"]
    assert c.report["info"]["meds_mapping"] == str(cfg)
    # the default mapping reads none of these codes; the cache keys differ
    cache = tmp_path / "cache"
    assert parse_spec(f"meds:{root};config={cfg}") == ("meds", f"{root};config={cfg}", 0)
    ids = {data_id(f"meds:{root}", cache), data_id(f"meds:{root};config={cfg}", cache)}
    assert len(ids) == 2 and all(i.startswith("meds-") and len(i) == 13 for i in ids)
    assert load_source(f"meds:{root};config={cfg}", cache, progress=False).codes["code_id"].tolist() == ["dx9:4019"]


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    ({"drop": "code"}, r"0\.parquet: missing column 'code'"),
    ({"subject_id": pa.string()}, r"0\.parquet: column 'subject_id' has type string, expected an integer"),
    ({"time": pa.string()}, r"0\.parquet: column 'time' has type string, expected a timestamp"),
    ({"code": pa.int64()}, r"0\.parquet: column 'code' has type int64, expected a string"),
    ({"hadm_id": pa.string()}, r"0\.parquet: column 'hadm_id' has type string, expected an integer"),
])
def test_bad_schema_is_one_line_error(tmp_path, change, message):
    cols = dict(COLS)
    rows = [dict(r) for r in ROWS[:3]]
    if "drop" in change:
        cols.pop(change["drop"])
    else:
        (col, typ), = change.items()
        cols[col] = typ
        for r in rows:
            r[col] = None if r[col] is None else (str(r[col]) if typ == pa.string() else 7)
    root = write_meds(tmp_path / "m", rows, shards=1, cols=cols)
    with pytest.raises(ValueError, match=message) as exc:
        load_meds(root, tmp_path / "out")
    assert "\n" not in str(exc.value)


def _load(tmp_path, rows, **kw):
    return load_meds(write_meds(tmp_path / "m", rows, shards=1, **kw), tmp_path / "out")


def test_admission_without_discharge_and_orphans_are_counted(tmp_path):
    rows = [E(1, D(2150, 1, 1), "HOSPITAL_ADMISSION//A", 5), E(1, D(2150, 1, 2), "DIAGNOSIS//ICD//9//4019", 5),
            E(1, D(2150, 2, 1), "HOSPITAL_DISCHARGE//HOME", 6), E(None, D(2150, 1, 1), "DIAGNOSIS//ICD//9//4019", 5),
            E(1, D(2150, 1, 1), None, 5), E(1, D(2160, 1, 1), "PROCEDURE//ICD//9//3893")]
    c = _load(tmp_path, rows)
    assert len(c.admissions) == 0
    sk = c.report["skipped"]
    assert sk["MEDS: admission without a discharge"] == 1
    assert sk["MEDS: discharge event closing no kept admission"] == 1
    assert sk["MEDS: event with a null subject_id"] == 1 and sk["MEDS: event with a null code"] == 1
    assert sk["MEDS: procedure event in no admission"] == 1
    assert sk["DIAGNOSES_ICD: hadm_id not among kept admissions"] == 1    # its hadm_id names the dropped admission
    first = c.report["info"]["meds_first_offending"]
    assert first["MEDS: admission without a discharge"] == "data/train/0.parquet row 0"
    assert first["MEDS: event with a null subject_id"] == "data/train/0.parquet row 3"


@pytest.mark.parametrize("hadm", [True, False])
def test_overlapping_admissions_keep_the_earlier(tmp_path, hadm):
    rows = [E(1, D(2150, 1, 1), "HOSPITAL_ADMISSION//A", 1), E(1, D(2150, 1, 3), "HOSPITAL_ADMISSION//B", 2),
            E(1, D(2150, 1, 5), "HOSPITAL_DISCHARGE//HOME", 1), E(1, D(2150, 1, 6), "HOSPITAL_DISCHARGE//HOME", 2),
            E(1, D(2150, 1, 6), "HOSPITAL_ADMISSION//C", 3), E(1, D(2150, 1, 8), "HOSPITAL_DISCHARGE//HOME", 3)]
    c = _load(tmp_path, rows, hadm=hadm)
    assert c.admissions["admission_type"].tolist() == ["A", "C"]           # C starts when B ended: B dropped, C kept
    reason = "MEDS: admission overlapping an earlier admission of the same subject (the earlier kept)"
    assert c.report["skipped"][reason] == 1
    assert c.report["info"]["meds_first_offending"][reason] == "data/train/0.parquet row 1"


def test_split_mode_errors(tmp_path, cohort):
    from mingle_bench.features import meds_assignment

    assert meds_assignment(cohort) == {1: "train", 2: "val", 3: "test"}
    no_splits = _load(tmp_path / "a", ROWS[:3])
    with pytest.raises(ValueError, match="--split meds: .* has no MEDS subject splits"):
        meds_assignment(no_splits)
    odd = _load(tmp_path / "b", ROWS[:3], splits={1: "dev"})
    with pytest.raises(ValueError, match=r"split name\(s\) \['dev'\]"):
        meds_assignment(odd)


# -- --split meds end to end ----------------------------------------------------------------------
def _population(n: int = 30) -> list[dict]:
    rows = []
    for s in range(1, n + 1):
        rows += [E(s, None, "GENDER//" + "FM"[s % 2]), E(s, D(2080, 1, 1), "MEDS_BIRTH")]
        for k in range(2):
            h, t0 = s * 10 + k, D(2150 + k, 1 + s % 12, 1)
            rows += [E(s, t0, "HOSPITAL_ADMISSION//EMERGENCY", h),
                     E(s, t0.replace(day=2), "DIAGNOSIS//ICD//9//" + ("4019" if s % 3 else "I10"), h),
                     E(s, t0.replace(day=2), "MEDICATION//START//Aspirin", h),
                     E(s, t0.replace(day=6), "HOSPITAL_DISCHARGE//" + ("DIED" if (s % 4 == 0 and k) else "HOME"), h)]
    return rows


def test_split_meds_gives_the_meds_split(tmp_path, capsys):
    from mingle_bench.features import prepare_visits

    splits = {s: ("train" if s <= 20 else "tuning" if s <= 25 else "held_out") for s in range(1, 30)}  # 30: none
    root = write_meds(tmp_path / "m", _population(), splits=splits)
    cohort = load_source(f"meds:{root}", tmp_path / "cache", progress=False)
    vt = prepare_visits(cohort, "mortality", split="meds")
    assert vt.manifest.method == "meds" and vt.manifest.seed == -1
    assert vt.manifest.train == tuple(range(1, 21)) and vt.manifest.val == tuple(range(21, 26))
    assert vt.manifest.test == tuple(range(26, 30))
    assert 30 not in set(vt.samples["patient_id"])
    assert vt.report["split"]["method"] == "meds" and vt.report["split"]["samples_without_meds_split"] == 2
    assert vt.task_samples.report["excluded"]["patient without a MEDS subject split (--split meds)"] == 2
    assert "2 sample(s) of 1 patient(s) without a MEDS subject split dropped" in capsys.readouterr().err
    rnd = prepare_visits(cohort, "mortality")
    assert rnd.manifest.method == "random" and len(rnd.samples) == len(vt.samples) + 2
    assert "method" not in rnd.manifest.to_json() and "method" not in rnd.report["split"]


def test_results_folder_and_flags(tmp_path, monkeypatch, meds_dir):
    from mingle_bench import pipeline as P
    from mingle_bench.cli import main

    monkeypatch.setenv("MINGLE_CACHE", str(tmp_path / "cache"))
    rid = P.results_data_id(f"meds:{meds_dir}", "meds")
    assert rid == P.source_data_id(f"meds:{meds_dir}") + "-meds-split"
    assert P.results_data_id("synthetic:small") == "synthetic-small"
    with pytest.raises(P.RunError, match="--split must be one of random, meds"):
        P.results_data_id("synthetic:small", "kfold")
    # --meds-config on a non-MEDS source is a one-line error
    assert main(["task", "show", "--task", "mortality", "--data", "synthetic:small", "--meds-config", "x.yaml"]) == 1


def test_data_info_json(tmp_path, monkeypatch, meds_dir, capsys):
    from mingle_bench.cli import main

    monkeypatch.setenv("MINGLE_CACHE", str(tmp_path / "cache"))
    assert main(["data", "info", "--data", f"meds:{meds_dir}", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["source"] == f"meds:{meds_dir}" and out["read"] == {"MEDS events": len(ROWS)}
    assert out["skipped"] == {"MEDS: event before the subject's MEDS_BIRTH": 1}
    assert (out["patients"], out["admissions"], out["in_hospital_deaths"], out["notes"]) == (3, 3, 2, 2)


@pytest.mark.parametrize("hadm", [True, False])
def test_note_and_death_with_null_hadm_inside_a_stay(tmp_path, hadm):
    """With a hadm_id column a null hadm_id on a note or a death means no admission (MIMIC notes
    without HADM_ID; the patient-level date of death); without the column, both are linked by time."""
    rows = [E(1, D(2150, 1, 1), "HOSPITAL_ADMISSION//A", 4), E(1, D(2150, 1, 2), "NOTE//Radiology", None,
                                                              text_value="x"),
            E(1, D(2150, 1, 3, 12), "MEDS_DEATH"), E(1, D(2150, 1, 4), "HOSPITAL_DISCHARGE//UNK", 4)]
    c = _load(tmp_path, rows, hadm=hadm)
    assert (pd.isna(c.notes["hadm_id"].iloc[0])) is hadm
    assert c.admissions["hospital_expire_flag"].tolist() == [0 if hadm else 1]
    assert c.admissions["deathtime"].isna().tolist() == [hadm]
    assert c.patients["dod"].tolist() == [pd.Timestamp(2150, 1, 3)]


def test_date_only_death_after_a_live_discharge_is_not_in_hospital(tmp_path):
    """MIMIC's dod is a date: a patient discharged alive at 14:00 who died that evening has a
    midnight MEDS_DEATH inside the stay; with a hadm_id column that never makes the stay fatal."""
    rows = [E(1, D(2150, 1, 1, 9), "HOSPITAL_ADMISSION//A", 4), E(1, D(2150, 1, 3), "MEDS_DEATH"),
            E(1, D(2150, 1, 3, 14), "HOSPITAL_DISCHARGE//HOSPICE", 4),
            E(2, D(2150, 2, 1, 9), "HOSPITAL_ADMISSION//A", 5), E(2, D(2150, 2, 2, 8), "MEDS_DEATH", 5),
            E(2, D(2150, 2, 2, 8), "HOSPITAL_DISCHARGE//DIED", 5)]
    c = _load(tmp_path, rows, hadm=True)
    adm = c.admissions.set_index("hadm_id")
    assert adm.loc[4, "hospital_expire_flag"] == 0 and pd.isna(adm.loc[4, "deathtime"])
    assert adm.loc[5, "hospital_expire_flag"] == 1 and adm.loc[5, "deathtime"] == pd.Timestamp(2150, 2, 2, 8)
    assert c.patients.set_index("patient_id")["dod"].tolist() == [pd.Timestamp(2150, 1, 3), pd.Timestamp(2150, 2, 2)]


def test_run_records_the_meds_split(fakes, tmp_path):
    """run --split meds: its own results folder, and the split mode in config.json and every record."""
    from mingle_bench import pipeline as P
    from mingle_bench import runner

    seen = []
    build = P.build_features
    P_set = pytest.MonkeyPatch()
    P_set.setattr(P, "build_features", lambda *a, **k: seen.append(k.get("split")) or build(*a, **k))
    try:
        cfg = dict(task="mortality", data="meds:x", models=["mingle"], seeds=[0], out=str(tmp_path), max_steps=2,
                   eval_every=1, patience=2, n_boot=0, progress=False, reference=None)
        s = runner.run_benchmark(runner.RunConfig(**cfg, split="meds"))
        r = runner.run_benchmark(runner.RunConfig(**cfg))
    finally:
        P_set.undo()
    assert seen == ["meds", "random"]
    assert s.folder.name == "meds-x-meds-split" and r.folder.name == "meds-x"
    conf = json.loads((s.folder / "config.json").read_text())
    assert conf["split"] == "meds" and conf["data_id"] == "meds-x-meds-split"
    rec = json.loads((s.folder / "runs.jsonl").read_text().splitlines()[0])
    assert rec["config"]["split"] == "meds"
    assert "split" not in json.loads((r.folder / "config.json").read_text())
