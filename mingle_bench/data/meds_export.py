"""Write any :class:`~mingle_bench.data.cohort.Cohort` as a MEDS 0.4 dataset
(``mingle-bench data export --format meds``); read it back with ``--data meds:DIR``.

The codes follow the conventions of :mod:`mingle_bench.data.meds_mapping` (the reader's default
mapping), built by its ``*_code`` functions. The folder::

    data/<n>.parquet                 the events, in shards of ``shard_size`` subjects
    metadata/codes.parquet           one row per distinct code written
    metadata/subject_splits.parquet  subject_id, split (train / tuning / held_out)
    metadata/dataset.json            dataset name and version, ETL, MEDS version (no timestamp)

Events (one row each; ``numeric_value`` is always null):

=================================  ==========================================  =======================
code                               when                                        time (``time_known``)
=================================  ==========================================  =======================
``GENDER//<sex>``                  the patient's sex is known (not empty)      null, static (true)
``MEDS_BIRTH``                     the date of birth is known                  dob (true)
``HOSPITAL_ADMISSION//<type>``     every admission, with ``hadm_id``           admittime (true)
``HOSPITAL_DISCHARGE//DIED``       ``hospital_expire_flag`` 1, ``hadm_id``      dischtime (true)
``HOSPITAL_DISCHARGE//UNK``        every other admission, ``hadm_id``          dischtime (true)
``MEDS_DEATH`` with ``hadm_id``    in-hospital death (flag 1)                  deathtime, else the
                                                                               dischtime (true)
``MEDS_DEATH`` without ``hadm_id`` ``dod`` known and not the calendar day of   dod (true)
                                   one of the patient's in-hospital deaths
``DIAGNOSIS//ICD//<v>//<code>``,   every code row, with ``hadm_id`` and        the code's time, else
``PROCEDURE//ICD//<v>//<code>``,   ``seq_num``                                 its admission's
``MEDICATION//START//<drug>``,                                                 dischtime (false)
``SERVICE//<service>``
``NOTE//<category>``               every note: text in ``text_value``,         charttime (true), else
                                   ``note_id``, ``note_description``,          chartdate (false)
                                   ``hadm_id`` (null without admission)
=================================  ==========================================  =======================

MIMIC's ``dod`` is a date while ``deathtime`` has a time of day, so "the same death" is judged
by calendar day; a reader restores ``dod`` from the in-hospital ``MEDS_DEATH`` when no
subject-level one is written.

Order and sharding. Subjects are in ascending ``subject_id``; each shard holds the next
``shard_size`` subjects of that order (a block without any event writes no shard; names are
``0.parquet``, ``1.parquet``, ... zero-padded to one width), so each subject is in exactly one
shard and the shards read in name order list subjects ascending. Within a subject, events
are sorted by time with the null-time (static) events first; events at the same time are
ordered by kind (:data:`TIE_ORDER`: gender, birth, admission, diagnosis, procedure, service,
medication, note, discharge, death, so that codes stamped at the discharge time precede the
discharge), then ``hadm_id``, ``seq_num`` (nulls last), ``code`` and ``note_id``.

Events whose time and stand-in time are both missing are left out and counted
(``skipped_no_time``; the MIMIC loaders keep no such rows). A note whose text the store lacks is written
with a null ``text_value`` and counted (``notes_without_text``).

Memory: the cohort's tables (and one patient-sorted copy of them) plus one shard's events at a
time; note texts are read for that shard's notes only, in batches
(:meth:`Cohort.iter_note_texts`). ``synthetic:mimic`` (46,000 subjects, 4.9 M events, 255k
notes) exports in about 20 s with a peak of 1.6 GB.

Splits. ``metadata/subject_splits.parquet`` is the cohort's own ``subject_splits`` table when it
has one; otherwise a whole-cohort split, :func:`mingle_bench.splits.split_patients` of every
patient id with seed 0 (train -> ``train``, val -> ``tuning``, test -> ``held_out``). This split
is *not* a task's split: a task splits its own sample patients (the patients with an index
admission), so the same seed gives different groups there.

Determinism. The same cohort gives byte-identical files (no creation time in ``dataset.json``;
the data set name keeps the source kind and the folder's *name*, not its full path). The
folder is written into a hidden staging folder beside ``out_dir``, every table is validated
against the ``meds`` schemas, and only then is the folder renamed into place. ``out_dir`` must
be absent or empty; ``force`` replaces an earlier export (a folder holding only ``data/`` and
``metadata/``) and never deletes anything else.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mingle_bench.data.cohort import Cohort
from mingle_bench.data.meds_mapping import (
    DEFAULT_MAPPING,
    SPLIT_TO_MEDS,
    admission_code,
    discharge_code,
    gender_code,
    icd_code,
    medication_code,
    note_code,
    service_code,
)

#: subjects per data shard (a real MIMIC-III shard of 2,000 subjects holds ~90k notes, ~170 MB text)
DEFAULT_SHARD_SIZE = 2000
#: the order of events that share a subject and a time (by kind)
TIE_ORDER = ("gender", "birth", "admission", "diagnosis", "procedure", "service", "medication", "note",
             "discharge", "death")
_RANK = {k: i for i, k in enumerate(TIE_ORDER)}
#: the columns this exporter writes beside the MEDS ones
_M = DEFAULT_MAPPING  # the reader's default names for the extra columns and the birth/death codes
EXTRA_COLUMNS = (_M.hadm_id_column, _M.seq_num_column, _M.note_id_column, _M.note_description_column,
                 _M.time_known_column)
#: the code families counted in the export summary, by the kind of event
FAMILIES = ("gender", "birth", "admission", "discharge", "death_in_hospital", "death_other", "diagnosis",
            "procedure", "medication", "service", "note")


def data_schema():  # noqa: ANN201 - pyarrow is imported lazily
    """The pyarrow schema of the data shards: the MEDS columns, then :data:`EXTRA_COLUMNS` (all
    fields nullable in the file; ``subject_id``, ``code`` and ``time_known`` are never null)."""
    import pyarrow as pa

    return pa.schema([
        pa.field("subject_id", pa.int64()),
        pa.field("time", pa.timestamp("us")),
        pa.field("code", pa.string()),
        pa.field("numeric_value", pa.float32()),
        pa.field("text_value", pa.large_string()),
        *(pa.field(name, typ) for name, typ in zip(EXTRA_COLUMNS, (pa.int64(), pa.int32(), pa.int64(), pa.string(),
                                                                     pa.bool_()))),
    ])


# -- the output folder ---------------------------------------------------------------------------
def _looks_like_meds(folder: Path) -> bool:
    names = {p.name for p in folder.iterdir()}
    return bool(names) and names <= {"data", "metadata"} and (folder / "metadata").is_dir()


def check_out_dir(out_dir: str | os.PathLike, force: bool = False) -> Path:
    """``out_dir`` as a Path, or a one-line error: it is a file, or a non-empty folder without
    ``force``, or (with ``force``) a non-empty folder that is not an earlier MEDS export (only
    ``data/`` and ``metadata/``): ``--force`` never deletes anything else."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ValueError(f"--out {out}: folder is not empty; pass --force to replace an earlier export")
        if not _looks_like_meds(out):
            raise ValueError(f"--out {out}: folder is not empty and is not a MEDS export (only data/ and "
                             "metadata/); --force replaces earlier exports only, pick another folder")
    return out


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``; an existing ``out`` (empty, or an export allowed by
    :func:`check_out_dir`) is moved aside first and removed after the rename."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.replace(out, old / "x")
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# -- events --------------------------------------------------------------------------------------
_DTYPES = {"subject_id": "int64", "time": "datetime64[ns]", "code": "object", "text_value": "object",
           "hadm_id": "Int64", "seq_num": "Int32", "note_id": "Int64", "note_description": "object",
           "time_known": "bool", "_rank": "int8", "_family": "object"}


