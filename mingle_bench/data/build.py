"""Source-independent cohort assembly in DuckDB SQL.

A source (MIMIC-III, MIMIC-IV) first exposes its files as *standard* DuckDB relations
whose columns are all text, named as below. :func:`assemble` then types, cleans,
de-duplicates and links them into a :class:`~mingle_bench.data.cohort.Cohort`, counting
every dropped row under a reason in the :class:`~mingle_bench.data.report.LoadReport`.

Standard relations (all VARCHAR):

- ``std_patients``: subject_id, gender, dob, dod
- ``std_admissions``: subject_id, hadm_id, admittime, dischtime, deathtime, admission_type,
  hospital_expire_flag
- ``std_dx`` / ``std_px``: subject_id, hadm_id, seq_num, icd_code, icd_version, time (NULL when
  the source has none)
- ``std_rx``: subject_id, hadm_id, starttime, drug
- ``std_svc``: subject_id, hadm_id, transfertime, curr_service
- ``std_dxdict`` / ``std_pxdict``: icd_code, icd_version, title
- ``std_notes`` (optional; a view over a parquet staging file): note_id, subject_id, hadm_id,
  chartdate, charttime, category, description, iserror, text

Cleaning rules (each counted in the report): rows whose ids are not integers; exact duplicate
rows (removed by :class:`~mingle_bench.data.csvio.CsvReader` on the raw table); a second row
for the same id, where the kept row is chosen by a stated order: per ``subject_id`` the
earliest ``dob`` (then ``dod``, then sex), per ``hadm_id`` the earliest ``admittime`` (then
``dischtime``, then ``subject_id``), per note ``row_id`` the earliest ``chartdate``; admissions
whose admit/discharge time is missing, unparseable or out of range, or whose stay is negative
or zero-length; code and note rows whose admission or patient was not kept; codes without a
code value.

Strict parsing: ids, ``seq_num``, ``icd_version`` and MIMIC-IV ``anchor_age``/``anchor_year``
must be decimal integers (optionally written ``123.0``); ``131854.4``, ``0x1F``, ``1_000`` and
``+5`` are rejected, never rounded. ``hospital_expire_flag`` must be exactly ``0`` or ``1``
(``0.0``/``1.0`` accepted); anything else (``0.6``, ``yes``, empty) is derived from
``deathtime`` and counted. Dates must parse and lie in 1677-09-22 .. 2262-04-10 (the range of
the cohort's nanosecond timestamps); a date outside it (year 3012) is treated like an
unparseable one and counted.

Flag/time consistency: the flag decides (it is the label the tasks use). A ``deathtime`` on an
admission whose flag is 0 is dropped; an admission whose flag is 1 keeps it missing when it has
none. Both are counted under ``repaired``.
Ages at admission of 90 or more are capped at 90 and flagged (MIMIC shifts the birth date of
patients over 89 so that they appear about 300 years old). Codes missing from the dictionaries
are kept with the code itself as their text.
"""
from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pandas as pd

from mingle_bench.data.cohort import SCHEMA, Cohort, empty_table
from mingle_bench.data.report import LoadReport
from mingle_bench.io import atomic_path

SERVICE_NAMES = {  # MIMIC SERVICES.curr_service abbreviations, per the MIMIC documentation
    "CMED": "Cardiac medical", "CSURG": "Cardiac surgical", "DENT": "Dental",
    "ENT": "Ear, nose and throat", "GU": "Genitourinary", "GYN": "Gynecological",
    "MED": "General medical", "NB": "Newborn", "NBB": "Newborn baby", "NMED": "Neurologic medical",
    "NSURG": "Neurologic surgical", "OBS": "Obstetrics", "ORTHO": "Orthopaedic",
    "OMED": "Oncologic medical", "PSURG": "Plastic surgery", "PSYCH": "Psychiatric",
    "SURG": "General surgical", "TRAUM": "Trauma", "TSURG": "Thoracic surgical",
    "VSURG": "Vascular surgical", "EYE": "Ophthalmologic", "PSYCHIATRY": "Psychiatric",
}

