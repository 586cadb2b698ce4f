"""MIMIC-III v1.4 source: a folder of PhysioNet CSV (or CSV.gz) files -> :class:`Cohort`.

Reads PATIENTS, ADMISSIONS, DIAGNOSES_ICD, PROCEDURES_ICD, PRESCRIPTIONS, SERVICES,
NOTEEVENTS, D_ICD_DIAGNOSES and D_ICD_PROCEDURES through DuckDB. File names and headers
are accepted in any case (the full release is upper case, the demo lower case).

MIMIC-III specifics handled here (see :mod:`mingle_bench.data.build` for the cleaning rules):

- ICD-9 codes are kept as released, without a dot (``4019``); code ids are ``dx9:4019``,
  ``px9:3893``; drugs are ``rx:<lower-cased DRUG>``; services ``svc:<CURR_SERVICE>``.
- ``HOSPITAL_EXPIRE_FLAG`` is cast to an integer explicitly (reading it as text once turned
  every label into 0 in another toolkit).
- Dates are shifted into the 2100s by MIMIC; they are kept as shifted.
- Ages over 89 appear as ~300 years (shifted DOB): capped at 90 and flagged ``age_capped``.
- NOTEEVENTS (about 4 GB in the full release) is streamed by DuckDB into a parquet staging
  file and never loaded into pandas: the cohort holds note metadata only, and the texts go
  to ``note_texts.parquet`` (note_id, text). Notes with ``ISERROR=1`` are dropped; notes
  without ``HADM_ID`` are kept with ``hadm_id=<NA>`` (per patient).
- Prescriptions use ``STARTDATE`` as the code time; diagnoses and procedures have no time.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from mingle_bench.data.build import assemble
from mingle_bench.data.cohort import Cohort
from mingle_bench.data.csvio import CsvReader, connect, locate_tables
from mingle_bench.data.report import LoadReport

MIMIC3_TABLES: dict[str, tuple[str, ...]] = {
    "PATIENTS": ("subject_id", "gender", "dob", "dod"),
    "ADMISSIONS": ("subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type",
                   "hospital_expire_flag"),
    "DIAGNOSES_ICD": ("subject_id", "hadm_id", "seq_num", "icd9_code"),
    "PROCEDURES_ICD": ("subject_id", "hadm_id", "seq_num", "icd9_code"),
    "PRESCRIPTIONS": ("subject_id", "hadm_id", "startdate", "drug"),
    "SERVICES": ("subject_id", "hadm_id", "transfertime", "curr_service"),
    "NOTEEVENTS": ("row_id", "subject_id", "hadm_id", "chartdate", "charttime", "category", "description",
                   "iserror", "text"),
    "D_ICD_DIAGNOSES": ("icd9_code", "short_title", "long_title"),
    "D_ICD_PROCEDURES": ("icd9_code", "short_title", "long_title"),
}


def load_mimic3(src_dir: str | Path, out_dir: str | Path, *, source: str = "", source_id: str = "",
                progress: bool = False) -> Cohort:
    """Read a MIMIC-III folder into a Cohort whose note texts live in ``out_dir/note_texts.parquet``.

    The load report is saved as ``out_dir/load_report.json`` and kept in ``Cohort.report``.
    """
    src = Path(src_dir)
    out = Path(out_dir)
    files = locate_tables(src, list(MIMIC3_TABLES), "MIMIC-III")
    out.mkdir(parents=True, exist_ok=True)
    scratch = out / ".scratch"
    report = LoadReport(source or f"mimic3:{src}")
    report.info["files"] = {t: p.name for t, p in files.items()}
    con = connect(scratch)
    try:
        reader = CsvReader(con, report, scratch)
        for table, required in MIMIC3_TABLES.items():
            if progress:
                print(f"[{report.source}] reading {files[table].name}", file=sys.stderr, flush=True)
            parquet = scratch / "noteevents.parquet" if table == "NOTEEVENTS" else None
            reader.load(table, files[table], required, into=f"raw_{table.lower()}", parquet=parquet)
        con.execute("CREATE VIEW std_patients AS SELECT subject_id, gender, dob, dod FROM raw_patients")
        con.execute("""CREATE VIEW std_admissions AS SELECT subject_id, hadm_id, admittime, dischtime, deathtime,
                       admission_type, hospital_expire_flag FROM raw_admissions""")
        for rel, raw in (("std_dx", "raw_diagnoses_icd"), ("std_px", "raw_procedures_icd")):
            con.execute(f"""CREATE VIEW {rel} AS SELECT subject_id, hadm_id, seq_num, icd9_code AS icd_code,
                            '9' AS icd_version, NULL::VARCHAR AS time FROM {raw}""")
        con.execute("CREATE VIEW std_rx AS SELECT subject_id, hadm_id, startdate AS starttime, drug FROM raw_prescriptions")
        con.execute("CREATE VIEW std_svc AS SELECT subject_id, hadm_id, transfertime, curr_service FROM raw_services")
        for rel, raw in (("std_dxdict", "raw_d_icd_diagnoses"), ("std_pxdict", "raw_d_icd_procedures")):
            con.execute(f"""CREATE VIEW {rel} AS SELECT icd9_code AS icd_code, '9' AS icd_version,
                            coalesce(NULLIF(trim(long_title), ''), short_title) AS title FROM {raw}""")
        con.execute("""CREATE VIEW std_notes AS SELECT row_id AS note_id, subject_id, hadm_id, chartdate, charttime,
                       category, description, iserror, text FROM raw_noteevents""")
        cohort = assemble(con, report, out, source=report.source, source_id=source_id, has_notes=True,
                          progress=progress)
    finally:
        con.close()
        shutil.rmtree(scratch, ignore_errors=True)
    report.save(out / "load_report.json")
    cohort.report = report.to_dict()
    return cohort