def _frame(family: str, n: int, **cols: Any) -> pd.DataFrame:
    """``n`` events of one family with every column of :data:`_DTYPES` (absent ones null)."""
    data: dict[str, pd.Series] = {}
    cols.setdefault("time_known", True)
    cols["_rank"] = _RANK["death" if family.startswith("death") else family]
    cols["_family"] = family
    for name, dtype in _DTYPES.items():
        v = cols.get(name)
        if isinstance(v, (pd.Series, pd.Index)):
            s = pd.Series(v.array if isinstance(v, pd.Series) else v, copy=False).reset_index(drop=True)
            if dtype == "object":
                s = s.astype(object).where(s.notna(), None)
            data[name] = s.astype(dtype)
        else:
            data[name] = pd.Series([v] * n, dtype=dtype)
    return pd.DataFrame(data)


def _codes_to_meds(codes: pd.DataFrame) -> dict[str, str]:
    """code_id -> MEDS code, built once per distinct code."""
    out: dict[str, str] = {}
    distinct = codes.drop_duplicates("code_id")[["code_id", "code_type", "code", "icd_version"]]
    for row in distinct.itertuples(index=False):
        if row.code_type in ("diagnosis", "procedure"):
            if pd.isna(row.icd_version):
                raise ValueError(f"cohort code {row.code_id!r}: a {row.code_type} without an ICD version cannot be "
                                 f"written as {row.code_type.upper()}//ICD//<version>//<code>")
            out[row.code_id] = icd_code(row.code_type, int(row.icd_version), str(row.code))
        elif row.code_type == "medication":
            out[row.code_id] = medication_code(str(row.code))
        elif row.code_type == "service":
            out[row.code_id] = service_code(str(row.code))
        else:
            raise ValueError(f"cohort code {row.code_id!r}: unknown code_type {row.code_type!r}")
    return out