AGE_CAP = 90.0


TS_MIN, TS_MAX = "1677-09-22", "2262-04-11"  # datetime64[ns] range (exclusive upper bound)


def _ts(col: str) -> str:
    """SQL: parse a MIMIC date or timestamp text; NULL when empty, unparseable or out of range."""
    raw = f"TRY_CAST(NULLIF(trim({col}), '') AS TIMESTAMP)"
    return f"(CASE WHEN {raw} >= TIMESTAMP '{TS_MIN}' AND {raw} < TIMESTAMP '{TS_MAX}' THEN {raw} END)"


def _bad_ts(col: str) -> str:
    return f"(NULLIF(trim({col}), '') IS NOT NULL AND {_ts(col)} IS NULL)"


_INT_RE = "-?[0-9]+(\\.0+)?"


def _int(col: str, typ: str = "BIGINT") -> str:
    """SQL: a strict integer; accepts '123' and a float-style '123.0' (spreadsheet exports), else NULL
    (never rounds '123.4', never reads hex '0x1F' or '1_000')."""
    return (f"(CASE WHEN regexp_full_match(trim({col}), '{_INT_RE}') "
            f"THEN TRY_CAST(regexp_replace(trim({col}), '\\.0+$', '') AS {typ}) END)")


def _flag(col: str) -> str:
    """SQL: a 0/1 flag, exactly ('0', '1', '0.0', '1.0'); anything else NULL."""
    return f"(CASE WHEN regexp_full_match(trim({col}), '[01](\\.0+)?') THEN {_int(col, 'INTEGER')} END)"


class _Sql:
    def __init__(self, con: duckdb.DuckDBPyConnection, report: LoadReport):
        self.con = con
        self.report = report

    def one(self, sql: str) -> int:
        return int(self.con.execute(sql).fetchone()[0] or 0)

    def count(self, rel: str) -> int:
        return self.one(f"SELECT count(*) FROM {rel}")

    def dedupe_exact(self, rel: str, out: str, label: str) -> None:
        """Copy ``rel`` to ``out``. Exact duplicates were already removed (and counted) on the raw
        table, where every column is visible; here rows may legitimately agree on the standard
        columns (two doses of one drug on one day)."""
        self.con.execute(f"CREATE OR REPLACE TABLE {out} AS SELECT * FROM {rel}")


def _fix_dates(sql: _Sql, rel: str, label: str, cols: tuple[str, ...]) -> None:
    for c in cols:
        sql.report.skip(f"{label}: unparseable or out-of-range {c} (set to missing)", sql.one(f"SELECT count(*) FROM {rel} WHERE {_bad_ts(c)}"))


