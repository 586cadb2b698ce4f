"""The task layer: a :class:`Task` turns a :class:`~mingle_bench.data.cohort.Cohort` into
:class:`TaskSamples`, labelled samples together with exactly the inputs allowed at prediction time.

Every task shares the machinery here, so the leakage guards are written once:

* **Visit order.** Admissions are ordered per patient by ``admittime`` and then ``hadm_id``
  (stable on equal timestamps), see :func:`ordered_admissions`.
* **Input window.** Each task gives every admission an *input window end* (admit + 48 h, or
  the end of the stay if sooner, for the early-prediction tasks; discharge for the
  discharge-time tasks). An admission's inputs are its codes and notes available by that time,
  whatever its role (index visit, history visit or unlabelled hyperedge), so no admission ever
  shows a note written after its own discharge (except its own discharge summary, counted as
  written at discharge, under the default note policy of the discharge-time tasks). The window end of an index admission is never
  after the sample's prediction time (asserted in :meth:`Task.build`). An admission without a
  window end (no discharge time, discharge-time tasks) shows no time-stamped input.
* **Notes.** A note is an input only when it is linked to the admission (``hadm_id``), was
  written for the admission's own patient and was charted at or before the window end. A note
  with only a ``chartdate`` counts as charted at the *end* of that day (conservative).
  Discharge summaries (any category starting with "discharge") follow the task's **note
  policy** (``notes=``):

  - ``"default"``: the discharge-time tasks (``phenotype``, ``readmission``, ``cvd``) take every
    admission's *own* discharge summary as an input: a discharge summary linked to an admission
    counts as written at that admission's window end (its discharge), whatever its
    ``chartdate``/``charttime`` says (in MIMIC-III it usually has only a ``chartdate``, the
    discharge day, which the end-of-day rule would put after discharge). This is MINGLE's note
    input (Cui et al. 2024 use discharge notes on MIMIC-III). Notes are selected per admission
    by ``hadm_id``, so the discharge summary of another admission (e.g. the next one, t + 1) is
    never an input of admission t. The admit + 48 h tasks never take a discharge summary.
  - ``"in-stay"``: no discharge summary is an input, in any task (only notes written during
    the stay; stricter than the paper).

  An admission without a window end shows no note under either policy.
* **Codes.** A code is an input when its type is one of the task's ``code_types`` and it is
  available by the window end. Codes with a time are available from that time; a time of
  exactly midnight is read as a date-only time and counts as the end of that day
  (conservative; MIMIC-III prescriptions carry only dates). Codes without any time (ICD
  diagnoses and MIMIC-III procedures) count as available throughout their admission: note
  that MIMIC **diagnosis codes are assigned at discharge** for billing, so for the admit + 48 h
  tasks they describe the whole stay (this follows the task definitions in the benchmark; use
  ``code_types=("medication", "service")`` for a strictly time-stamped view).
* **History** (the sequence view for RETAIN/GRAM): the patient's admissions up to and
  including the index admission, in visit order, keeping only those whose window ended by
  the prediction time (an earlier but overlapping admission is dropped and counted).
* **Labels** are computed by each task and cast explicitly to ``int8`` after checking they are 0/1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np
import pandas as pd

from mingle_bench.data.cohort import CODE_TYPES, Cohort

ONE_DAY = pd.Timedelta(days=1)
NOTE_POLICIES = ("default", "in-stay")


@dataclass
class TaskSamples:
    """The output of :meth:`Task.build`.

    Attributes:
        task_name: the task's registry name.
        label_names: one name per label column.
        samples: one row per sample: ``sample_id`` (str), ``patient_id`` (int64),
            ``hadm_id`` (int64, the index admission), ``prediction_time`` (datetime64).
        labels: int8 array [n_samples, n_labels], row-aligned with ``samples``.
        input_codes: admission id -> the ``code_id`` s the task allows as inputs, for every
            admission of the cohort (deduplicated, deterministic order).
        input_note_ids: admission id -> ``note_id`` s allowed as inputs (time-filtered; the
            admission's own discharge summaries only when the task's note policy allows them),
            for every admission of the cohort.
        history: per sample, the admission ids of its visit sequence (visit order, up to and
            including the index admission).
        window_end: admission id -> end of its input window (the admission's view is fixed by it).
        report: counts of samples, exclusions (by reason), positives per label and dropped inputs.
    """

    task_name: str
    label_names: list[str]
    samples: pd.DataFrame
    labels: np.ndarray
    input_codes: dict[int, list[str]]
    input_note_ids: dict[int, list[int]]
    history: list[list[int]]
    window_end: dict[int, pd.Timestamp]
    report: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def n_labels(self) -> int:
        return len(self.label_names)


# -- shared helpers ---------------------------------------------------------------------


def ordered_admissions(cohort: Cohort) -> pd.DataFrame:
    """Admissions in visit order: by patient, ``admittime``, then ``hadm_id`` (stable ties).

    Adds ``visit_rank`` (0-based position in the patient's sequence) and
    ``n_patient_visits``. Admissions without an ``admittime`` cannot be placed in time and
    are dropped; their number is returned in ``attrs["dropped_no_admittime"]``.
    Raises ``ValueError`` naming the admission when a ``hadm_id`` appears twice.
    """
    adm = cohort.admissions
    dup = adm["hadm_id"].duplicated(keep=False)
    if dup.any():
        first = int(adm.loc[dup, "hadm_id"].iloc[0])
        raise ValueError(f"cohort table 'admissions' lists hadm_id {first} more than once")
    no_time = adm["admittime"].isna()
    adm = adm.loc[~no_time].sort_values(["patient_id", "admittime", "hadm_id"], kind="mergesort")
    adm = adm.reset_index(drop=True)
    adm["visit_rank"] = adm.groupby("patient_id", sort=False).cumcount().astype("int64")
    adm["n_patient_visits"] = adm.groupby("patient_id", sort=False)["hadm_id"].transform("size").astype("int64")
    adm.attrs["dropped_no_admittime"] = int(no_time.sum())
    return adm


def is_discharge_note(category: pd.Series) -> pd.Series:
    """True for discharge summaries ("Discharge summary" in MIMIC-III, "discharge" in MIMIC-IV)."""
    return category.fillna("").astype(str).str.strip().str.lower().str.startswith("discharge")


def note_available_time(notes_df: pd.DataFrame) -> pd.Series:
    """When a note counts as written: its ``charttime``, else the end of its ``chartdate``."""
    end_of_day = notes_df["chartdate"].dt.normalize() + ONE_DAY
    return notes_df["charttime"].where(notes_df["charttime"].notna(), end_of_day)


def code_available_time(times: pd.Series) -> pd.Series:
    """When a code counts as known: its time; a midnight time is date-only and counts as
    the end of that day. NaT stays NaT (no time: available throughout the admission)."""
    midnight = times.notna() & (times == times.dt.normalize())
    return times.where(~midnight, times + ONE_DAY)


def _window_of(window_end: pd.Series, hadm_ids: pd.Series) -> pd.Series:
    """The window end of each row's admission (datetime64, aligned with ``hadm_ids``)."""
    values = window_end.reindex(hadm_ids.to_numpy()).to_numpy(dtype="datetime64[ns]")
    return pd.Series(values, index=hadm_ids.index, dtype="datetime64[ns]")


def _lists_by_admission(df: pd.DataFrame, value: str, hadm_ids: Sequence[int]) -> dict[int, list]:
    """``{hadm_id: [values in row order]}`` for every id in ``hadm_ids``; ``df`` must be sorted by
    ``hadm_id`` (rows of one admission contiguous)."""
    h = df["hadm_id"].to_numpy(dtype=np.int64)
    if len(h) > 1 and (np.diff(h) < 0).any():
        raise AssertionError("_lists_by_admission needs rows sorted by hadm_id")
    col = df[value]
    vals = (col.to_numpy(dtype=np.int64) if pd.api.types.is_integer_dtype(col.dtype)
            else col.to_numpy(dtype=object)).tolist()
    starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]]) if len(h) else np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], len(h)].astype(np.int64)
    grouped = {k: vals[a:b] for k, a, b in zip(h[starts].tolist(), starts.tolist(), ends.tolist())}
    return {int(x): grouped.get(int(x), []) for x in hadm_ids}