def _by_patient(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    df = df.sort_values("patient_id", kind="mergesort").reset_index(drop=True)
    return df, df["patient_id"].to_numpy(dtype=np.int64)


class _Events:
    """The cohort's tables sorted by patient, their MEDS codes computed once; :meth:`shard`
    builds the events of a range of subjects, :attr:`descriptions` every code's description."""

    def __init__(self, cohort: Cohort):
        self.cohort = cohort
        adm = cohort.admissions
        died = adm["hospital_expire_flag"].astype(int) == 1
        death_time = adm["deathtime"].where(adm["deathtime"].notna(), adm["dischtime"])
        types = adm["admission_type"].astype(object).where(adm["admission_type"].notna(), "")
        adm_codes = {t: admission_code(str(t)) for t in sorted(set(types))}
        adm = adm.assign(_died=died, _death_time=death_time.where(died),
                         _death_from_disch=died & adm["deathtime"].isna(),
                         _code=types.map(adm_codes), _disch_code=died.map({True: discharge_code(True),
                                                                          False: discharge_code(False)}))
        meds_codes = _codes_to_meds(cohort.codes)
        codes = cohort.codes.assign(_code=cohort.codes["code_id"].map(meds_codes))
        codes = codes.merge(cohort.admissions[["hadm_id", "dischtime"]], on="hadm_id", how="left", sort=False)
        # in-hospital death days, to leave out the patient-level death that restates one
        dead = adm.loc[adm["_death_time"].notna(), ["patient_id", "_death_time"]]
        self.death_days = set(zip(dead["patient_id"].astype("int64"), dead["_death_time"].dt.normalize()))
        self.patients, self._p = _by_patient(cohort.patients)
        self.admissions, self._a = _by_patient(adm)
        self.codes, self._c = _by_patient(codes)
        self.notes_df, self._n = _by_patient(cohort.notes)

        texts = dict(zip(cohort.code_texts["code_id"], cohort.code_texts["text"]))
        desc: dict[str, str | None] = {_M.birth: "Birth", _M.death: "Death",
                                       discharge_code(True): "Hospital discharge: died in hospital",
                                       discharge_code(False): "Hospital discharge: discharge location unknown"}
        for t, code in adm_codes.items():
            desc[code] = f"Hospital admission: {t}" if t else "Hospital admission"
        for sex in sorted(set(cohort.patients["sex"].dropna().astype(str).str.strip()) - {""}):
            desc[gender_code(sex)] = f"Sex: {sex}"
        for code_id, code in meds_codes.items():
            text = texts.get(code_id)
            desc[code] = None if text is None or pd.isna(text) else str(text)
        for cat in sorted(set(cohort.notes["category"].dropna().astype(str))):
            desc[note_code(cat)] = cat
        self.descriptions = desc

    def subject_ids(self) -> np.ndarray:
        """Every patient id of the cohort (any table), ascending."""
        return np.unique(np.concatenate([self._p, self._a, self._c, self._n]))

    @staticmethod
    def _slice(df: pd.DataFrame, ids: np.ndarray, lo: int, hi: int) -> pd.DataFrame:
        return df.iloc[np.searchsorted(ids, lo, "left"):np.searchsorted(ids, hi, "right")]

    def shard(self, lo: int, hi: int, counts: dict[str, int]) -> pd.DataFrame:
        """The events of subjects ``lo..hi`` (inclusive), sorted (see the module docstring)."""
        frames: list[pd.DataFrame] = []
        p = self._slice(self.patients, self._p, lo, hi)
        sex = p["sex"].astype(object).where(p["sex"].notna(), "").astype(str).str.strip()
        g = p[sex != ""]
        frames.append(_frame("gender", len(g), subject_id=g["patient_id"], code=sex[sex != ""].map(gender_code)))
        b = p[p["dob"].notna()]
        frames.append(_frame("birth", len(b), subject_id=b["patient_id"], time=b["dob"], code=_M.birth))
        d = p[p["dod"].notna()]
        keep = [(int(pid), day) not in self.death_days for pid, day in zip(d["patient_id"], d["dod"].dt.normalize())]
        d = d[np.asarray(keep, dtype=bool)]
        frames.append(_frame("death_other", len(d), subject_id=d["patient_id"], time=d["dod"], code=_M.death))

        a = self._slice(self.admissions, self._a, lo, hi)
        for family, col, code in (("admission", "admittime", "_code"), ("discharge", "dischtime", "_disch_code")):
            ok = a[a[col].notna()]
            counts["skipped_no_time"] += len(a) - len(ok)
            frames.append(_frame(family, len(ok), subject_id=ok["patient_id"], time=ok[col], code=ok[code],
                                 hadm_id=ok["hadm_id"]))
        x = a[a["_death_time"].notna()]
        counts["deaths_time_from_discharge"] += int(x["_death_from_disch"].sum())
        frames.append(_frame("death_in_hospital", len(x), subject_id=x["patient_id"], time=x["_death_time"],
                             code=_M.death, hadm_id=x["hadm_id"]))

        c = self._slice(self.codes, self._c, lo, hi)
        known = c["time"].notna()
        time = c["time"].where(known, c["dischtime"])
        counts["skipped_no_time"] += int(time.isna().sum())
        counts["codes_time_from_discharge"] += int((~known & time.notna()).sum())
        for family in ("diagnosis", "procedure", "medication", "service"):
            m = (c["code_type"] == family).to_numpy() & time.notna().to_numpy()
            cf = c[m]
            frames.append(_frame(family, len(cf), subject_id=cf["patient_id"], time=time[m], code=cf["_code"],
                                 hadm_id=cf["hadm_id"], seq_num=cf["seq_num"], time_known=known[m]))

        n = self._slice(self.notes_df, self._n, lo, hi)
        known = n["charttime"].notna()
        time = n["charttime"].where(known, n["chartdate"])
        counts["skipped_no_time"] += int(time.isna().sum())
        n, known, time = n[time.notna()], known[time.notna()], time[time.notna()]
        counts["notes_time_from_chartdate"] += int((~known).sum())
        texts: dict[int, str] = {}
        if len(n) and self.cohort.notes_text_path is not None:
            for batch in self.cohort.iter_note_texts(n["note_id"].tolist()):
                texts.update(batch)
        text = n["note_id"].map(texts)
        counts["notes_without_text"] += int(text.isna().sum())
        frames.append(_frame("note", len(n), subject_id=n["patient_id"], time=time,
                             code=n["category"].astype(str).map(note_code), text_value=text, hadm_id=n["hadm_id"],
                             note_id=n["note_id"], note_description=n["description"], time_known=known))

        ev = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) \
            else _frame("gender", 0)
        ev["_has_time"] = ev["time"].notna()
        ev = ev.sort_values(["subject_id", "_has_time", "time", "_rank", "hadm_id", "seq_num", "code", "note_id"],
                            na_position="last", kind="mergesort").reset_index(drop=True)
        for family, k in ev["_family"].value_counts().items():
            counts[family] += int(k)
        return ev