def assemble(con: duckdb.DuckDBPyConnection, report: LoadReport, out_dir: Path, *, source: str,
             source_id: str, has_notes: bool, progress: bool = False) -> Cohort:
    """Type, clean and link the standard relations into a Cohort; note texts go to
    ``out_dir/note_texts.parquet`` (streamed by DuckDB)."""
    sql = _Sql(con, report)
    say = (lambda m: print(f"[{source}] {m}", file=sys.stderr, flush=True)) if progress else (lambda m: None)

    # -- patients ---------------------------------------------------------------------------
    say("patients")
    sql.dedupe_exact("std_patients", "u_patients", "PATIENTS")
    report.skip("PATIENTS: subject_id missing or not an integer",
                sql.one(f"SELECT count(*) FROM u_patients WHERE {_int('subject_id')} IS NULL"))
    _fix_dates(sql, "u_patients", "PATIENTS", ("dob", "dod"))
    con.execute(f"""
        CREATE OR REPLACE TABLE c_patients AS
        SELECT {_int('subject_id')} AS patient_id,
               CASE WHEN upper(trim(gender)) IN ('M', 'F') THEN upper(trim(gender)) ELSE '' END AS sex,
               {_ts('dob')} AS dob, {_ts('dod')} AS dod
        FROM u_patients WHERE {_int('subject_id')} IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY patient_id ORDER BY dob NULLS LAST, dod NULLS LAST, sex) = 1
    """)
    report.skip("PATIENTS: second row for the same subject_id (earliest dob kept)",
                sql.count("u_patients") - sql.one(f"SELECT count(*) FROM u_patients WHERE {_int('subject_id')} IS NULL")
                - sql.count("c_patients"))

    # -- admissions -------------------------------------------------------------------------
    say("admissions")
    sql.dedupe_exact("std_admissions", "u_adm", "ADMISSIONS")
    _fix_dates(sql, "u_adm", "ADMISSIONS", ("deathtime",))
    con.execute(f"""
        CREATE OR REPLACE TABLE t_adm AS
        SELECT {_int('hadm_id')} AS hadm_id, {_int('subject_id')} AS patient_id,
               {_ts('admittime')} AS admittime, {_ts('dischtime')} AS dischtime, {_ts('deathtime')} AS deathtime,
               coalesce(trim(admission_type), '') AS admission_type,
               {_flag('hospital_expire_flag')} AS flag,
               {_bad_ts('admittime')} OR NULLIF(trim(admittime), '') IS NULL AS bad_admit,
               {_bad_ts('dischtime')} OR NULLIF(trim(dischtime), '') IS NULL AS bad_disch
        FROM u_adm
    """)
    steps = [
        ("hadm_id or subject_id missing or not an integer", "hadm_id IS NULL OR patient_id IS NULL"),
        ("subject_id not in PATIENTS", "patient_id NOT IN (SELECT patient_id FROM c_patients)"),
        ("admittime missing, unparseable or out of range", "bad_admit"),
        ("dischtime missing, unparseable or out of range", "bad_disch"),
        ("negative stay (dischtime before admittime)", "dischtime < admittime"),
        ("zero-length stay (dischtime equals admittime)", "dischtime = admittime"),
    ]
    for reason, cond in steps:
        n = sql.one(f"SELECT count(*) FROM t_adm WHERE {cond}")
        report.skip(f"ADMISSIONS: {reason}", n)
        con.execute(f"DELETE FROM t_adm WHERE {cond}")
    n_before = sql.count("t_adm")
    con.execute("CREATE OR REPLACE TABLE t_adm2 AS SELECT * FROM t_adm "
                "QUALIFY row_number() OVER (PARTITION BY hadm_id ORDER BY admittime, dischtime, patient_id) = 1")
    report.skip("ADMISSIONS: second row for the same hadm_id (earliest admittime kept)", n_before - sql.count("t_adm2"))
    bad_flag = sql.one("SELECT count(*) FROM t_adm2 WHERE flag IS NULL OR flag NOT IN (0, 1)")
    report.repair("ADMISSIONS: hospital_expire_flag missing or not exactly 0/1, derived from deathtime", bad_flag)
    report.repair("ADMISSIONS: hospital_expire_flag 0 with a deathtime (deathtime dropped, the flag decides)",
                  sql.one("SELECT count(*) FROM t_adm2 WHERE flag = 0 AND deathtime IS NOT NULL"))
    report.repair("ADMISSIONS: hospital_expire_flag 1 without a deathtime (kept as a death, deathtime missing)",
                  sql.one("SELECT count(*) FROM t_adm2 WHERE flag = 1 AND deathtime IS NULL"))
    age = "(epoch(a.admittime) - epoch(p.dob)) / (365.2425 * 86400.0)"
    con.execute(f"""
        CREATE OR REPLACE TABLE c_adm AS
        SELECT a.hadm_id, a.patient_id, a.admittime, a.dischtime,
               CASE WHEN a.flag2 = 1 THEN a.deathtime END AS deathtime, a.admission_type,
               a.flag2::TINYINT AS hospital_expire_flag,
               CASE WHEN {age} >= {AGE_CAP} THEN {AGE_CAP} ELSE {age} END AS age,
               coalesce({age} >= {AGE_CAP}, false) AS age_capped
        FROM (SELECT *, CASE WHEN flag IN (0, 1) THEN flag WHEN deathtime IS NOT NULL THEN 1 ELSE 0 END AS flag2
              FROM t_adm2) a
        LEFT JOIN c_patients p ON p.patient_id = a.patient_id
        ORDER BY a.patient_id, a.admittime, a.hadm_id
    """)
    n_capped = sql.one("SELECT count(*) FROM c_adm WHERE age_capped")
    report.info["ages_capped"] = (f"{n_capped} admission(s) with age >= {AGE_CAP:g} at admission (MIMIC shifts ages "
                                  f"over 89 to about 300) have age set to {AGE_CAP:g} and age_capped=True")
    n_no_age = sql.one("SELECT count(*) FROM c_adm WHERE age IS NULL OR age < 0")
    if n_no_age:
        report.info["ages_unknown"] = f"{n_no_age} admission(s) without a usable dob have age NaN"
        con.execute("UPDATE c_adm SET age = NULL WHERE age < 0")

    # -- codes --------------------------------------------------------------------------------
    say("codes")
    _codes(sql, "std_dx", "DIAGNOSES", "diagnosis", "dx")
    _codes(sql, "std_px", "PROCEDURES", "procedure", "px")
    # medications: normalised drug name
    sql.dedupe_exact("std_rx", "u_rx", "PRESCRIPTIONS")
    _fix_dates(sql, "u_rx", "PRESCRIPTIONS", ("starttime",))
    con.execute(f"""
        CREATE OR REPLACE TABLE t_rx AS
        SELECT {_int('subject_id')} AS patient_id, {_int('hadm_id')} AS hadm_id,
               lower(trim(regexp_replace(coalesce(drug, ''), '\\s+', ' ', 'g'))) AS code,
               {_ts('starttime')} AS time FROM u_rx
    """)
    _link_codes(sql, "t_rx", "PRESCRIPTIONS", "drug")
    con.execute("""CREATE OR REPLACE TABLE c_rx AS SELECT patient_id, hadm_id, 'medication' AS code_type,
                   'rx:' || code AS code_id, code, NULL::TINYINT AS icd_version, NULL::INTEGER AS seq_num, time FROM t_rx""")
    sql.dedupe_exact("std_svc", "u_svc", "SERVICES")
    _fix_dates(sql, "u_svc", "SERVICES", ("transfertime",))
    con.execute(f"""
        CREATE OR REPLACE TABLE t_svc AS
        SELECT {_int('subject_id')} AS patient_id, {_int('hadm_id')} AS hadm_id,
               upper(trim(coalesce(curr_service, ''))) AS code, {_ts('transfertime')} AS time FROM u_svc
    """)
    _link_codes(sql, "t_svc", "SERVICES", "curr_service")
    con.execute("""CREATE OR REPLACE TABLE c_svc AS SELECT patient_id, hadm_id, 'service' AS code_type,
                   'svc:' || code AS code_id, code, NULL::TINYINT AS icd_version, NULL::INTEGER AS seq_num, time FROM t_svc""")
    con.execute("""
        CREATE OR REPLACE TABLE c_codes AS
        SELECT * FROM (SELECT * FROM c_dx UNION ALL SELECT * FROM c_px UNION ALL SELECT * FROM c_rx
                       UNION ALL SELECT * FROM c_svc)
        ORDER BY patient_id, hadm_id, CASE code_type WHEN 'diagnosis' THEN 0 WHEN 'procedure' THEN 1
                 WHEN 'medication' THEN 2 ELSE 3 END, seq_num NULLS LAST, time NULLS LAST, code_id
    """)

    n_nocode = sql.one("SELECT count(*) FROM c_adm WHERE hadm_id NOT IN (SELECT hadm_id FROM c_codes)")
    n_nodx = sql.one("SELECT count(*) FROM c_adm WHERE hadm_id NOT IN (SELECT hadm_id FROM c_dx)")
    if n_nocode or n_nodx:
        report.info["admissions_without_codes"] = (
            f"{n_nocode} admission(s) have no code of any type and {n_nodx} no diagnosis code; they are kept "
            "(tasks decide whether to exclude them)")

    # -- code texts ---------------------------------------------------------------------------
    say("code texts")
    _dict(sql, "std_dxdict", "dxd")
    _dict(sql, "std_pxdict", "pxd")
    svc_names = pd.DataFrame({"code": list(SERVICE_NAMES), "title": list(SERVICE_NAMES.values())})
    con.register("svc_names", svc_names)
    con.execute("""
        CREATE OR REPLACE TABLE c_texts AS
        WITH ids AS (SELECT DISTINCT code_id, code_type, code, icd_version FROM c_codes)
        SELECT ids.code_id, ids.code_type,
               coalesce(CASE ids.code_type
                          WHEN 'diagnosis' THEN dxd.title
                          WHEN 'procedure' THEN pxd.title
                          WHEN 'medication' THEN ids.code
                          ELSE s.title END, ids.code) AS text,
               CASE WHEN ids.code_type IN ('diagnosis', 'procedure') AND coalesce(dxd.title, pxd.title) IS NULL
                    THEN 1 ELSE 0 END AS missing
        FROM ids
        LEFT JOIN dxd ON ids.code_type = 'diagnosis' AND dxd.code = ids.code AND dxd.ver = ids.icd_version
        LEFT JOIN pxd ON ids.code_type = 'procedure' AND pxd.code = ids.code AND pxd.ver = ids.icd_version
        LEFT JOIN svc_names s ON ids.code_type = 'service' AND s.code = ids.code
        ORDER BY ids.code_id
    """)
    for ctype in ("diagnosis", "procedure"):
        n = sql.one(f"SELECT count(*) FROM c_texts WHERE missing = 1 AND code_type = '{ctype}'")
        if n:
            report.info[f"{ctype}_codes_missing_from_dictionary"] = (
                f"{n} distinct {ctype} code(s) are not in the dictionary; kept, with the code as their text")

    # -- notes ----------------------------------------------------------------------------------
    text_path = out_dir / "note_texts.parquet"
    if has_notes:
        say("notes")
        notes_df = _notes(sql, text_path)
    else:
        notes_df = empty_table("notes")
        _write_empty_texts(con, text_path)

    tables = {
        "patients": fetch(con, "SELECT * FROM c_patients ORDER BY patient_id"),
        "admissions": fetch(con, "SELECT hadm_id, patient_id, admittime, dischtime, deathtime, admission_type, "
                                 "hospital_expire_flag, age, age_capped FROM c_adm ORDER BY patient_id, admittime, hadm_id"),
        "codes": fetch(con, "SELECT * FROM c_codes"),
        "code_texts": fetch(con, "SELECT code_id, code_type, text FROM c_texts ORDER BY code_id"),
        "notes": notes_df,
    }
    tables = {k: coerce(k, v) for k, v in tables.items()}
    for k, v in tables.items():
        report.kept[k] = int(len(v))
    return Cohort(**tables, source=source, source_id=source_id, report=report.to_dict(),
                  notes_text_path=str(text_path)).validate()


