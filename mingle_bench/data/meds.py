"""MEDS source: a Medical Event Data Standard folder (``meds`` 0.4) -> :class:`Cohort`.

The conventions (which code is an admission, a diagnosis, a note, ...; how events link to
admissions; in-hospital death; ``untimed`` types; the optional extra columns) are those of
:mod:`mingle_bench.data.meds_mapping`, whose module docstring is the specification this reader
follows. Here: how the folder is read and what happens to events that cannot be used.

Reading. Every shard's schema is checked first with pyarrow (cheap, no data read): a missing
``subject_id``/``time``/``code`` column or a wrong type (``subject_id`` not an integer,
``time`` not a time-zone-free timestamp, ``code`` not a string; likewise the optional extra
columns when present) is a one-line error naming the shard and the column. The shards are then
read by DuckDB (``read_parquet(..., union_by_name=true)``, memory-bounded, spilling to a
scratch folder): one pass counts the events per distinct code (the mapping's regular
expressions run over the distinct codes only), a second keeps the events of mapped codes
(note events, with their texts, are streamed into a parquet staging file and never enter
pandas). The reader then exposes the standard relations of :mod:`mingle_bench.data.build`
(``std_patients``, ``std_admissions``, ...) and calls :func:`~mingle_bench.data.build.assemble`,
so every cleaning rule and count of the MIMIC loaders applies too.

Events that are not used, each counted in the load report under a reason (the first offending
shard and 0-based row of each reason in ``report.info["meds_first_offending"]``):

- a null ``subject_id`` or ``code``;
- an event whose time is before the subject's ``MEDS_BIRTH`` (the earliest one, when a subject
  has several);
- an admission or discharge event without a time;
- a second admission event for one ``hadm_id`` (the earliest kept), a second discharge event
  for one ``hadm_id`` (the earliest kept);
- an admission without a discharge (no discharge with its ``hadm_id``; without ids, no later
  discharge of the subject), and a discharge that closes no kept admission;
- **overlapping admissions** of one subject: admissions are visited in (admit time, id) order
  and an admission that starts before the discharge of the subject's last *kept* admission is
  skipped (the earlier one is kept; touching stays, admit == previous discharge, are not an
  overlap). The same rule applies with and without a ``hadm_id`` column;
- a diagnosis, procedure, medication or service event that falls in no admission (no
  ``hadm_id`` and no kept admission whose ``[admit, discharge]`` holds its time; at a shared
  boundary instant the later admission wins). Notes outside every admission are kept without an
  admission (``hadm_id`` <NA>), as MIMIC-III notes without ``HADM_ID`` are. Stated deviation
  In a dataset *with* a ``hadm_id`` column, a note or a ``MEDS_DEATH`` whose ``hadm_id`` is
  null is not linked by time (the exporter writes a null ``hadm_id`` for exactly those notes;
  MIMIC has radiology notes without ``HADM_ID`` charted during a stay, and a date-only ``dod``
  of a patient discharged alive earlier that day falls inside the stay: linking either would
  change the cohort; at MIMIC size, linking the deaths by time added 36 in-hospital deaths to
  8,833);
- codes that match no mapping pattern (labs, vitals, ...) and medication codes matching
  ``medication_exclude`` are simply not used: counted per code prefix (the text before the
  first ``//``) in ``report.info["meds_codes_not_used"]``, not as skips.

Pairing without ids: an admission is closed by the subject's first discharge strictly after its
admit time (a discharge at the very admit instant closes an earlier stay, as at a transfer);
two admissions closed by one discharge overlap (the rule above).

Ids. With a ``hadm_id`` column, admissions keep their ids; admission events whose ``hadm_id``
is null are paired by time (as without the column) and numbered after the largest ``hadm_id``
of the data. Without the column, admissions are numbered 1, 2, ... in (subject, admit time)
order. Patients are the subjects with any used event.

Patients: ``dob`` and ``dod`` are the calendar *dates* of the earliest ``MEDS_BIRTH`` and
``MEDS_DEATH`` (dates, as in MIMIC); in-hospital ``deathtime`` keeps the full ``MEDS_DEATH`` time.

Node texts: diagnosis and procedure descriptions come from ``metadata/codes.parquet``
(``description``, joined on the full MEDS code); a code in use without one keeps the code as
its text, and those codes are counted with a few examples in
``report.info["meds_codes_without_description"]``. ``metadata/subject_splits.parquet``, when
present, is kept as :attr:`Cohort.subject_splits` (``--split meds``).

Deviation from the MEDS ETL stated in :mod:`mingle_bench.data.meds_mapping`: diagnoses are
``untimed`` by default.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import duckdb
import pandas as pd

from mingle_bench.data.build import assemble, fetch
from mingle_bench.data.cohort import Cohort
from mingle_bench.data.csvio import connect, sql_str
from mingle_bench.data.meds_mapping import DEFAULT_MAPPING, MedsMapping
from mingle_bench.data.report import LoadReport
from mingle_bench.io import atomic_path

DATASET_JSON = "metadata/dataset.json"
CODES_PARQUET = "metadata/codes.parquet"
SPLITS_PARQUET = "metadata/subject_splits.parquet"
CODE_KINDS = ("diagnosis", "procedure", "medication", "service")
_EXAMPLES = 5


def locate_meds(directory: str | Path) -> dict[str, Path]:
    """``{"data/<shard>.parquet": path, ..., "metadata/...": path}``: the data shards (sorted) and
    the metadata files that exist. Raises naming the folder when it, ``data/`` or any shard is
    missing."""
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"MEDS folder not found: {d} (expected {d}/data/**/*.parquet and {d}/metadata/)")
    data = d / "data"
    if not data.is_dir():
        raise FileNotFoundError(f"MEDS folder {d} lacks the data/ sub-folder (expected {data}/**/*.parquet)")
    shards = sorted(p for p in data.rglob("*.parquet") if p.is_file())
    if not shards:
        raise FileNotFoundError(f"MEDS folder {d}: no parquet shard under {data}/ (expected data/**/*.parquet)")
    files = {p.relative_to(d).as_posix(): p for p in shards}
    for rel in (DATASET_JSON, CODES_PARQUET, SPLITS_PARQUET):
        if (d / rel).is_file():
            files[rel] = d / rel
    return files


# -- schema checks (pyarrow, no data read) -------------------------------------------------------
def _type_ok(typ, want: str) -> bool:
    import pyarrow as pa

    if want == "integer":
        return pa.types.is_integer(typ)
    if want == "timestamp":
        return pa.types.is_timestamp(typ) and typ.tz is None
    if want == "string":
        return pa.types.is_string(typ) or pa.types.is_large_string(typ) or str(typ) == "string_view"
    if want == "bool":
        return pa.types.is_boolean(typ)
    if want == "float":
        return pa.types.is_floating(typ) or pa.types.is_integer(typ)
    raise AssertionError(want)


def _schema_of(path: Path, where: str):
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several error types for a broken file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{where}: not a readable parquet file ({first})") from None


def check_shard_schema(path: Path, where: str, mapping: MedsMapping = DEFAULT_MAPPING) -> list[str]:
    """The shard's column names; a one-line ValueError naming the shard and the column when a
    required column (``subject_id``, ``time``, ``code``) is missing or a column has the wrong type."""
    import meds

    schema = _schema_of(path, where)
    names = list(schema.names)
    want = meds.DataSchema.schema()
    required = {"subject_id": "integer", "time": "timestamp", "code": "string"}
    for col, kind in required.items():
        if col not in names:
            raise ValueError(f"{where}: missing column {col!r} (MEDS requires subject_id {want.field('subject_id').type}, "
                             f"time {want.field('time').type}, code {want.field('code').type}); found {names}")
    optional = {"numeric_value": "float", "text_value": "string", mapping.hadm_id_column: "integer",
                mapping.seq_num_column: "integer", mapping.note_id_column: "integer",
                mapping.note_description_column: "string", mapping.time_known_column: "bool"}
    for col, kind in {**required, **optional}.items():
        if col in names and not _type_ok(schema.field(col).type, kind):
            expected = {"integer": "an integer type (MEDS: int64)", "timestamp": "a timestamp without time zone "
                        "(MEDS: timestamp[us])", "string": "a string", "bool": "a boolean",
                        "float": "a floating-point number (MEDS: float32)"}[kind]
            raise ValueError(f"{where}: column {col!r} has type {schema.field(col).type}, expected {expected}")
    return names


def _parquet_list(paths: list[Path]) -> str:
    return "[" + ", ".join(sql_str(p) for p in paths) + "]"


class _Reader:
    """The state of one MEDS read: the DuckDB connection, the report and the shard names."""

    def __init__(self, con: duckdb.DuckDBPyConnection, report: LoadReport, shard_names: list[str]):
        self.con = con
        self.report = report
        self.shard_names = shard_names
        self.first: dict[str, str] = {}

    def one(self, sql: str) -> int:
        return int(self.con.execute(sql).fetchall()[0][0] or 0)

    def where(self, file_idx, row_nr) -> str:
        return f"{self.shard_names[int(file_idx)]} row {int(row_nr)}"

    def skip(self, reason: str, rel: str, cond: str, delete: bool = True) -> int:
        """Count the rows of ``rel`` meeting ``cond`` under ``reason`` (first shard/row noted), then delete them."""
        n = self.one(f"SELECT count(*) FROM {rel} WHERE {cond}")
        if n:
            self.report.skip(reason, n)
            first = self.con.execute(f"SELECT file_idx, row_nr FROM {rel} WHERE {cond} "
                                     "ORDER BY file_idx, row_nr LIMIT 1").fetchall()[0]
            self.first.setdefault(reason, self.where(*first))
            if delete:
                self.con.execute(f"DELETE FROM {rel} WHERE {cond}")
        return n


def _classify_sql(m: MedsMapping) -> str:
    """SQL: the code kind of ``code`` by the mapping (NULL: not used)."""
    rx = lambda key: f"regexp_matches(code, {sql_str(getattr(m, key))})"  # noqa: E731
    return f"""CASE WHEN code = {sql_str(m.birth)} THEN 'birth'
                    WHEN code = {sql_str(m.death)} THEN 'death'
                    WHEN {rx('admission')} THEN 'admission'
                    WHEN {rx('discharge')} THEN 'discharge'
                    WHEN {rx('diagnosis')} THEN 'diagnosis'
                    WHEN {rx('procedure')} THEN 'procedure'
                    WHEN {rx('medication')} AND NOT {rx('medication_exclude')} THEN 'medication'
                    WHEN {rx('service')} THEN 'service'
                    WHEN {rx('note')} THEN 'note'
                    WHEN {rx('gender')} THEN 'gender' END"""


def _group(m: MedsMapping, key: str, name: str) -> str:
    """SQL: named group ``name`` of pattern ``key`` in ``code`` ('' when the pattern has none)."""
    g = m.group(key, name)
    return f"regexp_extract(code, {sql_str(getattr(m, key))}, {g})" if g else "''"


def load_meds(src_dir: str | Path, out_dir: str | Path, *, mapping: MedsMapping = DEFAULT_MAPPING,
              source: str = "", source_id: str = "", progress: bool = False) -> Cohort:
    """Read a MEDS folder into a Cohort (see the module docstring); note texts go to
    ``out_dir/note_texts.parquet`` and the load report to ``out_dir/load_report.json``."""
    src = Path(src_dir)
    out = Path(out_dir)
    files = locate_meds(src)
    shard_keys = [k for k in files if k.startswith("data/")]
    shards = [files[k].resolve() for k in shard_keys]
    columns: set[str] = set()
    for key, path in zip(shard_keys, shards):
        columns.update(check_shard_schema(path, f"{src / key}", mapping))
    codes_meta = _check_codes_meta(files.get(CODES_PARQUET), src)
    splits = _read_splits(files.get(SPLITS_PARQUET), src)

    out.mkdir(parents=True, exist_ok=True)
    scratch = out / ".scratch"
    report = LoadReport(source or f"meds:{src}")
    report.info["files"] = {"shards": len(shards), "metadata": [k for k in files if k.startswith("metadata/")]}
    report.info["meds_mapping"] = mapping.origin
    say = (lambda msg: print(f"[{report.source}] {msg}", file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    con = connect(scratch)
    try:
        r = _Reader(con, report, shard_keys)
        say("counting events per code")
        _read_events(r, shards, columns, mapping, scratch, splits)
        say("admissions")
        has_hadm = mapping.hadm_id_column in columns
        _admissions(r, has_hadm)
        say("linking events to admissions")
        _link(r, mapping, has_hadm)
        _std_views(r, mapping, codes_meta, scratch, columns)
        cohort = assemble(con, report, out, source=report.source, source_id=source_id, has_notes=True,
                          progress=progress)
        _describe_missing(r, codes_meta is not None)
        if r.first:
            report.info["meds_first_offending"] = dict(sorted(r.first.items()))
    finally:
        con.close()
        shutil.rmtree(scratch, ignore_errors=True)
    if splits is not None:
        report.info["meds_subject_splits"] = {k: int(v) for k, v in splits["split"].value_counts().sort_index().items()}
    report.save(out / "load_report.json")
    cohort.report = report.to_dict()
    cohort.subject_splits = splits
    return cohort


def _require_columns(path: Path, where: str, wanted: dict[str, str]) -> None:
    """A one-line error naming ``where`` and the column when one of ``wanted`` (name -> kind of
    :func:`_type_ok`) is missing from the parquet file or has another type."""
    schema = _schema_of(path, where)
    for col, kind in wanted.items():
        if col not in schema.names:
            raise ValueError(f"{where}: missing column {col!r}; found {list(schema.names)}")
        if not _type_ok(schema.field(col).type, kind):
            raise ValueError(f"{where}: column {col!r} has type {schema.field(col).type}, expected "
                             f"{'an integer type' if kind == 'integer' else 'a string'}")


def _check_codes_meta(path: Path | None, src: Path) -> Path | None:
    if path is None:
        return None
    _require_columns(path, f"{src / CODES_PARQUET}", {"code": "string", "description": "string"})
    return path.resolve()


def _read_splits(path: Path | None, src: Path) -> pd.DataFrame | None:
    """``metadata/subject_splits.parquet`` as (subject_id int64, split str); errors name the file."""
    if path is None:
        return None
    where = f"{src / SPLITS_PARQUET}"
    _require_columns(path, where, {"subject_id": "integer", "split": "string"})
    import pyarrow.parquet as pq

    df = pq.read_table(path, columns=["subject_id", "split"]).to_pandas()
    bad = df["subject_id"].isna() | df["split"].isna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise ValueError(f"{where}: row {i}: null subject_id or split ({int(bad.sum())} such row(s))")
    df = df.astype({"subject_id": "int64"}).drop_duplicates()
    dup = df["subject_id"].duplicated(keep=False)
    if dup.any():
        sid = int(df.loc[dup, "subject_id"].iloc[0])
        raise ValueError(f"{where}: subject_id {sid} is in several splits "
                         f"({', '.join(sorted(df.loc[df['subject_id'] == sid, 'split']))})")
    return pd.DataFrame({"subject_id": df["subject_id"].to_numpy(dtype="int64"),
                         "split": df["split"].astype(str).to_numpy(dtype=object)}
                        ).sort_values("subject_id", kind="stable").reset_index(drop=True)


def _read_events(r: _Reader, shards: list[Path], columns: set[str], m: MedsMapping, scratch: Path,
                 splits: pd.DataFrame | None) -> None:
    """Pass 1: events per code (classified); pass 2: the used events into ``ev`` (notes into a
    parquet staging file with their texts, their metadata into ``ev`` too)."""
    con, report = r.con, r.report
    con.execute("CREATE TABLE shard_idx (filename VARCHAR, file_idx INTEGER)")
    con.executemany("INSERT INTO shard_idx VALUES (?, ?)", [[str(p), i] for i, p in enumerate(shards)])
    scan = f"read_parquet({_parquet_list(shards)}, filename=true, file_row_number=true, union_by_name=true)"
    con.execute(f"""CREATE TABLE code_counts AS SELECT code, count(*) AS n,
                    count(*) FILTER (WHERE subject_id IS NULL) AS n_nosubj FROM {scan} GROUP BY code""")
    report.read["MEDS events"] = r.one("SELECT sum(n) FROM code_counts")
    con.execute(f"""CREATE TABLE mc AS SELECT code, kind,
        CASE kind WHEN 'admission' THEN {_group(m, 'admission', 'admission_type')} ELSE '' END AS atype,
        CASE kind WHEN 'discharge' THEN regexp_matches(code, {sql_str(m.discharge_died)}) ELSE false END AS died,
        CASE kind WHEN 'diagnosis' THEN {_group(m, 'diagnosis', 'version')}
                  WHEN 'procedure' THEN {_group(m, 'procedure', 'version')} END AS version,
        CASE kind WHEN 'diagnosis' THEN {_group(m, 'diagnosis', 'code')}
                  WHEN 'procedure' THEN {_group(m, 'procedure', 'code')}
                  WHEN 'medication' THEN {_group(m, 'medication', 'code')}
                  WHEN 'service' THEN {_group(m, 'service', 'code')}
                  WHEN 'note' THEN {_group(m, 'note', 'category')}
                  WHEN 'gender' THEN {_group(m, 'gender', 'value')} END AS value
        FROM (SELECT code, {_classify_sql(m)} AS kind FROM code_counts WHERE code IS NOT NULL)""")
    # not used: counted per prefix (info), never a skip
    unused = con.execute("""SELECT split_part(c.code, '//', 1) AS prefix, sum(c.n - c.n_nosubj) FROM code_counts c
                            JOIN mc USING (code) WHERE mc.kind IS NULL GROUP BY 1 ORDER BY 2 DESC, 1""").fetchall()
    if unused:
        report.info["meds_codes_not_used"] = {str(p): int(n) for p, n in unused if n}
    n_excl = r.one(f"""SELECT sum(c.n - c.n_nosubj) FROM code_counts c JOIN mc USING (code)
                       WHERE mc.kind IS NULL AND regexp_matches(c.code, {sql_str(m.medication_exclude)})""")
    if n_excl:
        report.info["meds_medication_excluded"] = (f"{n_excl} medication event(s) match medication_exclude "
                                                   f"({m.medication_exclude}) and are not used")
    by_kind = con.execute("""SELECT coalesce(mc.kind, 'not used'), sum(c.n - c.n_nosubj) FROM code_counts c
                             LEFT JOIN mc USING (code) WHERE c.code IS NOT NULL GROUP BY 1 ORDER BY 1""").fetchall()
    report.info["meds_events_by_kind"] = {str(k): int(n) for k, n in by_kind}
    # null subject_id / code: counted with the first shard and row
    for reason, cond, count in (
            ("MEDS: event with a null subject_id", "subject_id IS NULL", "SELECT sum(n_nosubj) FROM code_counts"),
            ("MEDS: event with a null code", "code IS NULL AND subject_id IS NOT NULL",
             "SELECT sum(n - n_nosubj) FROM code_counts WHERE code IS NULL")):
        n = r.one(count)  # the shards are scanned again only to name the first offending row
        if n:
            report.skip(reason, n)
            row = con.execute(f"SELECT f.file_idx, e.file_row_number FROM {scan} e JOIN shard_idx f USING (filename) "
                              f"WHERE {cond} ORDER BY 1, 2 LIMIT 1").fetchall()[0]
            r.first.setdefault(reason, r.where(*row))

    def col(name: str, typ: str) -> str:
        return f'e."{name}"::{typ}' if name in columns else f"NULL::{typ}"

    common = (f"f.file_idx, e.file_row_number AS row_nr, e.subject_id::BIGINT AS subject_id, "
              f"e.time::TIMESTAMP AS time, e.code, mc.kind, {col(m.hadm_id_column, 'BIGINT')} AS hadm_col, "
              f"{col(m.time_known_column, 'BOOLEAN')} AS time_known")
    joined = f"{scan} e JOIN shard_idx f USING (filename) JOIN mc ON mc.code = e.code"
    con.execute(f"""CREATE TABLE ev AS SELECT {common}, {col(m.seq_num_column, 'INTEGER')} AS seq_num
                    FROM {joined} WHERE mc.kind IS NOT NULL AND mc.kind <> 'note' AND e.subject_id IS NOT NULL""")
    notes_raw = scratch / "meds_notes_raw.parquet"
    with atomic_path(notes_raw) as tmp:
        con.execute(f"""COPY (SELECT {common}, {col(m.note_id_column, 'BIGINT')} AS note_id_col,
                               {col(m.note_description_column, 'VARCHAR')} AS note_desc,
                               {col('text_value', 'VARCHAR')} AS text
                        FROM {joined} WHERE mc.kind = 'note' AND e.subject_id IS NOT NULL)
                        TO {sql_str(tmp)} (FORMAT parquet, ROW_GROUP_SIZE 4096, ROW_GROUP_SIZE_BYTES 16777216)""")
    con.execute(f"CREATE VIEW notes_raw AS SELECT * FROM read_parquet({sql_str(notes_raw)})")
    con.execute("""INSERT INTO ev SELECT file_idx, row_nr, subject_id, time, code, kind, hadm_col, time_known,
                   NULL::INTEGER FROM notes_raw""")
    n_notext = r.one("SELECT count(*) FROM notes_raw WHERE text IS NULL")
    if n_notext:
        report.info["meds_notes_without_text"] = f"{n_notext} note event(s) have no text_value (kept with an empty text)"

    # births: the earliest MEDS_BIRTH per subject; events before it are skipped
    con.execute("CREATE TABLE births AS SELECT subject_id, min(time) AS dob, count(DISTINCT time) AS n FROM ev "
                "WHERE kind = 'birth' AND time IS NOT NULL GROUP BY subject_id")
    n_multi = r.one("SELECT count(*) FROM births WHERE n > 1")
    if n_multi:
        report.info["meds_several_births"] = f"{n_multi} subject(s) have several MEDS_BIRTH times; the earliest is used"
    r.skip("MEDS: event before the subject's MEDS_BIRTH", "ev",
           "kind <> 'birth' AND time IS NOT NULL AND time < (SELECT b.dob FROM births b WHERE b.subject_id = ev.subject_id)")
    r.skip("MEDS: admission or discharge event without a time", "ev",
           "kind IN ('admission', 'discharge') AND time IS NULL")


def _admissions(r: _Reader, has_hadm: bool) -> None:
    """Admission intervals into ``adm`` (hadm_id, subject_id, admittime, dischtime, admission code,
    died-at-discharge, first shard/row), with the counted skips of the module docstring."""
    con = r.con
    cols = "subject_id, time, code, file_idx, row_nr"
    con.execute(f"CREATE TABLE a_ev AS SELECT hadm_col, {cols} FROM ev WHERE kind = 'admission'")
    con.execute(f"CREATE TABLE d_ev AS SELECT hadm_col, {cols} FROM ev WHERE kind = 'discharge'")
    parts = []
    if has_hadm:
        con.execute("""CREATE TABLE a_id AS SELECT * FROM a_ev WHERE hadm_col IS NOT NULL
                       QUALIFY row_number() OVER (PARTITION BY hadm_col ORDER BY time, file_idx, row_nr) = 1""")
        con.execute("CREATE TABLE a_dup AS SELECT * FROM (SELECT * FROM a_ev WHERE hadm_col IS NOT NULL) x "
                    "ANTI JOIN a_id USING (file_idx, row_nr)")
        r.skip("MEDS: second admission event for the same hadm_id (earliest kept)", "a_dup", "true", delete=False)
        con.execute("""CREATE TABLE d_id AS SELECT * FROM d_ev WHERE hadm_col IS NOT NULL
                       QUALIFY row_number() OVER (PARTITION BY hadm_col ORDER BY time, file_idx, row_nr) = 1""")
        con.execute("CREATE TABLE d_dup AS SELECT * FROM (SELECT * FROM d_ev WHERE hadm_col IS NOT NULL) x "
                    "ANTI JOIN d_id USING (file_idx, row_nr)")
        r.skip("MEDS: second discharge event for the same hadm_id (earliest kept)", "d_dup", "true", delete=False)
        parts.append("""SELECT a.hadm_col AS hadm_id, a.subject_id, a.time AS admittime, d.time AS dischtime,
                               a.code AS acode, d.code AS dcode, a.file_idx, a.row_nr,
                               d.file_idx AS d_file, d.row_nr AS d_row
                        FROM a_id a LEFT JOIN d_id d ON d.hadm_col = a.hadm_col""")
        offset = r.one("SELECT coalesce(max(hadm_col), 0) FROM ev")
    else:
        offset = 0
    # events without an id: each admission is closed by the subject's next discharge
    parts.append(f"""SELECT {offset} + row_number() OVER (ORDER BY a.subject_id, a.time, a.file_idx, a.row_nr) AS hadm_id,
                            a.subject_id, a.time AS admittime, d.time AS dischtime, a.code AS acode, d.code AS dcode,
                            a.file_idx, a.row_nr, d.file_idx AS d_file, d.row_nr AS d_row
                     FROM (SELECT * FROM a_ev WHERE hadm_col IS NULL) a
                     ASOF LEFT JOIN (SELECT * FROM d_ev WHERE hadm_col IS NULL) d
                       ON a.subject_id = d.subject_id AND d.time > a.time""")
    con.execute("CREATE TABLE adm AS " + " UNION ALL ".join(parts))
    r.skip("MEDS: admission without a discharge", "adm", "dischtime IS NULL")
    # overlapping admissions: greedy in (admit, id) order, keeping the earlier one
    df = fetch(con, "SELECT hadm_id, subject_id, admittime, dischtime FROM adm WHERE dischtime > admittime "
                    "ORDER BY subject_id, admittime, hadm_id")
    drop: list[int] = []
    last_subject, last_end = None, None
    for hadm, subj, admit, disch in zip(df["hadm_id"].tolist(), df["subject_id"].tolist(),
                                        df["admittime"].tolist(), df["dischtime"].tolist()):
        if subj == last_subject and admit < last_end:
            drop.append(int(hadm))
            continue
        last_subject, last_end = subj, disch
    con.register("overlap_ids", pd.DataFrame({"hadm_id": pd.Series(drop, dtype="int64")}))
    r.skip("MEDS: admission overlapping an earlier admission of the same subject (the earlier kept)", "adm",
           "hadm_id IN (SELECT hadm_id FROM overlap_ids)")
    # discharges closing no kept admission
    con.execute("""CREATE TABLE d_orphan AS SELECT d.* FROM d_ev d
                   ANTI JOIN (SELECT d_file, d_row FROM adm WHERE d_file IS NOT NULL) k
                     ON k.d_file = d.file_idx AND k.d_row = d.row_nr""")
    if has_hadm:  # already counted as second discharges
        con.execute("DELETE FROM d_orphan d USING d_dup x WHERE x.file_idx = d.file_idx AND x.row_nr = d.row_nr")
    r.skip("MEDS: discharge event closing no kept admission", "d_orphan", "true", delete=False)


def _link(r: _Reader, m: MedsMapping, has_hadm: bool) -> None:
    """``lk``: every non-admission event with its admission (``hadm_col``, else by time)."""
    con = r.con
    # with a hadm_id column, a null hadm_id on a note or a death means "no admission": MIMIC notes
    # without HADM_ID, and the patient-level date of death (a date-only dod falls inside a stay that
    # ended alive later that day; linking it would invent an in-hospital death)
    free_by_time = "false" if has_hadm else "true"
    con.execute(f"""CREATE TABLE lk AS
        SELECT e.*, CASE WHEN e.hadm_col IS NOT NULL THEN e.hadm_col
                         WHEN e.kind IN ('note', 'death') AND NOT {free_by_time} THEN NULL
                         WHEN e.time <= a.dischtime THEN a.hadm_id END AS hadm_id
        FROM (SELECT * FROM ev WHERE kind NOT IN ('admission', 'discharge')) e
        ASOF LEFT JOIN (SELECT hadm_id, subject_id, admittime, dischtime FROM adm) a
          ON e.subject_id = a.subject_id AND e.time >= a.admittime""")
    for kind in CODE_KINDS:
        r.skip(f"MEDS: {kind} event in no admission", "lk", f"kind = '{kind}' AND hadm_id IS NULL")
    n_free = r.one("SELECT count(*) FROM lk WHERE kind = 'note' AND hadm_id IS NULL")
    if n_free:
        r.report.info["meds_notes_without_admission"] = (f"{n_free} note(s) fall in no admission; kept without one "
                                                         "(hadm_id <NA>)")


def _std_views(r: _Reader, m: MedsMapping, codes_meta: Path | None, scratch: Path, columns: set[str]) -> None:
    """The standard VARCHAR relations :func:`~mingle_bench.data.build.assemble` reads."""
    con = r.con
    ts = lambda c: f"strftime({c}, '%Y-%m-%d %H:%M:%S.%f')"  # noqa: E731
    con.execute(f"""CREATE VIEW std_patients AS
        WITH subj AS (SELECT DISTINCT subject_id FROM ev),
             g AS (SELECT e.subject_id, arg_min(mc.value, (e.time IS NULL, e.time, e.file_idx, e.row_nr)) AS gender
                   FROM ev e JOIN mc USING (code) WHERE e.kind = 'gender' GROUP BY 1),
             d AS (SELECT subject_id, min(time) AS dod FROM ev WHERE kind = 'death' GROUP BY 1)
        SELECT s.subject_id::VARCHAR AS subject_id, g.gender, strftime(b.dob, '%Y-%m-%d') AS dob,
               strftime(d.dod, '%Y-%m-%d') AS dod
        FROM subj s LEFT JOIN g USING (subject_id) LEFT JOIN births b USING (subject_id) LEFT JOIN d USING (subject_id)""")
    # in-hospital death: a MEDS_DEATH linked to the admission, or a discharge_died discharge code
    con.execute(f"""CREATE VIEW std_admissions AS
        WITH dth AS (SELECT hadm_id, min(time) AS t FROM lk WHERE kind = 'death' AND hadm_id IS NOT NULL GROUP BY 1)
        SELECT a.subject_id::VARCHAR AS subject_id, a.hadm_id::VARCHAR AS hadm_id, {ts('a.admittime')} AS admittime,
               {ts('a.dischtime')} AS dischtime,
               {ts("CASE WHEN dth.t IS NOT NULL THEN dth.t WHEN md.died THEN a.dischtime END")} AS deathtime,
               coalesce(ma.atype, '') AS admission_type,
               CASE WHEN dth.t IS NOT NULL OR coalesce(md.died, false) THEN '1' ELSE '0' END AS hospital_expire_flag
        FROM adm a LEFT JOIN dth ON dth.hadm_id = a.hadm_id
        LEFT JOIN mc ma ON ma.code = a.acode LEFT JOIN mc md ON md.code = a.dcode""")
    untimed = set(m.untimed)

    def code_time(kind: str) -> str:
        if kind in untimed:
            return "NULL::VARCHAR"
        return ts("CASE WHEN coalesce(e.time_known, true) THEN e.time END")

    for rel, kind in (("std_dx", "diagnosis"), ("std_px", "procedure")):
        con.execute(f"""CREATE VIEW {rel} AS SELECT e.subject_id::VARCHAR AS subject_id, e.hadm_id::VARCHAR AS hadm_id,
                        e.seq_num::VARCHAR AS seq_num, mc.value AS icd_code, mc.version AS icd_version,
                        {code_time(kind)} AS time
                        FROM lk e JOIN mc USING (code) WHERE e.kind = '{kind}'""")
    con.execute(f"""CREATE VIEW std_rx AS SELECT e.subject_id::VARCHAR AS subject_id, e.hadm_id::VARCHAR AS hadm_id,
                    {code_time('medication')} AS starttime, mc.value AS drug
                    FROM lk e JOIN mc USING (code) WHERE e.kind = 'medication'""")
    con.execute(f"""CREATE VIEW std_svc AS SELECT e.subject_id::VARCHAR AS subject_id, e.hadm_id::VARCHAR AS hadm_id,
                    {code_time('service')} AS transfertime, mc.value AS curr_service
                    FROM lk e JOIN mc USING (code) WHERE e.kind = 'service'""")
    for rel, key in (("std_dxdict", "diagnosis"), ("std_pxdict", "procedure")):
        if codes_meta is None:
            con.execute(f"CREATE VIEW {rel} AS SELECT NULL::VARCHAR AS icd_code, NULL::VARCHAR AS icd_version, "
                        "NULL::VARCHAR AS title WHERE false")
            continue
        pat = sql_str(getattr(m, key))
        con.execute(f"""CREATE VIEW {rel} AS SELECT {_group(m, key, 'code')} AS icd_code,
                        {_group(m, key, 'version')} AS icd_version, description AS title
                        FROM read_parquet({sql_str(codes_meta)}) WHERE code IS NOT NULL AND regexp_matches(code, {pat})""")
    # notes: link info joined back to the staged texts; note_id numbered when the column is absent
    std_notes = scratch / "meds_notes_std.parquet"
    note_id = ("n.note_id_col" if m.note_id_column in columns else
               "row_number() OVER (ORDER BY n.subject_id, n.time, n.code, n.text, n.file_idx, n.row_nr)")
    with atomic_path(std_notes) as tmp:
        con.execute(f"""COPY (
            SELECT {note_id}::VARCHAR AS note_id, n.subject_id::VARCHAR AS subject_id, l.hadm_id::VARCHAR AS hadm_id,
                   strftime(n.time, '%Y-%m-%d') AS chartdate,
                   CASE WHEN coalesce(n.time_known, true) THEN {ts('n.time')} END AS charttime,
                   mc.value AS category, coalesce(n.note_desc, '') AS description, '' AS iserror,
                   coalesce(n.text, '') AS text
            FROM notes_raw n JOIN lk l ON l.file_idx = n.file_idx AND l.row_nr = n.row_nr AND l.kind = 'note'
            JOIN mc ON mc.code = n.code)
            TO {sql_str(tmp)} (FORMAT parquet, ROW_GROUP_SIZE 4096, ROW_GROUP_SIZE_BYTES 16777216)""")
    con.execute(f"CREATE VIEW std_notes AS SELECT * FROM read_parquet({sql_str(std_notes)})")


def _describe_missing(r: _Reader, has_meta: bool) -> None:
    """Codes in use without a description in metadata/codes.parquet: counted, with examples."""
    n = r.one("SELECT count(*) FROM c_texts WHERE missing = 1")
    if not n:
        return
    examples = [x for (x,) in r.con.execute("SELECT code_id FROM c_texts WHERE missing = 1 ORDER BY code_id "
                                            f"LIMIT {_EXAMPLES}").fetchall()]
    where = "metadata/codes.parquet" if has_meta else "metadata/codes.parquet (absent)"
    r.report.info["meds_codes_without_description"] = (
        f"{n} diagnosis/procedure code(s) in use have no description in {where}; their text is the code itself, "
        f"e.g. {', '.join(examples)}")


__all__ = ["check_shard_schema", "load_meds", "locate_meds"]
