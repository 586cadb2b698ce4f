"""The one cohort representation every downstream stage reads.

A :class:`Cohort` is a set of typed pandas tables. Sources (MIMIC-III, MIMIC-IV, the
synthetic generator) produce it; tasks consume it. Note *texts* are not held in memory:
``notes`` carries the note metadata and texts are read on demand from the cohort's
parquet cache (see :meth:`Cohort.read_note_texts`), so a multi-GB NOTEEVENTS never has
to fit in RAM.

Tables and columns (dtypes are enforced by :meth:`Cohort.validate`):

``patients``
    ``patient_id`` int64, ``sex`` str ("M"/"F"/""), ``dob`` datetime64, ``dod`` datetime64 (NaT if alive).
``admissions``
    ``hadm_id`` int64, ``patient_id`` int64, ``admittime``/``dischtime``/``deathtime`` datetime64
    (``deathtime`` NaT unless died in hospital), ``admission_type`` str,
    ``hospital_expire_flag`` int8 (0/1), ``age`` float64 (years at admission, capped at 90;
    MIMIC shifts ages over 89 to ~300), ``age_capped`` bool.
``codes``
    one row per (admission, code) event: ``patient_id`` int64, ``hadm_id`` int64,
    ``code_type`` str in :data:`CODE_TYPES`, ``code_id`` str (the code's identity, unique across
    types and ICD versions, see :func:`make_code_id`), ``code`` str (as released, ICD-9 without
    a dot), ``icd_version`` Int8 (9, 10 or <NA> for drugs/services), ``seq_num`` Int32 (<NA> if
    none), ``time`` datetime64 (NaT when the source has no time for it).
``code_texts``
    ``code_id`` str (unique), ``code_type`` str, ``text`` str (description from the
    dictionaries; the raw code when the dictionary lacks it).
``notes``
    metadata only: ``note_id`` int64, ``patient_id`` int64, ``hadm_id`` Int64 (<NA> when the
    source links no admission), ``chartdate`` datetime64 (day), ``charttime`` datetime64 (NaT
    when only a date is known), ``category`` str, ``description`` str, ``n_chars`` int64.
``subject_splits`` (optional, ``None`` unless the source defines splits: MEDS
``metadata/subject_splits.parquet``)
    ``subject_id`` int64, ``split`` str (the source's split names, e.g. train / tuning / held_out);
    saved as ``subject_splits.parquet`` only when present (covered by the ``meta.json`` checksums).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pandas as pd

from mingle_bench.io import atomic_path, atomic_write_text, file_sha256

CODE_TYPES = ("diagnosis", "procedure", "medication", "service")
_PREFIX = {"diagnosis": "dx", "procedure": "px", "medication": "rx", "service": "svc"}

SCHEMA: dict[str, dict[str, str]] = {
    "patients": {"patient_id": "int64", "sex": "object", "dob": "datetime64[ns]", "dod": "datetime64[ns]"},
    "admissions": {
        "hadm_id": "int64", "patient_id": "int64", "admittime": "datetime64[ns]",
        "dischtime": "datetime64[ns]", "deathtime": "datetime64[ns]", "admission_type": "object",
        "hospital_expire_flag": "int8", "age": "float64", "age_capped": "bool",
    },
    "codes": {
        "patient_id": "int64", "hadm_id": "int64", "code_type": "object", "code_id": "object",
        "code": "object", "icd_version": "Int8", "seq_num": "Int32", "time": "datetime64[ns]",
    },
    "code_texts": {"code_id": "object", "code_type": "object", "text": "object"},
    "notes": {
        "note_id": "int64", "patient_id": "int64", "hadm_id": "Int64", "chartdate": "datetime64[ns]",
        "charttime": "datetime64[ns]", "category": "object", "description": "object", "n_chars": "int64",
    },
}
TABLES = tuple(SCHEMA)
SPLITS_SCHEMA = {"subject_id": "int64", "split": "object"}
SPLITS_FILE = "subject_splits.parquet"


class CorruptCache(ValueError):
    """A cached file that fails its check (checksum, missing file, unreadable metadata)."""

    def __init__(self, path: str | os.PathLike, why: str):
        self.path = Path(path)
        super().__init__(f"{path}: {why}")


def make_code_id(code_type: str, code: str, icd_version: int | None = None) -> str:
    """The identity of a code: type, ICD version where it has one, and the code as released.

    >>> make_code_id("diagnosis", "4019", 9)
    'dx9:4019'
    >>> make_code_id("medication", "heparin")
    'rx:heparin'
    """
    if code_type not in _PREFIX:
        raise ValueError(f"code_type must be one of {CODE_TYPES}, got {code_type!r}")
    version = "" if icd_version is None or pd.isna(icd_version) else str(int(icd_version))
    return f"{_PREFIX[code_type]}{version}:{code}"


def empty_table(name: str) -> pd.DataFrame:
    """An empty table with the declared columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in SCHEMA[name].items()})