def _other_patient(rows: pd.DataFrame, patient_of: pd.Series | None) -> pd.Series:
    """Rows whose ``patient_id`` differs from their admission's patient (inconsistent links)."""
    if patient_of is None or not len(rows):
        return pd.Series(False, index=rows.index)
    owner = patient_of.reindex(rows["hadm_id"].to_numpy()).to_numpy()
    return pd.Series(owner != rows["patient_id"].to_numpy(), index=rows.index)


def select_input_codes(
    codes: pd.DataFrame, window_end: pd.Series, code_types: Sequence[str], patient_of: pd.Series | None = None
) -> tuple[dict[int, list[str]], dict[str, int]]:
    """Per admission, the input ``code_id`` s: allowed type, available by the window end.

    ``window_end`` (and ``patient_of``, the patient of each admission) are indexed by
    ``hadm_id``. Order: by code type (in :data:`CODE_TYPES` order), ``seq_num``, time, then
    ``code_id``; duplicates keep the first. Returns the mapping and counts of code events
    dropped, by reason (a code whose ``patient_id`` is not its admission's is dropped).
    """
    type_rank = {t: i for i, t in enumerate(CODE_TYPES)}
    c = codes.loc[codes["hadm_id"].isin(window_end.index)]
    n_other_adm = len(codes) - len(c)
    mismatch = _other_patient(c, patient_of)
    c = c.loc[~mismatch.to_numpy()]
    typed = c["code_type"].isin(list(code_types))
    c = c.loc[typed]
    avail = code_available_time(c["time"])
    end = _window_of(window_end, c["hadm_id"])
    late = avail.notna() & (end.isna() | (avail > end))  # no window end: nothing time-stamped
    kept = c.loc[~late.to_numpy()].assign(_t=c["code_type"].map(type_rank))
    kept = kept.sort_values(["hadm_id", "_t", "seq_num", "time", "code_id"], kind="mergesort", na_position="last")
    kept = kept.drop_duplicates(["hadm_id", "code_id"])
    counts = {
        "code_events_unknown_admission": int(n_other_adm),
        "code_events_patient_mismatch": int(mismatch.sum()),
        "code_events_other_type": int((~typed).sum()),
        "code_events_after_window": int(late.sum()),
    }
    return _lists_by_admission(kept, "code_id", list(window_end.index)), counts