def _codes(sql: _Sql, rel: str, label: str, ctype: str, prefix: str) -> None:
    con = sql.con
    label = f"{label}_ICD"
    sql.dedupe_exact(rel, f"u_{prefix}", label)
    _fix_dates(sql, f"u_{prefix}", label, ("time",))
    n_dot = sql.one(f"SELECT count(*) FROM u_{prefix} WHERE icd_code LIKE '%.%'")
    sql.report.repair(f"{label}: dotted ICD code written without its dot", n_dot)
    con.execute(f"""
        CREATE OR REPLACE TABLE t_{prefix} AS
        SELECT {_int('subject_id')} AS patient_id, {_int('hadm_id')} AS hadm_id,
               upper(replace(trim(coalesce(icd_code, '')), '.', '')) AS code,
               {_int('icd_version', 'TINYINT')} AS icd_version,
               {_int('seq_num', 'INTEGER')} AS seq_num, {_ts('time')} AS time
        FROM u_{prefix}
    """)
    sql.report.skip(f"{label}: seq_num not an integer (set to missing)",
                    sql.one(f"SELECT count(*) FROM u_{prefix} WHERE NULLIF(trim(seq_num), '') IS NOT NULL "
                            f"AND {_int('seq_num', 'INTEGER')} IS NULL"))
    n = sql.one(f"SELECT count(*) FROM t_{prefix} WHERE icd_version IS NULL OR icd_version NOT IN (9, 10)")
    sql.report.skip(f"{label}: icd_version missing or not 9/10", n)
    con.execute(f"DELETE FROM t_{prefix} WHERE icd_version IS NULL OR icd_version NOT IN (9, 10)")
    _link_codes(sql, f"t_{prefix}", label, "icd_code")
    n0 = sql.count(f"t_{prefix}")
    con.execute(f"""
        CREATE OR REPLACE TABLE c_{prefix} AS
        SELECT patient_id, hadm_id, '{ctype}' AS code_type,
               '{prefix}' || icd_version::VARCHAR || ':' || code AS code_id, code, icd_version, seq_num, time
        FROM t_{prefix}
        QUALIFY row_number() OVER (PARTITION BY hadm_id, icd_version, code ORDER BY seq_num NULLS LAST) = 1
    """)
    sql.report.skip(f"{label}: same code listed twice for one admission (lowest seq_num kept)", n0 - sql.count(f"c_{prefix}"))


