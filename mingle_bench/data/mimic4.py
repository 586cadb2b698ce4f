"""MIMIC-IV v2.x source: ``DIR/hosp/*.csv[.gz]`` plus the optional MIMIC-IV-Note module
``DIR/note/discharge.csv[.gz]`` and ``DIR/note/radiology.csv[.gz]`` -> :class:`Cohort`.

Differences from MIMIC-III handled here:

- ICD-9 and ICD-10 are mixed: ``icd_version`` is part of the code identity (``dx9:4019``,
  ``dx10:I10``, ``px10:0DTJ4ZZ``) and of the dictionary join.
- There is no date of birth: ``age = anchor_age + (year(admittime) - anchor_year)`` in spirit;
  the cohort's ``dob`` is approximated as 1 January of ``anchor_year - anchor_age`` (so ages
  can be off by up to a year). ``anchor_age`` is 91 for everyone over 89: capped to 90 and
  flagged like MIMIC-III.
- Procedures carry a ``chartdate`` (kept as the code time); prescriptions use ``starttime``.
- Notes: MIMIC-IV note ids are strings (``10000032-DS-21``); the cohort's int64 ``note_id`` is
  their rank ordered by (file, note id): discharge notes first, then radiology. ``category`` is
  "Discharge summary" (note_type DS) or "Radiology" (RR/AR), ``description`` the note_type;
  the note module has only charttime, so ``chartdate`` is its day. Without ``note/`` the
  cohort simply has no notes (reported).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from mingle_bench.data.build import _int, assemble
from mingle_bench.data.cohort import Cohort
from mingle_bench.data.csvio import CsvReader, connect, expected_names, find_table, locate_tables
from mingle_bench.data.report import LoadReport

MIMIC4_HOSP: dict[str, tuple[str, ...]] = {
    "patients": ("subject_id", "gender", "anchor_age", "anchor_year", "dod"),
    "admissions": ("subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type",
                   "hospital_expire_flag"),
    "diagnoses_icd": ("subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"),
    "procedures_icd": ("subject_id", "hadm_id", "seq_num", "chartdate", "icd_code", "icd_version"),
    "prescriptions": ("subject_id", "hadm_id", "starttime", "drug"),
    "services": ("subject_id", "hadm_id", "transfertime", "curr_service"),
    "d_icd_diagnoses": ("icd_code", "icd_version", "long_title"),
    "d_icd_procedures": ("icd_code", "icd_version", "long_title"),
}
MIMIC4_NOTES: dict[str, tuple[str, ...]] = {
    "discharge": ("note_id", "subject_id", "hadm_id", "note_type", "charttime", "text"),
    "radiology": ("note_id", "subject_id", "hadm_id", "note_type", "charttime", "text"),
}


def locate_mimic4(directory: str | Path) -> dict[str, Path]:
    """``{"hosp/<table>": path, "note/<table>": path}``; raises naming every missing hosp file."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"MIMIC-IV folder not found: {d} (expected {d}/hosp/ with "
                                + ", ".join(f"{t}.csv.gz" for t in MIMIC4_HOSP) + ")")
    hosp = d / "hosp"
    if not hosp.is_dir():
        raise FileNotFoundError(f"MIMIC-IV folder {d} lacks the hosp/ sub-folder (expected {hosp}/ with "
                                + ", ".join(f"{t}.csv.gz" for t in MIMIC4_HOSP) + ")")
    files = {f"hosp/{t}": p for t, p in locate_tables(hosp, list(MIMIC4_HOSP), "MIMIC-IV hosp").items()}
    for t in MIMIC4_NOTES:
        p = find_table(d / "note", t)
        if p is not None:
            files[f"note/{t}"] = p
    return files