def select_input_notes(notes_df: pd.DataFrame, window_end: pd.Series, patient_of: pd.Series | None = None,
                       allow_discharge: bool = False) -> tuple[dict[int, list[int]], dict[str, int]]:
    """Per admission, the input ``note_id`` s: linked to it, charted at or before its window
    end, written for the admission's own patient. Discharge summaries are dropped unless
    ``allow_discharge``; then a discharge summary counts as written at its own admission's window
    end (whatever its chart date or time), so it is an input of that admission only, and of none
    when the admission has no window end. Returns the mapping and counts, by reason: dropped
    notes, and ``notes_discharge_summary_input`` (discharge summaries kept as inputs)."""
    linked = notes_df["hadm_id"].notna()
    n = notes_df.loc[linked]
    n = n.assign(hadm_id=n["hadm_id"].astype("int64"))
    known = n["hadm_id"].isin(window_end.index)
    n = n.loc[known]
    mismatch = _other_patient(n, patient_of)
    n = n.loc[~mismatch.to_numpy()]
    discharge = is_discharge_note(n["category"])
    barred = discharge & (not allow_discharge)
    admitted_ds = discharge & allow_discharge
    end = _window_of(window_end, n["hadm_id"])
    avail = note_available_time(n).where(~admitted_ds, end)
    undated = avail.isna() & ~admitted_ds
    late = ~undated & (end.isna() | (avail > end))  # no window end: no note is an input
    keep = ~barred & ~late & ~undated
    kept = n.loc[keep].assign(_avail=avail[keep]).sort_values(["hadm_id", "_avail", "note_id"], kind="mergesort")
    counts = {
        "notes_unlinked": int((~linked).sum()),
        "notes_unknown_admission": int((~known).sum()),
        "notes_patient_mismatch": int(mismatch.sum()),
        "notes_discharge_summary": int(barred.sum()),
        "notes_discharge_summary_input": int((admitted_ds & keep).sum()),
        "notes_after_window": int((late & ~barred).sum()),
        "notes_undated": int((undated & ~barred).sum()),
    }
    return _lists_by_admission(kept, "note_id", list(window_end.index)), counts