@dataclass
class Cohort:
    patients: pd.DataFrame
    admissions: pd.DataFrame
    codes: pd.DataFrame
    code_texts: pd.DataFrame
    notes: pd.DataFrame
    source: str = ""
    source_id: str = ""  # content hash of the source files; keys caches
    report: dict[str, Any] = field(default_factory=dict)  # load report: read counts, skipped reasons
    notes_text_path: str | None = None  # parquet file with columns note_id, text
    subject_splits: pd.DataFrame | None = None  # the source's own subject splits (MEDS); None: none

    def validate(self) -> "Cohort":
        """Check every table has the declared columns and dtypes; raise naming the table and column."""
        for name, cols in SCHEMA.items():
            df = getattr(self, name)
            for col, dtype in cols.items():
                if col not in df.columns:
                    raise ValueError(f"cohort table {name!r} lacks column {col!r}")
                if str(df[col].dtype) != dtype and not (dtype == "object" and str(df[col].dtype) in ("str", "string")):
                    raise ValueError(f"cohort table {name!r} column {col!r} has dtype {df[col].dtype}, expected {dtype}")
        if self.subject_splits is not None:
            ss = self.subject_splits
            if list(ss.columns) != list(SPLITS_SCHEMA) or str(ss["subject_id"].dtype) != "int64":
                raise ValueError(f"cohort subject_splits must have columns subject_id int64, split str; got "
                                 f"{dict(ss.dtypes.astype(str))}")
        return self

    def read_note_texts(self, note_ids: Sequence[int]) -> dict[int, str]:
        """Texts of the given notes, read from the parquet store (only those rows)."""
        if not len(note_ids):
            return {}
        if self.notes_text_path is None:
            raise ValueError("this cohort has no note text store (notes_text_path is None)")
        import duckdb

        con = duckdb.connect()
        try:
            ids = pd.DataFrame({"note_id": pd.Series(list(note_ids), dtype="int64")})
            con.register("wanted", ids)
            rows = con.execute(
                "SELECT t.note_id, t.text FROM read_parquet(?) t JOIN wanted USING (note_id)",
                [self.notes_text_path],
            ).fetchall()
        finally:
            con.close()
        return {int(i): t for i, t in rows}

    def iter_note_texts(self, note_ids: Iterable[int], batch_size: int = 2048) -> Iterator[dict[int, str]]:
        """Stream note texts in batches, for memory-bounded embedding of large note sets."""
        batch: list[int] = []
        for nid in note_ids:
            batch.append(int(nid))
            if len(batch) >= batch_size:
                yield self.read_note_texts(batch)
                batch = []
        if batch:
            yield self.read_note_texts(batch)

    # -- persistence -------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write every table as parquet plus ``meta.json``. The note text store is copied
        by the source that created it; here only its relative location is recorded."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name in TABLES:
            with atomic_path(out / f"{name}.parquet") as tmp:
                getattr(self, name).to_parquet(tmp, index=False)
        if self.subject_splits is not None:
            with atomic_path(out / SPLITS_FILE) as tmp:
                self.subject_splits.to_parquet(tmp, index=False)
        files = sorted(p.name for p in out.glob("*.parquet"))
        meta = {
            "source": self.source,
            "source_id": self.source_id,
            "report": self.report,
            "notes_text_path": os.path.relpath(self.notes_text_path, out) if self.notes_text_path else None,
            "sha256": {name: file_sha256(out / name) for name in files},
        }
        atomic_write_text(out / "meta.json", json.dumps(meta, indent=2, default=str))
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Cohort":
        """Read a saved cohort; every parquet file is checked against the sha256 recorded in
        ``meta.json`` first (:class:`CorruptCache` names the file that differs)."""
        d = Path(directory)
        if not (d / "meta.json").exists():
            raise FileNotFoundError(f"{d}: not a saved cohort (meta.json missing)")
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptCache(d / "meta.json", f"not valid JSON ({exc})") from None
        sums = meta.get("sha256") if isinstance(meta, dict) else None
        if not isinstance(sums, dict) or not sums:
            raise CorruptCache(d / "meta.json", "no checksums (written before they were recorded)")
        for name, want in sorted(sums.items()):
            path = d / name
            if not path.is_file():
                raise CorruptCache(path, "missing")
            if file_sha256(path) != want:
                raise CorruptCache(path, "sha256 differs from the one recorded at write time")
        tables = {name: pd.read_parquet(d / f"{name}.parquet") for name in TABLES}
        text_path = str(d / meta["notes_text_path"]) if meta.get("notes_text_path") else None
        splits = None
        if SPLITS_FILE in sums:  # only cohorts whose source has splits (MEDS) carry the file
            splits = pd.read_parquet(d / SPLITS_FILE)
            splits = pd.DataFrame({"subject_id": splits["subject_id"].astype("int64"),
                                   "split": splits["split"].astype(str).astype(object)})
        return cls(**tables, source=meta["source"], source_id=meta["source_id"],
                   report=meta.get("report", {}), notes_text_path=text_path, subject_splits=splits).validate()