def _link_codes(sql: _Sql, rel: str, label: str, code_col: str) -> None:
    """Drop (and count) code rows without a code or whose admission was not kept."""
    con = sql.con
    for reason, cond in [
        (f"{code_col} missing", "code = ''"),
        ("hadm_id missing or not an integer", "hadm_id IS NULL"),
        ("subject_id missing or not an integer", "patient_id IS NULL"),
        ("hadm_id not among kept admissions", "hadm_id NOT IN (SELECT hadm_id FROM c_adm)"),
        ("subject_id differs from the admission's",
         "patient_id IS DISTINCT FROM (SELECT a.patient_id FROM c_adm a WHERE a.hadm_id = " + rel + ".hadm_id)"),
    ]:
        n = sql.one(f"SELECT count(*) FROM {rel} WHERE {cond}")
        sql.report.skip(f"{label}: {reason}", n)
        if n:
            con.execute(f"DELETE FROM {rel} WHERE {cond}")


def _dict(sql: _Sql, rel: str, out: str) -> None:
    sql.con.execute(f"""
        CREATE OR REPLACE TABLE {out} AS
        SELECT upper(replace(trim(icd_code), '.', '')) AS code, {_int('icd_version', 'TINYINT')} AS ver,
               trim(title) AS title
        FROM {rel} WHERE NULLIF(trim(icd_code), '') IS NOT NULL AND NULLIF(trim(title), '') IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY code, ver ORDER BY title) = 1
    """)