def build_history(adm: pd.DataFrame, samples: pd.DataFrame) -> tuple[list[list[int]], int]:
    """Per sample, the admission ids up to and including its index admission, in visit order,
    keeping only admissions whose input window ended by the prediction time.
    Returns the histories and the number of earlier admissions dropped by that guard."""
    hadm = adm["hadm_id"].to_numpy(dtype=np.int64)
    ends = adm["window_end"].to_numpy(dtype="datetime64[ns]")
    row_of = dict(zip(hadm.tolist(), range(len(hadm))))
    first = (np.arange(len(adm)) - adm["visit_rank"].to_numpy()).tolist()  # first row of each row's patient
    out: list[list[int]] = []
    dropped = 0
    for h, pt in zip(samples["hadm_id"].to_numpy().tolist(), samples["prediction_time"].to_numpy(dtype="datetime64[ns]")):
        r = row_of[int(h)]
        a = first[r]
        ok = ends[a:r] <= pt  # NaT compares False: an earlier admission without a window end is dropped
        dropped += int((~ok).sum())
        out.append(hadm[a:r][ok].tolist() + [int(h)])
    return out, dropped


def match_codes(codes: pd.Series, pattern: str) -> pd.Series:
    """Boolean mask of codes (as released, no dot) matching a regular expression from the start."""
    return codes.astype(str).str.match(pattern).fillna(False).astype(bool)


# -- the base class -------------------------------------------------------------------------