def _to_arrow(ev: pd.DataFrame):  # noqa: ANN202 - pyarrow is imported lazily
    import pyarrow as pa

    schema = data_schema()
    n = len(ev)
    arrays = [
        pa.array(ev["subject_id"].to_numpy(dtype=np.int64), pa.int64()),
        pa.array(ev["time"].to_numpy().astype("datetime64[us]"), pa.timestamp("us"), from_pandas=True),
        pa.array(ev["code"].to_numpy(dtype=object), pa.string()),
        pa.nulls(n, pa.float32()),
        pa.array(ev["text_value"].to_numpy(dtype=object), pa.large_string(), from_pandas=True),
        pa.array(ev["hadm_id"], pa.int64(), from_pandas=True),
        pa.array(ev["seq_num"], pa.int32(), from_pandas=True),
        pa.array(ev["note_id"], pa.int64(), from_pandas=True),
        pa.array(ev["note_description"].to_numpy(dtype=object), pa.string(), from_pandas=True),
        pa.array(ev["time_known"].to_numpy(dtype=bool), pa.bool_()),
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _validate(schema_cls, table, what: str) -> None:  # noqa: ANN001 - a meds schema class, a table
    try:
        schema_cls.validate(table)
    except Exception as exc:  # flexible_schema raises its own error types
        raise ValueError(f"MEDS export: {what} fails the meds {schema_cls.__name__} ({exc})") from None


# -- splits and metadata ---------------------------------------------------------------------
def subject_splits(cohort: Cohort, subjects: np.ndarray) -> pd.DataFrame:
    """subject_id, split for ``subjects``: the cohort's own ``subject_splits`` when it has one,
    else :func:`~mingle_bench.splits.split_patients` of every patient id of the cohort with seed
    0, named train / tuning / held_out. That whole-cohort split is not a task's split (tasks
    split their sample patients)."""
    own = getattr(cohort, "subject_splits", None)
    if own is not None:
        missing = {"subject_id", "split"} - set(own.columns)
        if missing:
            raise ValueError(f"cohort.subject_splits lacks column(s) {sorted(missing)}")
        if own["subject_id"].duplicated().any():
            dup = int(own.loc[own["subject_id"].duplicated(), "subject_id"].iloc[0])
            raise ValueError(f"cohort.subject_splits lists subject {dup} more than once")
        df = pd.DataFrame({"subject_id": own["subject_id"].astype("int64"),
                           "split": own["split"].astype(str)})
    else:
        from mingle_bench.splits import split_patients

        ids = np.unique(np.concatenate([cohort.patients["patient_id"].to_numpy(dtype=np.int64), subjects]))
        manifest = split_patients(ids, seed=0)
        parts = [(getattr(manifest, k), v) for k, v in SPLIT_TO_MEDS.items()]
        df = pd.DataFrame({"subject_id": np.concatenate([np.asarray(p, dtype=np.int64) for p, _ in parts]),
                           "split": np.concatenate([[v] * len(p) for p, v in parts]).astype(object)})
    df = df[df["subject_id"].isin(subjects)]
    return df.sort_values("subject_id", kind="mergesort").reset_index(drop=True)


def dataset_name(source: str) -> str:
    """The cohort's source label with a folder argument cut to the folder's name
    (``mimic3:/data/mimic-iii-1.4`` -> ``mimic3:mimic-iii-1.4``): no machine path in the output."""
    kind, sep, arg = (source or "").partition(":")
    if sep and ("/" in arg or os.sep in arg):
        directory, _, rest = arg.partition(";")
        arg = Path(directory.rstrip("/")).name
    return f"{kind}{sep}{arg}" if source else "mingle-bench cohort"


def dataset_metadata(cohort: Cohort) -> dict[str, Any]:
    """The ``metadata/dataset.json`` object (no creation time: exports are byte-reproducible)."""
    import importlib.metadata

    import mingle_bench

    return {
        "dataset_name": dataset_name(cohort.source),
        "dataset_version": cohort.source_id or "",
        "etl_name": "mingle-bench",
        "etl_version": mingle_bench.__version__,
        "meds_version": importlib.metadata.version("meds"),
        "raw_source_id_columns": [_M.hadm_id_column, _M.note_id_column],
        "other_extension_columns": [_M.seq_num_column, _M.note_description_column, _M.time_known_column],
    }


# -- the export ----------------------------------------------------------------------------------
def export_meds(cohort: Cohort, out_dir: str | os.PathLike, *, shard_size: int = DEFAULT_SHARD_SIZE,
                force: bool = False, progress: bool = False) -> dict[str, int]:
    """Write ``cohort`` as a MEDS 0.4 dataset in ``out_dir`` (see the module docstring).

    ``out_dir`` must be absent or empty, or (``force``) an earlier export, which is replaced.
    Returns counts: ``events``, events per family (:data:`FAMILIES`), ``subjects``, ``shards``,
    ``codes`` (distinct), the splits' sizes (``split_<name>``), ``bytes`` (all files), and the
    stand-ins used: ``codes_time_from_discharge``, ``notes_time_from_chartdate``,
    ``deaths_time_from_discharge``, ``notes_without_text``, ``skipped_no_time``."""
    import meds
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mingle_bench.progress import progress_bar

    if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
        raise ValueError(f"--shard-size must be a positive integer, got {shard_size!r}")
    out = check_out_dir(out_dir, force)
    cohort.validate()
    events = _Events(cohort)
    ids = events.subject_ids()
    counts: dict[str, int] = {k: 0 for k in FAMILIES}
    counts.update(codes_time_from_discharge=0, notes_time_from_chartdate=0, deaths_time_from_discharge=0,
                  notes_without_text=0, skipped_no_time=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.meds-"))
    try:
        os.chmod(staging, 0o777 & ~_umask())
        data = staging / meds.data_subdirectory
        data.mkdir()
        starts = list(range(0, len(ids), shard_size))
        width = len(str(max(len(starts) - 1, 0)))
        written: list[np.ndarray] = []
        codes_seen: set[str] = set()
        total = 0
        with progress_bar("MEDS export", total=len(starts), unit="shards", enabled=progress) as bar:
            for start in starts:
                block = ids[start:start + shard_size]
                ev = events.shard(int(block[0]), int(block[-1]), counts)
                bar.advance(1)
                if not len(ev):
                    continue
                table = _to_arrow(ev)
                name = f"{len(written):0{width}d}.parquet"
                _validate(meds.DataSchema, table, f"{meds.data_subdirectory}/{name}")
                pq.write_table(table, data / name, compression="zstd")
                written.append(ev["subject_id"].unique())
                codes_seen.update(ev["code"].unique())
                total += len(ev)
                del ev, table
        subjects = np.concatenate(written) if written else np.zeros(0, dtype=np.int64)

        (staging / "metadata").mkdir()
        code_list = sorted(codes_seen)
        codes_table = pa.table({
            "code": pa.array(code_list, pa.string()),
            "description": pa.array([events.descriptions.get(c) for c in code_list], pa.string()),
            "parent_codes": pa.nulls(len(code_list), pa.list_(pa.string())),
        })
        _validate(meds.CodeMetadataSchema, codes_table, meds.code_metadata_filepath)
        pq.write_table(codes_table, staging / meds.code_metadata_filepath, compression="zstd")

        splits = subject_splits(cohort, subjects)
        splits_table = pa.table({"subject_id": pa.array(splits["subject_id"].to_numpy(dtype=np.int64), pa.int64()),
                                 "split": pa.array(splits["split"].to_numpy(dtype=object), pa.string())})
        _validate(meds.SubjectSplitSchema, splits_table, meds.subject_splits_filepath)
        pq.write_table(splits_table, staging / meds.subject_splits_filepath, compression="zstd")

        meta = dataset_metadata(cohort)
        _validate(meds.DatasetMetadataSchema, meta, meds.dataset_metadata_filepath)
        (staging / meds.dataset_metadata_filepath).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

        size = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())
        check_out_dir(out, force)  # nothing appeared there meanwhile
        _move_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    counts.update(events=total, subjects=int(len(subjects)), shards=len(written), codes=len(code_list),
                  bytes=int(size))
    for name, k in splits["split"].value_counts().sort_index().items():
        counts[f"split_{name}"] = int(k)
    return counts


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


__all__ = ["DEFAULT_SHARD_SIZE", "EXTRA_COLUMNS", "FAMILIES", "TIE_ORDER", "check_out_dir", "data_schema",
           "dataset_metadata", "dataset_name", "export_meds", "subject_splits"]