def _notes(sql: _Sql, text_path: Path) -> pd.DataFrame:
    """Note metadata into ``c_notes`` (one narrow table, replaced in place at each cleaning step so
    DuckDB never holds several copies), texts streamed into ``text_path``."""
    con = sql.con
    label = "NOTEEVENTS"
    con.execute(f"""
        CREATE OR REPLACE TABLE c_notes AS
        SELECT {_int('note_id')} AS note_id, {_int('subject_id')} AS patient_id,
               NULLIF(trim(hadm_id), '') IS NOT NULL AS has_hadm, {_int('hadm_id')} AS hadm_id,
               coalesce(date_trunc('day', {_ts('chartdate')}), date_trunc('day', {_ts('charttime')})) AS chartdate,
               {_ts('charttime')} AS charttime, {_bad_ts('charttime')} AS bad_time,
               coalesce(trim(category), '') AS category, coalesce(trim(description), '') AS description,
               trim(coalesce(iserror, '')) = '1' AS iserror, coalesce(length(text), 0) AS n_chars,
               md5_number(coalesce(text, '')) AS text_md5
        FROM std_notes
    """)
    sql.report.repair(f"{label}: unparseable charttime set to missing (chartdate kept)",
                      sql.one("SELECT count(*) FROM c_notes WHERE bad_time"))
    steps = [
        ("ISERROR=1 (marked as an error by the hospital)", "iserror"),
        ("row_id missing or not an integer", "note_id IS NULL"),
        ("subject_id missing or not in PATIENTS", "patient_id IS NULL OR patient_id NOT IN (SELECT patient_id FROM c_patients)"),
        ("hadm_id not an integer", "has_hadm AND hadm_id IS NULL"),
        ("hadm_id not among kept admissions", "hadm_id IS NOT NULL AND hadm_id NOT IN (SELECT hadm_id FROM c_adm)"),
        ("chartdate and charttime missing or unparseable", "chartdate IS NULL"),
    ]
    for reason, cond in steps:
        n = sql.one(f"SELECT count(*) FROM c_notes WHERE {cond}")
        sql.report.skip(f"{label}: {reason}", n)
        if n:
            con.execute(f"DELETE FROM c_notes WHERE {cond}")
    for reason, part, order in [
        ("exact duplicate note (same patient, admission, time, category, text)",
         "patient_id, hadm_id, chartdate, charttime, category, description, text_md5", "note_id"),
        ("second note with the same row_id (earliest chartdate kept)", "note_id", "chartdate, text_md5"),
    ]:
        n0 = sql.count("c_notes")
        con.execute(f"CREATE OR REPLACE TABLE c_notes AS SELECT * FROM c_notes "
                    f"QUALIFY row_number() OVER (PARTITION BY {part} ORDER BY {order}) = 1")
        sql.report.skip(f"{label}: {reason}", n0 - sql.count("c_notes"))
    with atomic_path(text_path) as tmp:
        con.execute(f"""
            COPY (SELECT s.note_id, s.text FROM (SELECT {_int('note_id')} AS note_id, coalesce(text, '') AS text
                         FROM std_notes) s
                  SEMI JOIN c_notes c ON c.note_id = s.note_id AND c.text_md5 = md5_number(s.text))
            TO '{str(tmp).replace("'", "''")}' (FORMAT parquet, ROW_GROUP_SIZE 4096, ROW_GROUP_SIZE_BYTES 16777216)
        """)
    return fetch(con, """SELECT note_id, patient_id, hadm_id, chartdate, charttime, category, description, n_chars
                          FROM c_notes ORDER BY patient_id, chartdate, charttime NULLS LAST, note_id""")


