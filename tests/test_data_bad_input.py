"""Bad input: every case gets a clear error naming the file/column, or a counted, reported skip."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pandas as pd
import pytest

from mingle_bench.cli import main
from mingle_bench.data.mimic3 import load_mimic3
from mingle_bench.data.synthetic import generate


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("m3base")
    generate(d, patients=10, seed=5)
    return d


@pytest.fixture
def src(base, tmp_path) -> Path:
    return Path(shutil.copytree(base, tmp_path / "src"))


def read(d: Path, table: str) -> pd.DataFrame:
    return pd.read_csv(d / f"{table}.csv", dtype=str, keep_default_na=False)


def write(d: Path, table: str, df: pd.DataFrame) -> None:
    df.to_csv(d / f"{table}.csv", index=False)


def set_cells(d: Path, table: str, cells: dict[tuple[int, str], str]) -> pd.DataFrame:
    """Overwrite ``{(row, column): value}`` in ``table`` of folder ``d``; returns the original table."""
    df = read(d, table)
    edited = df.copy()
    for (row, col), value in cells.items():
        edited.loc[row, col] = value
    write(d, table, edited)
    return df


def load(d: Path, tmp_path: Path):
    return load_mimic3(d, tmp_path / "out")


def test_missing_folder_and_table_name_expected_files(src, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load(tmp_path / "nope", tmp_path)
    (src / "SERVICES.csv").unlink()
    (src / "NOTEEVENTS.csv").unlink()
    with pytest.raises(FileNotFoundError) as e:
        load(src, tmp_path)
    msg = str(e.value)
    assert "SERVICES.csv or SERVICES.csv.gz" in msg and "NOTEEVENTS.csv or NOTEEVENTS.csv.gz" in msg


def test_missing_column_names_file_and_column(src, tmp_path):
    adm = read(src, "ADMISSIONS").drop(columns=["HOSPITAL_EXPIRE_FLAG"])
    write(src, "ADMISSIONS", adm)
    with pytest.raises(ValueError, match=r"ADMISSIONS\.csv: missing column\(s\) \['hospital_expire_flag'\]"):
        load(src, tmp_path)


@pytest.mark.parametrize("table", ["PRESCRIPTIONS", "NOTEEVENTS"])
def test_truncated_gz_is_an_error_naming_the_file(src, tmp_path, table):
    data = gzip.compress((src / f"{table}.csv").read_bytes())
    (src / f"{table}.csv").unlink()
    (src / f"{table}.csv.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"{table}\.csv\.gz: truncated or corrupt gzip"):
        load(src, tmp_path)


def test_gz_lowercase_headers_and_names_read_the_same(src, base, tmp_path):
    for p in sorted(src.iterdir()):
        text = p.read_text(encoding="utf-8")
        header, rest = text.split("\n", 1)
        with gzip.open(src / (p.stem.lower() + ".csv.gz"), "wt", encoding="utf-8", newline="") as fh:
            fh.write(header.lower() + "\n" + rest)
        p.unlink()
    a = load(src, tmp_path)
    b = load_mimic3(base, tmp_path / "plain")
    for t in ("patients", "admissions", "codes", "notes"):
        pd.testing.assert_frame_equal(getattr(a, t), getattr(b, t))


def test_non_utf8_note_bytes_are_repaired_and_counted(src, tmp_path):
    raw = (src / "NOTEEVENTS.csv").read_bytes()
    notes = read(src, "NOTEEVENTS")
    first = notes.iloc[0]
    bad = (f'999999,{first.SUBJECT_ID},{first.HADM_ID},{first.CHARTDATE},{first.CHARTTIME},,"Nursing",'
           f'"Nursing Progress Note",,,"Pt ').encode() + b"caf\xe9 \xff\xfe ok" + b'"\n'
    (src / "NOTEEVENTS.csv").write_bytes(raw + bad)
    c = load(src, tmp_path)
    assert len(c.notes) == len(notes) - int((notes.ISERROR == "1").sum()) + 1
    # three invalid sequences: a lone Latin-1 e-acute, then 0xFF and 0xFE
    assert c.report["repaired"] == {"NOTEEVENTS: invalid UTF-8 byte sequences replaced with U+FFFD": 3}
    assert c.read_note_texts([999999])[999999] == "Pt caf\ufffd \ufffd\ufffd ok"


def test_quoted_newlines_quotes_and_commas_in_notes(src, tmp_path):
    notes = read(src, "NOTEEVENTS")
    notes.loc[0, "TEXT"] = 'Line one, with a comma\n\nLine "two" said ""hi""\r\nend'
    write(src, "NOTEEVENTS", notes)
    c = load(src, tmp_path)
    nid = int(notes.loc[0, "ROW_ID"])
    assert c.read_note_texts([nid])[nid] == notes.loc[0, "TEXT"]
    kept = notes[notes.ISERROR != "1"]
    assert len(c.notes) == len(kept)
    assert c.notes.n_chars.sum() == kept.TEXT.str.len().sum()


def test_iserror_notes_dropped_and_unlinked_notes_kept(src, tmp_path):
    notes = read(src, "NOTEEVENTS")
    notes["ISERROR"] = ""
    notes.loc[0, "ISERROR"] = "1"
    notes.loc[1, "HADM_ID"] = ""
    write(src, "NOTEEVENTS", notes)
    c = load(src, tmp_path)
    assert c.report["skipped"]["NOTEEVENTS: ISERROR=1 (marked as an error by the hospital)"] == 1
    assert int(notes.loc[0, "ROW_ID"]) not in set(c.notes.note_id)
    kept = c.notes.set_index("note_id").loc[int(notes.loc[1, "ROW_ID"])]
    assert pd.isna(kept.hadm_id) and kept.patient_id == int(notes.loc[1, "SUBJECT_ID"])
    assert len(c.notes) == len(notes) - 1


def test_duplicate_rows_are_counted(src, tmp_path):
    adm = read(src, "ADMISSIONS")
    dup = adm.iloc[[0]].assign(ROW_ID="99990")  # identical but for ROW_ID
    conflict = adm.iloc[[1]].assign(ROW_ID="99991", ADMISSION_TYPE="URGENT X")  # same HADM_ID, other content
    write(src, "ADMISSIONS", pd.concat([adm, dup, conflict]))
    dx = read(src, "DIAGNOSES_ICD")
    write(src, "DIAGNOSES_ICD", pd.concat([dx, dx.iloc[[0]].assign(ROW_ID="99992")]))
    c = load(src, tmp_path)
    sk = c.report["skipped"]
    assert len(c.admissions) == len(adm)
    assert sk["ADMISSIONS: exact duplicate row (all columns but ROW_ID equal)"] == 1
    assert sk["ADMISSIONS: second row for the same hadm_id (earliest admittime kept)"] == 1
    assert sk["DIAGNOSES_ICD: exact duplicate row (all columns but ROW_ID equal)"] == 1
    assert (c.codes.code_type == "diagnosis").sum() == len(dx)


def test_unparseable_dates(src, tmp_path):
    bad_hadm = int(set_cells(src, "ADMISSIONS", {(0, "ADMITTIME"): "not a date"}).loc[0, "HADM_ID"])
    pat = set_cells(src, "PATIENTS", {(1, "DOD"): "2101-13-45 00:00:00"})
    c = load(src, tmp_path)
    sk = c.report["skipped"]
    assert sk["ADMISSIONS: admittime missing, unparseable or out of range"] == 1
    assert bad_hadm not in set(c.admissions.hadm_id)
    n_dx = int((read(src, "DIAGNOSES_ICD").HADM_ID == str(bad_hadm)).sum())
    assert sk["DIAGNOSES_ICD: hadm_id not among kept admissions"] == n_dx
    assert sk["PATIENTS: unparseable or out-of-range dod (set to missing)"] == 1
    assert len(c.patients) == len(pat)


def test_admissions_without_codes_are_kept_and_reported(src, tmp_path):
    adm = read(src, "ADMISSIONS")
    h = adm.loc[0, "HADM_ID"]
    for t in ("DIAGNOSES_ICD", "PROCEDURES_ICD", "PRESCRIPTIONS", "SERVICES"):
        df = read(src, t)
        write(src, t, df[df.HADM_ID != h])
    c = load(src, tmp_path)
    assert int(h) in set(c.admissions.hadm_id)
    assert int(h) not in set(c.codes.hadm_id)
    assert c.report["info"]["admissions_without_codes"].startswith("1 admission(s) have no code")


def test_codes_missing_from_dictionary_keep_code_as_text(src, tmp_path):
    dx = read(src, "DIAGNOSES_ICD")
    extra = dx.iloc[[0]].assign(ROW_ID="99993", SEQ_NUM="99", ICD9_CODE="ZZ123")
    write(src, "DIAGNOSES_ICD", pd.concat([dx, extra]))
    c = load(src, tmp_path)
    texts = dict(zip(c.code_texts.code_id, c.code_texts.text))
    assert texts["dx9:ZZ123"] == "ZZ123"
    assert "1 distinct diagnosis code(s)" in c.report["info"]["diagnosis_codes_missing_from_dictionary"]


def test_empty_noteevents(src, tmp_path):
    header = (src / "NOTEEVENTS.csv").read_text(encoding="utf-8").split("\n", 1)[0]
    (src / "NOTEEVENTS.csv").write_text(header + "\n", encoding="utf-8")
    c = load(src, tmp_path)
    assert len(c.notes) == 0 and c.report["read"]["NOTEEVENTS"] == 0
    assert c.read_note_texts([]) == {}
    assert list(c.iter_note_texts([])) == []


def test_negative_and_zero_length_stays_are_skipped(src, tmp_path):
    adm = read(src, "ADMISSIONS")
    adm.loc[0, "DISCHTIME"] = "2000-01-01 00:00:00"
    adm.loc[1, "DISCHTIME"] = adm.loc[1, "ADMITTIME"]
    write(src, "ADMISSIONS", adm)
    c = load(src, tmp_path)
    sk = c.report["skipped"]
    assert sk["ADMISSIONS: negative stay (dischtime before admittime)"] == 1
    assert sk["ADMISSIONS: zero-length stay (dischtime equals admittime)"] == 1
    assert len(c.admissions) == len(adm) - 2
    assert ((c.admissions.dischtime - c.admissions.admittime) > pd.Timedelta(0)).all()
    assert sk["NOTEEVENTS: hadm_id not among kept admissions"] > 0


def test_malformed_lines_and_bad_ids_are_counted(src, tmp_path):
    with open(src / "PRESCRIPTIONS.csv", "a", encoding="utf-8") as fh:
        fh.write("123,456\n")  # too few columns
    pat = read(src, "PATIENTS")
    write(src, "PATIENTS", pd.concat([pat, pat.iloc[[0]].assign(ROW_ID="99994", SUBJECT_ID="abc")]))
    adm = read(src, "ADMISSIONS")
    adm.loc[0, "HADM_ID"] = adm.loc[0, "HADM_ID"] + ".0"  # float-style export of an integer id: accepted
    write(src, "ADMISSIONS", adm)
    c = load(src, tmp_path)
    assert int(adm.loc[0, "HADM_ID"][:-2]) in set(c.admissions.hadm_id)
    sk = c.report["skipped"]
    assert sk["PRESCRIPTIONS: unparseable CSV line (missing columns)"] == 1
    assert sk["PATIENTS: subject_id missing or not an integer"] == 1
    assert len(c.patients) == len(pat)


def test_cli_errors_have_no_traceback(src, tmp_path, capsys):
    (src / "ADMISSIONS.csv").unlink()
    rc = main(["data", "info", "--data", f"mimic3:{src}", "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 1 and "ADMISSIONS.csv or ADMISSIONS.csv.gz" in err and "Traceback" not in err
    rc = main(["data", "info", "--data", "synthetic:huge"])
    assert rc == 1 and "unknown synthetic size" in capsys.readouterr().err


# --- no silent data changes ----------------------------------------------------------------------


def _gz_with_bad_crc(data: bytes) -> bytes:
    """A complete gzip stream whose CRC-32 trailer does not match its content."""
    gz = bytearray(gzip.compress(data))
    gz[-8] ^= 0xFF  # first byte of the CRC-32 trailer
    return bytes(gz)


def test_gz_with_wrong_crc_is_an_error_naming_the_file(src, tmp_path):
    data = (src / "ADMISSIONS.csv").read_bytes()
    (src / "ADMISSIONS.csv").unlink()
    (src / "ADMISSIONS.csv.gz").write_bytes(_gz_with_bad_crc(data))
    with pytest.raises(ValueError, match=r"ADMISSIONS\.csv\.gz: truncated or corrupt gzip file \(.*CRC") as e:
        load(src, tmp_path)
    assert "\n" not in str(e.value)


def test_gz_with_wrong_length_is_an_error(src, tmp_path):
    gz = bytearray(gzip.compress((src / "SERVICES.csv").read_bytes()))
    gz[-4] ^= 0x01  # ISIZE trailer
    (src / "SERVICES.csv").unlink()
    (src / "SERVICES.csv.gz").write_bytes(bytes(gz))
    with pytest.raises(ValueError, match=r"SERVICES\.csv\.gz: truncated or corrupt gzip file"):
        load(src, tmp_path)


def test_ambiguous_csv_and_gz_are_refused_naming_both(src, tmp_path):
    adm = read(src, "ADMISSIONS")
    (src / "ADMISSIONS.csv.gz").write_bytes(gzip.compress(adm.iloc[:-1].to_csv(index=False).encode()))
    with pytest.raises(ValueError, match=r"ambiguous source for table ADMISSIONS: .*ADMISSIONS\.csv and "
                                         r".*ADMISSIONS\.csv\.gz") as e:
        load(src, tmp_path)
    assert "\n" not in str(e.value)


def test_ambiguous_case_variants_are_refused(src, tmp_path):
    if (src / "admissions.csv").exists():  # case-insensitive file system: cannot hold both
        pytest.skip("case-insensitive file system")
    adm = read(src, "ADMISSIONS")
    adm.iloc[:-1].to_csv(src / "admissions.csv", index=False)
    with pytest.raises(ValueError, match=r"ambiguous source for table ADMISSIONS: .*ADMISSIONS\.csv and .*admissions\.csv"):
        load(src, tmp_path)
    rc = main(["data", "info", "--data", f"mimic3:{src}", "--cache-dir", str(tmp_path / "cache")])
    assert rc == 1


def test_identical_csv_and_gz_copies_are_accepted(src, base, tmp_path):
    (src / "ADMISSIONS.csv.gz").write_bytes(gzip.compress((src / "ADMISSIONS.csv").read_bytes()))
    a = load(src, tmp_path)
    b = load_mimic3(base, tmp_path / "plain")
    pd.testing.assert_frame_equal(a.admissions, b.admissions)


def test_lenient_ids_and_flags_are_rejected_and_counted(src, tmp_path):
    adm = read(src, "ADMISSIONS")
    n = len(adm)
    adm.loc[0, "HADM_ID"] = adm.loc[0, "HADM_ID"] + ".4"  # would round
    adm.loc[1, "HADM_ID"] = hex(int(adm.loc[1, "HADM_ID"]))  # hex
    adm.loc[2, "SUBJECT_ID"] = adm.loc[2, "SUBJECT_ID"][:1] + "_" + adm.loc[2, "SUBJECT_ID"][1:]  # underscore
    alive = adm.index[(adm.HOSPITAL_EXPIRE_FLAG == "0") & (adm.index > 2)][0]
    adm.loc[alive, "HOSPITAL_EXPIRE_FLAG"] = "0.6"  # must not become a death
    write(src, "ADMISSIONS", adm)
    dx = read(src, "DIAGNOSES_ICD")
    dx.loc[len(dx) - 1, "SEQ_NUM"] = "1.5"
    write(src, "DIAGNOSES_ICD", dx)
    c = load(src, tmp_path)
    sk, rep = c.report["skipped"], c.report["repaired"]
    assert sk["ADMISSIONS: hadm_id or subject_id missing or not an integer"] == 3
    assert len(c.admissions) == n - 3
    assert rep["ADMISSIONS: hospital_expire_flag missing or not exactly 0/1, derived from deathtime"] == 1
    row = c.admissions.set_index("hadm_id").loc[int(adm.loc[alive, "HADM_ID"])]
    assert row.hospital_expire_flag == 0  # no deathtime: not a death
    assert sk["DIAGNOSES_ICD: seq_num not an integer (set to missing)"] == 1


def test_flag_and_deathtime_inconsistencies_are_reported(src, tmp_path):
    adm = read(src, "ADMISSIONS")
    alive = adm.index[adm.HOSPITAL_EXPIRE_FLAG == "0"][0]
    adm.loc[alive, "DEATHTIME"] = adm.loc[alive, "DISCHTIME"]
    dead = adm.index[adm.HOSPITAL_EXPIRE_FLAG == "1"]
    if len(dead) == 0:
        dead = adm.index[adm.HOSPITAL_EXPIRE_FLAG == "0"][1:2]
        adm.loc[dead, "HOSPITAL_EXPIRE_FLAG"] = "1"
    adm.loc[dead[0], "DEATHTIME"] = ""
    write(src, "ADMISSIONS", adm)
    c = load(src, tmp_path)
    rep = c.report["repaired"]
    assert rep["ADMISSIONS: hospital_expire_flag 0 with a deathtime (deathtime dropped, the flag decides)"] == 1
    assert rep["ADMISSIONS: hospital_expire_flag 1 without a deathtime (kept as a death, deathtime missing)"] == 1
    a = c.admissions.set_index("hadm_id")
    r0 = a.loc[int(adm.loc[alive, "HADM_ID"])]
    assert r0.hospital_expire_flag == 0 and pd.isna(r0.deathtime)
    r1 = a.loc[int(adm.loc[dead[0], "HADM_ID"])]
    assert r1.hospital_expire_flag == 1 and pd.isna(r1.deathtime)


def test_out_of_range_dates_are_counted_not_fatal(src, tmp_path):
    adm = set_cells(src, "ADMISSIONS", {(0, "ADMITTIME"): "3012-01-01 00:00:00"})
    pat = set_cells(src, "PATIENTS", {(0, "DOD"): "3012-05-05 00:00:00"})
    set_cells(src, "PRESCRIPTIONS", {(0, "STARTDATE"): "3012-05-05 00:00:00"})
    c = load(src, tmp_path)
    sk = c.report["skipped"]
    assert sk["ADMISSIONS: admittime missing, unparseable or out of range"] == 1
    assert sk["PATIENTS: unparseable or out-of-range dod (set to missing)"] == 1
    assert sk["PRESCRIPTIONS: unparseable or out-of-range starttime (set to missing)"] == 1
    assert len(c.admissions) == len(adm) - 1 and len(c.patients) == len(pat)


def test_cr_only_line_endings_are_named(src, tmp_path, capsys):
    text = (src / "SERVICES.csv").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r")
    (src / "SERVICES.csv").write_bytes(text)
    with pytest.raises(ValueError, match=r"SERVICES\.csv: CR-only line endings"):
        load(src, tmp_path)
    rc = main(["data", "info", "--data", f"mimic3:{src}", "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 1 and "CR-only line endings" in err and "Traceback" not in err and "_csv" not in err


def test_gzip_bytes_in_a_csv_file_are_named(src, tmp_path, capsys):
    (src / "PATIENTS.csv").write_bytes(gzip.compress((src / "PATIENTS.csv").read_bytes()))
    with pytest.raises(ValueError, match=r"PATIENTS\.csv: gzip-compressed data in a file named \.csv"):
        load(src, tmp_path)
    rc = main(["data", "info", "--data", f"mimic3:{src}", "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 1 and "gzip-compressed" in err and "Traceback" not in err


def test_duplicate_hadm_keeps_the_earliest_admission(src, tmp_path):
    adm = read(src, "ADMISSIONS")
    later = adm.iloc[[0]].assign(ROW_ID="99995", ADMISSION_TYPE="LATER COPY")
    earlier = adm.iloc[[0]].assign(ROW_ID="99996", ADMISSION_TYPE="EARLIER COPY",
                                   ADMITTIME=(pd.Timestamp(adm.loc[0, "ADMITTIME"]) - pd.Timedelta(hours=1))
                                   .strftime("%Y-%m-%d %H:%M:%S"))
    write(src, "ADMISSIONS", pd.concat([adm, later, earlier]))  # the earliest row comes last in the file
    c = load(src, tmp_path)
    assert c.report["skipped"]["ADMISSIONS: second row for the same hadm_id (earliest admittime kept)"] == 2
    assert c.admissions.set_index("hadm_id").loc[int(adm.loc[0, "HADM_ID"]), "admission_type"] == "EARLIER COPY"


def test_non_utf8_repair_counts_rows_once(src, tmp_path):
    raw = (src / "NOTEEVENTS.csv").read_bytes()
    n = len(read(src, "NOTEEVENTS"))
    first = read(src, "NOTEEVENTS").iloc[0]
    bad = (f'999999,{first.SUBJECT_ID},{first.HADM_ID},{first.CHARTDATE},{first.CHARTTIME},,"Nursing",'
           f'"Nursing Progress Note",,,"Pt ').encode() + b"caf\xe9 ok" + b'"\n'
    (src / "NOTEEVENTS.csv").write_bytes(raw + bad)
    c = load(src, tmp_path)
    assert c.report["read"]["NOTEEVENTS"] == n + 1
    assert not any(k.startswith("NOTEEVENTS: unparseable CSV line") for k in c.report["skipped"])
    assert c.report["repaired"] == {"NOTEEVENTS: invalid UTF-8 byte sequences replaced with U+FFFD": 1}


def test_info_json_has_ages_unknown(src, tmp_path, capsys):
    import json

    pat = read(src, "PATIENTS")
    pat.loc[0, "DOB"] = ""
    write(src, "PATIENTS", pat)
    rc = main(["data", "info", "--json", "--data", f"mimic3:{src}", "--cache-dir", str(tmp_path / "cache")])
    info = json.loads(capsys.readouterr().out)
    n = int((read(src, "ADMISSIONS").SUBJECT_ID == pat.loc[0, "SUBJECT_ID"]).sum())
    assert rc == 0 and info["ages_unknown"] == n and n > 0