class Task:
    """Base class of every task. Subclasses set ``name``, ``label_names``, ``reference`` and
    implement :meth:`window_end` and :meth:`make_samples`; the docstring of each subclass states
    the label, inclusion/exclusion rules, observation window and prediction time, inputs,
    leakage guards and the definition it follows.

    Args:
        code_types: the code types used as inputs (default: all of :data:`CODE_TYPES`).
        min_age: admissions of patients younger than this (years at admission) are excluded;
            ``None`` keeps every age; ``"default"`` uses the task's ``default_min_age``.
        notes: the note policy, one of :data:`NOTE_POLICIES`. ``"default"``: an admission's own
            discharge summary is an input when the task allows it (``own_discharge_summary``:
            the discharge-time tasks); ``"in-stay"``: never a discharge summary.
    """

    name: ClassVar[str] = ""
    label_names: ClassVar[list[str]] = []
    reference: ClassVar[str] = ""
    default_min_age: ClassVar[float | None] = None
    #: whether the ``"default"`` note policy admits each admission's own discharge summary
    own_discharge_summary: ClassVar[bool] = False

    def __init__(self, code_types: Sequence[str] | None = None, min_age: float | None | str = "default",
                 notes: str = "default") -> None:
        if notes not in NOTE_POLICIES:
            raise ValueError(f"notes must be one of {', '.join(repr(p) for p in NOTE_POLICIES)}, got {notes!r}")
        types = tuple(CODE_TYPES if code_types is None else code_types)
        bad = [t for t in types if t not in CODE_TYPES]
        if bad or not types:
            raise ValueError(f"code_types must be a non-empty subset of {CODE_TYPES}, got {list(types)}")
        self.code_types = types
        self.min_age = self.default_min_age if min_age == "default" else min_age
        self.note_policy = notes

    @property
    def notes(self) -> str:
        """The note policy under its constructor's (and ``--notes``') name; :attr:`note_policy` inside the package."""
        return self.note_policy

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code_types={self.code_types}, min_age={self.min_age}, notes={self.note_policy!r})"

    def allows_discharge_summary(self) -> bool:
        """Whether each admission's own discharge summary is an input (task and note policy)."""
        return self.own_discharge_summary and self.note_policy == "default"

    # hooks -------------------------------------------------------------------------------
    def window_end(self, adm: pd.DataFrame) -> pd.Series:
        """End of the input window of every admission (aligned with ``adm``)."""
        raise NotImplementedError

    def make_samples(self, cohort: Cohort, adm: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
        """Select the index admissions and label them.

        Returns a frame with ``patient_id``, ``hadm_id``, ``prediction_time`` (one row per
        sample), the labels [n, n_labels] (any integer or bool dtype, 0/1), and the exclusion
        counts as an ordered ``{reason: n}`` dict.
        """
        raise NotImplementedError

    # helpers for subclasses --------------------------------------------------------------
    def apply_min_age(self, adm: pd.DataFrame, keep: pd.Series, excluded: dict[str, int]) -> pd.Series:
        if self.min_age is None:
            return keep
        young = keep & ~(adm["age"] >= self.min_age)
        excluded[f"age below {self.min_age:g} (or unknown)"] = int(young.sum())
        return keep & ~young

    # the template ------------------------------------------------------------------------
    def build(self, cohort: Cohort) -> TaskSamples:
        """Build the samples, their labels and their inputs; enforce the leakage guards."""
        adm = ordered_admissions(cohort)
        adm["window_end"] = pd.to_datetime(self.window_end(adm)).astype("datetime64[ns]")
        frame, labels, excluded = self.make_samples(cohort, adm)
        label_info = dict(frame.attrs.get("label_info", {}))
        labels = np.asarray(labels)
        if labels.ndim == 1:
            labels = labels[:, None]
        if labels.shape != (len(frame), len(self.label_names)):
            raise AssertionError(f"task {self.name}: labels shape {labels.shape}, expected {(len(frame), len(self.label_names))}")
        if labels.size and not np.isin(labels, (0, 1)).all():
            raise ValueError(f"task {self.name}: labels must be 0/1, found {sorted(set(np.unique(labels).tolist()))}")
        labels = labels.astype(np.int8)

        frame = frame[["patient_id", "hadm_id", "prediction_time"]].reset_index(drop=True)
        frame = frame.astype({"patient_id": "int64", "hadm_id": "int64", "prediction_time": "datetime64[ns]"})
        frame.insert(0, "sample_id", frame["hadm_id"].astype(str).astype(object))
        if frame["sample_id"].duplicated().any():
            raise AssertionError(f"task {self.name}: duplicate sample ids")

        window = pd.Series(adm["window_end"].to_numpy(), index=adm["hadm_id"].to_numpy())
        index_end = window.reindex(frame["hadm_id"].to_numpy()).to_numpy()
        if len(frame) and (pd.isna(index_end) | (index_end > frame["prediction_time"].to_numpy())).any():
            raise AssertionError(f"task {self.name}: an index admission's input window ends after its prediction time")

        patient_of = pd.Series(adm["patient_id"].to_numpy(), index=adm["hadm_id"].to_numpy())
        input_codes, code_counts = select_input_codes(cohort.codes, window, self.code_types, patient_of)
        input_notes, note_counts = select_input_notes(cohort.notes, window, patient_of,
                                                      allow_discharge=self.allows_discharge_summary())
        history, dropped_hist = build_history(adm, frame)

        report = {
            "task": self.name,
            "notes_policy": self.note_policy,
            "admissions": int(len(cohort.admissions)),
            "admissions_without_admittime": int(adm.attrs.get("dropped_no_admittime", 0)),
            "excluded": {k: int(v) for k, v in excluded.items()},
            "samples": int(len(frame)),
            "patients": int(frame["patient_id"].nunique()),
            "positives": {n: int(labels[:, i].sum()) for i, n in enumerate(self.label_names)},
            **({"label_info": label_info} if label_info else {}),
            "inputs": {**code_counts, **note_counts, "history_admissions_overlapping_prediction_time": dropped_hist},
        }
        return TaskSamples(
            task_name=self.name, label_names=list(self.label_names), samples=frame, labels=labels,
            input_codes=input_codes, input_note_ids=input_notes, history=history,
            window_end={int(k): v for k, v in window.items()}, report=report,
        )


class EarlyPredictionTask(Task):
    """Shared rules of the admit + ``hours`` tasks (``mortality``, ``los``).

    Prediction time: ``admittime + hours``. Every admission's input window ends at its own
    admit + ``hours`` (or at its discharge/death when the stay is shorter). No discharge
    summary is an input under either note policy. Excluded, in this order and counted:
    admissions without a discharge time;
    patients younger than ``min_age``; admissions that end (discharge, or in-hospital death
    when recorded earlier) at or before the prediction time, so the outcome is always unknown
    at prediction time.
    """

    default_min_age: ClassVar[float | None] = 18.0

    def __init__(self, code_types: Sequence[str] | None = None, min_age: float | None | str = "default",
                 hours: float = 48.0, notes: str = "default") -> None:
        super().__init__(code_types, min_age, notes)
        if not hours > 0:
            raise ValueError(f"hours must be positive, got {hours}")
        self.hours = float(hours)

    @staticmethod
    def stay_end(adm: pd.DataFrame) -> pd.Series:
        """Discharge, or the in-hospital death when it is recorded before discharge."""
        death_first = adm["deathtime"].notna() & ~(adm["dischtime"] <= adm["deathtime"])
        return adm["dischtime"].where(~death_first, adm["deathtime"])

    def window_end(self, adm: pd.DataFrame) -> pd.Series:
        """admit + ``hours``, or the end of the stay when that comes first (an admission that is
        not a sample never shows notes written after its discharge)."""
        cut = adm["admittime"] + pd.Timedelta(hours=self.hours)
        end = self.stay_end(adm)
        return cut.where(end.isna() | (cut <= end), end)

    def early_cohort(self, adm: pd.DataFrame) -> tuple[pd.Series, dict[str, int]]:
        """Mask of eligible admissions and the exclusion counts."""
        excluded: dict[str, int] = {}
        keep = adm["dischtime"].notna()
        excluded["no discharge time"] = int((~keep).sum())
        keep = self.apply_min_age(adm, keep, excluded)
        end = self.stay_end(adm)
        short = keep & (end <= adm["admittime"] + pd.Timedelta(hours=self.hours))
        excluded[f"stay ended within {self.hours:g} h"] = int(short.sum())
        return keep & ~short, excluded


class DischargeTimeTask(Task):
    """Shared rules of the tasks predicted at discharge (``phenotype``, ``readmission``, ``cvd``).

    Prediction time: the index admission's ``dischtime``. Every admission's input window ends
    at its own discharge, so an admission's inputs are its codes and its notes charted at or
    before discharge, plus, under the ``"default"`` note policy, its own discharge summary
    (counted as written at discharge; MINGLE's note input). ``notes="in-stay"`` drops every
    discharge summary. The discharge summary of another admission is never an input.
    """

    own_discharge_summary: ClassVar[bool] = True

    def window_end(self, adm: pd.DataFrame) -> pd.Series:
        return adm["dischtime"]

    @staticmethod
    def next_admission(adm: pd.DataFrame) -> pd.DataFrame:
        """For every admission, the patient's next admission in visit order (NaN/NaT if none)."""
        nxt = adm.groupby("patient_id", sort=False)[["hadm_id", "admittime", "admission_type"]].shift(-1)
        return nxt.rename(columns=lambda c: f"next_{c}")