def load_mimic4(src_dir: str | Path, out_dir: str | Path, *, source: str = "", source_id: str = "",
                progress: bool = False) -> Cohort:
    """Read a MIMIC-IV folder into a Cohort (note texts in ``out_dir/note_texts.parquet``)."""
    src = Path(src_dir)
    out = Path(out_dir)
    files = locate_mimic4(src)
    out.mkdir(parents=True, exist_ok=True)
    scratch = out / ".scratch"
    report = LoadReport(source or f"mimic4:{src}")
    report.info["files"] = {t: str(p.relative_to(src)) for t, p in files.items()}
    con = connect(scratch)
    try:
        reader = CsvReader(con, report, scratch)
        for table, required in MIMIC4_HOSP.items():
            reader.load(table, files[f"hosp/{table}"], required, into=f"raw_{table}")
        note_tables = [t for t in MIMIC4_NOTES if f"note/{t}" in files]
        for t in note_tables:
            reader.load(f"note/{t}", files[f"note/{t}"], MIMIC4_NOTES[t], into=f"raw_note_{t}",
                        parquet=scratch / f"note_{t}.parquet")
        if not note_tables:
            report.info["notes"] = f"no note/ module found in {src}: the cohort has no notes"
        year, age = _int("anchor_year", "INTEGER"), _int("anchor_age", "INTEGER")
        report.skip("patients: anchor_age or anchor_year not an integer (dob and age missing)", int(con.execute(
            f"SELECT count(*) FROM raw_patients WHERE {year} IS NULL OR {age} IS NULL").fetchone()[0]))
        con.execute(f"""CREATE VIEW std_patients AS SELECT subject_id, gender,
                       CASE WHEN {year} IS NOT NULL AND {age} IS NOT NULL
                            THEN printf('%04d-01-01', {year} - {age})
                       END AS dob, dod FROM raw_patients""")
        con.execute("""CREATE VIEW std_admissions AS SELECT subject_id, hadm_id, admittime, dischtime, deathtime,
                       admission_type, hospital_expire_flag FROM raw_admissions""")
        con.execute("""CREATE VIEW std_dx AS SELECT subject_id, hadm_id, seq_num, icd_code, icd_version,
                       NULL::VARCHAR AS time FROM raw_diagnoses_icd""")
        con.execute("""CREATE VIEW std_px AS SELECT subject_id, hadm_id, seq_num, icd_code, icd_version,
                       chartdate AS time FROM raw_procedures_icd""")
        con.execute("CREATE VIEW std_rx AS SELECT subject_id, hadm_id, starttime, drug FROM raw_prescriptions")
        con.execute("CREATE VIEW std_svc AS SELECT subject_id, hadm_id, transfertime, curr_service FROM raw_services")
        for rel, raw in (("std_dxdict", "raw_d_icd_diagnoses"), ("std_pxdict", "raw_d_icd_procedures")):
            con.execute(f"CREATE VIEW {rel} AS SELECT icd_code, icd_version, long_title AS title FROM {raw}")
        if note_tables:
            parts = " UNION ALL ".join(
                f"SELECT {i} AS file_idx, note_id AS note_key, subject_id, hadm_id, note_type, charttime, text "
                f"FROM raw_note_{t}" for i, t in enumerate(note_tables))
            con.execute(f"""CREATE VIEW std_notes AS
                SELECT CAST(row_number() OVER (ORDER BY file_idx, note_key, md5(coalesce(text, ''))) AS VARCHAR) AS note_id, subject_id, hadm_id,
                       charttime AS chartdate, charttime,
                       CASE upper(trim(note_type)) WHEN 'DS' THEN 'Discharge summary'
                            WHEN 'RR' THEN 'Radiology' WHEN 'AR' THEN 'Radiology' ELSE trim(note_type) END AS category,
                       note_type AS description, '' AS iserror, text
                FROM ({parts})""")
        cohort = assemble(con, report, out, source=report.source, source_id=source_id, has_notes=bool(note_tables),
                          progress=progress)
    finally:
        con.close()
        shutil.rmtree(scratch, ignore_errors=True)
    report.save(out / "load_report.json")
    cohort.report = report.to_dict()
    return cohort


__all__ = ["MIMIC4_HOSP", "MIMIC4_NOTES", "expected_names", "load_mimic4", "locate_mimic4"]
