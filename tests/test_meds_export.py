"""``data export --format meds``: a cohort written as a MEDS 0.4 dataset (schemas, order,
counts, reproducibility, the output folder rules). The read-back round trip is tested in
tests/test_meds_roundtrip.py."""
from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import meds
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mingle_bench.cli import main
from mingle_bench.data.meds_export import check_out_dir, data_schema, dataset_name, export_meds, subject_splits
from mingle_bench.data.sources import load_source

SHARD = 60  # synthetic:small has 200 patients: 4 shards


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("meds-export-cache")


@pytest.fixture(scope="module")
def cohort(cache):
    return load_source("synthetic:small", cache_dir=cache, progress=False)


@pytest.fixture(scope="module")
def exported(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("meds-export") / "meds"
    counts = export_meds(cohort, out, shard_size=SHARD)
    return out, counts


def _shards(out: Path) -> list[Path]:
    return sorted((out / meds.data_subdirectory).glob("*.parquet"))


@pytest.fixture(scope="module")
def events(exported) -> pd.DataFrame:
    out, _ = exported
    frames = [pq.read_table(p).to_pandas().assign(shard=i) for i, p in enumerate(_shards(out))]
    return pd.concat(frames, ignore_index=True)


def test_layout_and_schemas(exported):
    out, counts = exported
    shards = _shards(out)
    assert [p.name for p in shards] == ["0.parquet", "1.parquet", "2.parquet", "3.parquet"]
    assert counts["shards"] == 4 and counts["subjects"] == 200
    for p in shards:
        table = pq.read_table(p)
        meds.DataSchema.validate(table)
        assert table.schema.remove_metadata().equals(data_schema()), p.name
    codes = pq.read_table(out / meds.code_metadata_filepath)
    meds.CodeMetadataSchema.validate(codes)
    splits = pq.read_table(out / meds.subject_splits_filepath)
    meds.SubjectSplitSchema.validate(splits)
    meta = json.loads((out / meds.dataset_metadata_filepath).read_text())
    meds.DatasetMetadataSchema.validate(meta)
    assert "created_at" not in meta
    assert meta["dataset_name"] == "synthetic:small" and meta["etl_name"] == "mingle-bench"
    assert meta["meds_version"] == importlib.metadata.version("meds")


def test_subjects_contiguous_and_sorted(events):
    # each subject in exactly one shard, subjects ascending over the shards read in name order
    assert (events.groupby("subject_id")["shard"].nunique() == 1).all()
    starts = events["subject_id"].ne(events["subject_id"].shift())
    assert starts.sum() == events["subject_id"].nunique()  # contiguous
    assert events["subject_id"].is_monotonic_increasing
    for _, g in events.groupby("subject_id", sort=False):
        t = g["time"]
        n_static = int(t.isna().sum())
        assert t.iloc[:n_static].isna().all(), "static events come first"
        assert t.iloc[n_static:].is_monotonic_increasing
    static = events[events["time"].isna()]
    assert static["code"].str.startswith("GENDER//").all()


def test_counts_equal_the_cohort(cohort, events, exported):
    _, counts = exported
    code = events["code"]
    adm = cohort.admissions
    codes = cohort.codes
    assert (code.str.startswith("HOSPITAL_ADMISSION")).sum() == len(adm) == counts["admission"]
    assert (code.str.startswith("HOSPITAL_DISCHARGE//")).sum() == len(adm)
    assert (code == "HOSPITAL_DISCHARGE//DIED").sum() == int(adm["hospital_expire_flag"].sum())
    deaths = events[(code == "MEDS_DEATH") & events["hadm_id"].notna()]
    assert len(deaths) == int(adm["hospital_expire_flag"].sum()) == counts["death_in_hospital"]
    for prefix, family in (("DIAGNOSIS//ICD//", "diagnosis"), ("PROCEDURE//ICD//", "procedure"),
                           ("MEDICATION//START//", "medication"), ("SERVICE//", "service")):
        assert code.str.startswith(prefix).sum() == (codes["code_type"] == family).sum() == counts[family], family
    notes = events[code.str.startswith("NOTE//")]
    assert len(notes) == len(cohort.notes) == counts["note"]
    assert (code == "MEDS_BIRTH").sum() == cohort.patients["dob"].notna().sum()
    assert code.str.startswith("GENDER//").sum() == (cohort.patients["sex"].astype(str).str.strip() != "").sum()
    assert counts["events"] == len(events)
    # stand-in times are marked: codes without a time, notes with only a chart date
    assert (~events["time_known"]).sum() == codes["time"].isna().sum() + cohort.notes["charttime"].isna().sum()
    assert counts["codes_time_from_discharge"] == codes["time"].isna().sum()
    # every code written is described once in codes.parquet
    meta = pd.read_parquet(exported[0] / meds.code_metadata_filepath)
    assert sorted(meta["code"]) == sorted(code.unique()) and meta["code"].is_unique
    desc = dict(zip(meta["code"], meta["description"]))
    assert desc["NOTE//Nursing"] == "Nursing"
    row = codes[codes["code_type"] == "diagnosis"].iloc[0]
    text = cohort.code_texts.set_index("code_id")["text"][row["code_id"]]
    assert desc[f"DIAGNOSIS//ICD//{int(row['icd_version'])}//{row['code']}"] == text


def test_events_carry_the_cohort_values(cohort, events):
    notes = events[events["code"].str.startswith("NOTE//")].set_index("note_id")
    first = cohort.notes.iloc[:5]
    texts = cohort.read_note_texts(first["note_id"].tolist())
    for r in first.itertuples():
        e = notes.loc[r.note_id]
        assert e["text_value"] == texts[r.note_id]
        assert e["note_description"] == r.description and e["code"] == f"NOTE//{r.category}"
        assert bool(e["time_known"]) == pd.notna(r.charttime)
        assert e["time"] == (r.charttime if pd.notna(r.charttime) else r.chartdate)
    without = events[events["code"].str.startswith("NOTE//") & events["hadm_id"].isna()]
    assert len(without) == cohort.notes["hadm_id"].isna().sum()
    dx = events[events["code"].str.startswith("DIAGNOSIS//")]
    assert dx["seq_num"].notna().all() and dx["hadm_id"].notna().all()
    disch = cohort.admissions.set_index("hadm_id")["dischtime"]
    untimed = dx[~dx["time_known"]]
    assert (untimed["time"].to_numpy() == disch.loc[untimed["hadm_id"].astype("int64")].to_numpy()).all()


def test_splits(cohort, exported):
    out, counts = exported
    splits = pd.read_parquet(out / meds.subject_splits_filepath)
    assert splits["subject_id"].is_unique and len(splits) == 200
    assert set(splits["split"]) == {meds.train_split, meds.tuning_split, meds.held_out_split}
    assert (counts["split_train"], counts["split_tuning"], counts["split_held_out"]) == (140, 20, 40)

    class WithSplits:  # a cohort that carries its own split
        patients = cohort.patients
        subject_splits = pd.DataFrame({"subject_id": cohort.patients["patient_id"], "split": "train"})

    own = subject_splits(WithSplits(), cohort.patients["patient_id"].to_numpy())
    assert (own["split"] == "train").all() and len(own) == 200


def test_export_is_byte_reproducible(cohort, exported, tmp_path):
    first, _ = exported
    again = tmp_path / "again"
    export_meds(cohort, again, shard_size=SHARD)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for f in files:
        assert (first / f).read_bytes() == (again / f).read_bytes(), f


def test_out_dir_rules(cohort, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="--out .*out: folder is not empty; pass --force"):
        export_meds(cohort, out)
    with pytest.raises(ValueError, match="not a MEDS export"):
        export_meds(cohort, out, force=True)  # --force never deletes what is not an export
    assert (out / "keep.txt").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        check_out_dir(tmp_path / "file")
    with pytest.raises(ValueError, match="--shard-size"):
        export_meds(cohort, tmp_path / "new", shard_size=0)
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_dataset_name_drops_machine_paths():
    assert dataset_name("synthetic:small") == "synthetic:small"
    assert dataset_name("mimic3:/data/physionet/mimic-iii-1.4/") == "mimic3:mimic-iii-1.4"
    assert dataset_name("meds:/x/y/meds;config=/x/m.json") == "meds:meds"


def test_cli_export(cache, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["data", "export", "--data", "synthetic:small", "--format", "meds", "--out", str(out),
            "--cache-dir", str(cache)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"--data meds:{out}" in printed and "note events" in printed and "shards" in printed
    assert len(_shards(out)) == 1
    assert main(argv) == 1
    assert f"--out {out}: folder is not empty" in capsys.readouterr().err
    assert main(argv + ["--force", "--shard-size", "100"]) == 0
    assert len(_shards(out)) == 2
    capsys.readouterr()
    assert main(argv[:-2] + ["--out", str(tmp_path / "x"), "--meds-config", "m.json"]) == 1
    assert "--meds-config applies to --data meds:DIR only" in capsys.readouterr().err
    assert np.all([p.name != "x" for p in tmp_path.iterdir()])