def _write_empty_texts(con: duckdb.DuckDBPyConnection, text_path: Path) -> None:
    with atomic_path(text_path) as tmp:
        con.execute(f"COPY (SELECT NULL::BIGINT AS note_id, NULL::VARCHAR AS text WHERE false) TO "
                    f"'{str(tmp).replace(chr(39), chr(39) * 2)}' (FORMAT parquet)")


def fetch(con: duckdb.DuckDBPyConnection, query: str) -> pd.DataFrame:
    """Query result as pandas through Arrow (no per-row Python objects; about half the peak of ``.df()``)."""
    return con.sql(query).to_arrow_table().to_pandas()


def coerce(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Cast a frame to the declared cohort dtypes (DuckDB returns its own widths)."""
    out = {}
    for col, dtype in SCHEMA[name].items():
        s = df[col] if col in df.columns else pd.Series([None] * len(df), dtype="object")
        if str(s.dtype) == dtype:
            pass
        elif dtype.startswith("datetime64"):
            s = pd.to_datetime(s).astype(dtype)
        elif dtype == "object":
            # pandas' compact string dtype (what a parquet round trip gives back as well)
            s = s.where(s.notna(), "").astype("str")
        elif dtype == "bool":
            s = s.fillna(False).astype(bool)
        else:
            s = s.astype(dtype)
        out[col] = s.reset_index(drop=True)
    return pd.DataFrame(out)
