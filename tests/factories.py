"""Small hand-built cohorts for tests.

:class:`CohortBuilder` builds a :class:`~mingle_bench.data.cohort.Cohort` row by row (with
a note text store in a given folder); :func:`make_cohort` builds a seeded random cohort of
adults with several admissions each, all code types, and planted *leakage canaries*:

* every admission has a note charted one hour after its discharge holding
  :data:`LATE_TOKEN` and a discharge summary holding :data:`DISCHARGE_TOKEN`; neither may
  ever be a model input of any task;
* every stay longer than 60 h has a note charted at admit + 60 h holding :data:`AFTER_48H_TOKEN`
  (an input of discharge-time tasks, never of the admit + 48 h tasks), and a date-only note on
  the second day after admission holding :data:`DAY2_TOKEN` (counts at the end of that day,
  after admit + 48 h);
* every medication started on day 3 of a stay is named ``late_drug`` (after admit + 48 h);
* every admission except each patient's first has a diagnosis code unique to it
  (``V7{hadm_id % 1000:03d}``-style), so a test can check that nothing of visit t+1 reaches
  sample t.

:class:`RecordingEncoder` is a tiny deterministic text encoder that records every text it is
asked to embed.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from mingle_bench.data.cohort import SCHEMA, Cohort, make_code_id
from mingle_bench.encoders.base import Encoder

LATE_TOKEN = "zzlatecanaryzz"
DISCHARGE_TOKEN = "zzdischargecanaryzz"
AFTER_48H_TOKEN = "zzafter48hcanaryzz"
DAY2_TOKEN = "zzday2datecanaryzz"
EARLY_TOKEN = "zzearlynotezz"  # a legitimate early note (admit + 6 h)

# real ICD-9 codes that hit phenotypes, T2D and CVD definitions
DX_POOL = ["4019", "4280", "25000", "41401", "5849", "486", "0389", "42731", "2724", "78552", "43491",
           "25002", "5990", "2859", "4240"]
PX_POOL = ["3893", "9604", "9671", "3995", "8856"]
RX_POOL = ["heparin", "insulin", "furosemide", "metoprolol", "aspirin", "vancomycin", "pantoprazole"]
SVC_POOL = ["MED", "CMED", "SURG", "NMED"]


class CohortBuilder:
    """Assemble a cohort by hand; ids are assigned in call order."""

    def __init__(self) -> None:
        self.patients: list[dict] = []
        self.admissions: list[dict] = []
        self.codes: list[dict] = []
        self.notes: list[dict] = []
        self.texts: dict[int, str] = {}
        self._next_hadm = 100000
        self._next_note = 1

    def patient(self, dob: str = "2050-01-01", sex: str = "F", dod: str | None = None, patient_id: int | None = None) -> int:
        pid = patient_id if patient_id is not None else 1000 + len(self.patients)
        self.patients.append({"patient_id": pid, "sex": sex, "dob": pd.Timestamp(dob),
                              "dod": pd.Timestamp(dod) if dod else pd.NaT})
        return pid

    def admission(self, patient_id: int, admit: str, disch: str | None, death: str | None = None,
                  admission_type: str = "EMERGENCY", hadm_id: int | None = None) -> int:
        hadm = hadm_id if hadm_id is not None else self._next_hadm
        self._next_hadm = max(self._next_hadm, hadm) + 1
        dob = next(p["dob"] for p in self.patients if p["patient_id"] == patient_id)
        admit_ts = pd.Timestamp(admit)
        age = (admit_ts - dob).days / 365.25
        self.admissions.append({
            "hadm_id": hadm, "patient_id": patient_id, "admittime": admit_ts,
            "dischtime": pd.Timestamp(disch) if disch else pd.NaT,
            "deathtime": pd.Timestamp(death) if death else pd.NaT, "admission_type": admission_type,
            "hospital_expire_flag": 1 if death else 0, "age": min(age, 90.0), "age_capped": age > 90,
        })
        return hadm

    def code(self, hadm_id: int, code_type: str, code: str, icd_version: int | None = None,
             seq_num: int | None = None, time: str | None = None) -> None:
        if code_type in ("diagnosis", "procedure") and icd_version is None:
            icd_version = 9
        pid = next(a["patient_id"] for a in self.admissions if a["hadm_id"] == hadm_id)
        self.codes.append({"patient_id": pid, "hadm_id": hadm_id, "code_type": code_type,
                           "code_id": make_code_id(code_type, code, icd_version), "code": code,
                           "icd_version": icd_version, "seq_num": seq_num,
                           "time": pd.Timestamp(time) if time else pd.NaT})

    def note(self, hadm_id: int | None, text: str, category: str = "Nursing", charttime: str | None = None,
             chartdate: str | None = None, patient_id: int | None = None) -> int:
        nid = self._next_note
        self._next_note += 1
        if patient_id is None:
            patient_id = next(a["patient_id"] for a in self.admissions if a["hadm_id"] == hadm_id)
        ct = pd.Timestamp(charttime) if charttime else pd.NaT
        cd = pd.Timestamp(chartdate) if chartdate else (ct.normalize() if charttime else pd.NaT)
        self.notes.append({"note_id": nid, "patient_id": patient_id, "hadm_id": hadm_id, "chartdate": cd,
                           "charttime": ct, "category": category, "description": "", "n_chars": len(text)})
        self.texts[nid] = text
        return nid

    def build(self, directory: str | os.PathLike, source: str = "test:factory") -> Cohort:
        """The cohort, with its note text store written to ``directory/note_texts.parquet``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)

        def frame(name: str, rows: list[dict]) -> pd.DataFrame:
            cols = SCHEMA[name]
            df = pd.DataFrame(rows, columns=list(cols))
            return df.astype(cols) if len(df) else pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})

        codes = frame("codes", self.codes)
        texts = codes[["code_id", "code_type"]].drop_duplicates("code_id").copy()
        texts["text"] = "description of " + texts["code_id"]
        text_path = directory / "note_texts.parquet"
        pd.DataFrame({"note_id": pd.Series(list(self.texts), dtype="int64"),
                      "text": pd.Series(list(self.texts.values()), dtype=object)}).to_parquet(text_path, index=False)
        return Cohort(
            patients=frame("patients", self.patients), admissions=frame("admissions", self.admissions),
            codes=codes, code_texts=texts.reset_index(drop=True).astype(SCHEMA["code_texts"]),
            notes=frame("notes", self.notes), source=source, source_id="factory",
            notes_text_path=str(text_path),
        ).validate()


def make_cohort(directory: str | os.PathLike, n_patients: int = 40, seed: int = 0) -> Cohort:
    """A seeded random cohort with leakage canaries (see the module docstring)."""
    rng = np.random.default_rng(seed)
    b = CohortBuilder()
    for p in range(n_patients):
        pid = b.patient(dob=f"{2030 + int(rng.integers(0, 40))}-06-15", sex="MF"[p % 2])
        t = pd.Timestamp("2100-01-01") + pd.Timedelta(days=int(rng.integers(0, 300)), hours=int(rng.integers(0, 24)))
        n_adm = int(rng.integers(1, 5))
        for k in range(n_adm):
            los_h = float(rng.choice([20, 40, 70, 120, 200, 300]))
            disch = t + pd.Timedelta(hours=los_h)
            died = k == n_adm - 1 and rng.random() < 0.25
            atype = "ELECTIVE" if rng.random() < 0.15 else "EMERGENCY"
            h = b.admission(pid, str(t), str(disch), death=str(disch) if died else None, admission_type=atype)
            for s, code in enumerate(rng.choice(DX_POOL, size=int(rng.integers(2, 7)), replace=False)):
                b.code(h, "diagnosis", str(code), 9, seq_num=s + 1)
            if k > 0:
                b.code(h, "diagnosis", f"V7{h % 1000:03d}", 9, seq_num=99)
            for code in rng.choice(PX_POOL, size=int(rng.integers(0, 3)), replace=False):
                b.code(h, "procedure", str(code), 9)
            for code in rng.choice(RX_POOL, size=int(rng.integers(1, 4)), replace=False):
                b.code(h, "medication", str(code), time=str(t.normalize()))
            if los_h > 72:
                b.code(h, "medication", "late_drug", time=str(t.normalize() + pd.Timedelta(days=3)))
            b.code(h, "service", str(rng.choice(SVC_POOL)), time=str(t + pd.Timedelta(minutes=30)))
            b.note(h, f"early nursing note {EARLY_TOKEN} patient stable", "Nursing", charttime=str(t + pd.Timedelta(hours=6)))
            if los_h > 60:
                b.note(h, f"progress note {AFTER_48H_TOKEN}", "Physician ", charttime=str(t + pd.Timedelta(hours=60)))
                b.note(h, f"radiology report {DAY2_TOKEN}", "Radiology", chartdate=str((t + pd.Timedelta(days=2)).date()))
            b.note(h, f"Discharge summary {DISCHARGE_TOKEN} follow-up", "Discharge summary",
                   charttime=str(disch - pd.Timedelta(hours=1)))
            b.note(h, f"addendum {LATE_TOKEN}", "Nursing/other", charttime=str(disch + pd.Timedelta(hours=1)))
            t = disch + pd.Timedelta(days=int(rng.choice([3, 10, 25, 45, 200])), hours=int(rng.integers(0, 24)))
            if died:
                break
    return b.build(directory, source=f"test:factory:{n_patients}:{seed}")


def tiny_cohort(directory: str | os.PathLike) -> tuple[Cohort, dict[str, int]]:
    """A hand-built cohort whose labels and inputs are worked out by hand in the tests.

    Returns the cohort and a name -> id map (admissions ``A1``.., notes ``n_*``).
    Patient A (adult): A1 9 days (T2D, HTN) -> A2 15 days later, 24 h, emergency (CHF, renal
    failure, T2D) -> A3 15 days later, elective, 4 days (coronary atherosclerosis).
    Patient B is 10 years old (one 9-day stay). Patient C dies on day 3 of C1. Patients D has two
    admissions with the same admittime (D_lo has the smaller hadm_id). Patient E dies 24 h into a
    stay recorded as discharged at 60 h.
    """
    b = CohortBuilder()
    ids: dict[str, int] = {}
    a = b.patient(dob="2050-01-01", patient_id=1)
    ids["A1"] = h = b.admission(a, "2100-01-01 10:00", "2100-01-10 10:00", hadm_id=101)
    b.code(h, "diagnosis", "4019", seq_num=1)
    b.code(h, "diagnosis", "25000", seq_num=2)
    b.code(h, "procedure", "3893")
    b.code(h, "medication", "heparin", time="2100-01-01")          # end of 01-01: before admit + 48 h
    b.code(h, "medication", "late_drug", time="2100-01-04")        # after admit + 48 h
    b.code(h, "medication", "day3_drug", time="2100-01-03")        # end of 01-03 > 01-03 10:00
    b.code(h, "service", "MED", time="2100-01-01 10:30")
    ids["n_early"] = b.note(h, "early note", charttime="2100-01-01 16:00")
    ids["n_day2_date"] = b.note(h, "dated 01-02", "Radiology", chartdate="2100-01-02")   # counts at 01-03 00:00
    ids["n_day3_date"] = b.note(h, "dated 01-03", "Radiology", chartdate="2100-01-03")   # counts at 01-04 00:00
    ids["n_exact_48h"] = b.note(h, "at 48 h", "Physician ", charttime="2100-01-03 10:00")
    ids["n_day5"] = b.note(h, "day 5 note", "Nursing", charttime="2100-01-06 10:00")
    ids["n_discharge"] = b.note(h, "discharge summary", "Discharge summary", charttime="2100-01-10 09:00")
    ids["n_after_disch"] = b.note(h, "after discharge", "Nursing", charttime="2100-01-10 12:00")
    ids["n_unlinked"] = b.note(None, "unlinked", "Nursing", charttime="2100-01-02 10:00", patient_id=a)
    ids["A2"] = h = b.admission(a, "2100-01-25 10:00", "2100-01-26 10:00", hadm_id=102)
    b.code(h, "diagnosis", "4280", seq_num=1)
    b.code(h, "diagnosis", "5849", seq_num=2)
    b.code(h, "diagnosis", "25000", seq_num=3)
    ids["n_a2"] = b.note(h, "a2 note", charttime="2100-01-25 12:00")
    ids["A3"] = h = b.admission(a, "2100-02-10 10:00", "2100-02-14 10:00", admission_type="ELECTIVE", hadm_id=103)
    b.code(h, "diagnosis", "41401", seq_num=1)

    bb = b.patient(dob="2090-01-01", patient_id=2)
    ids["B1"] = h = b.admission(bb, "2100-03-01 10:00", "2100-03-10 10:00", hadm_id=201)
    b.code(h, "diagnosis", "486", seq_num=1)

    c = b.patient(dob="2040-01-01", patient_id=3)
    ids["C1"] = h = b.admission(c, "2100-05-01 00:00", "2100-05-04 00:00", death="2100-05-04 00:00", hadm_id=301)
    b.code(h, "diagnosis", "0389", seq_num=1)
    b.code(h, "diagnosis", "25002", seq_num=2)

    d = b.patient(dob="2040-01-01", patient_id=4)
    ids["D_hi"] = h = b.admission(d, "2100-06-01 10:00", "2100-06-02 10:00", hadm_id=402)
    b.code(h, "diagnosis", "78552", seq_num=1)
    ids["D_lo"] = h = b.admission(d, "2100-06-01 10:00", "2100-06-05 10:00", hadm_id=401)
    b.code(h, "diagnosis", "42731", seq_num=1)

    e = b.patient(dob="2040-01-01", patient_id=5)
    ids["E1"] = h = b.admission(e, "2100-07-01 00:00", "2100-07-03 12:00", death="2100-07-02 00:00", hadm_id=501)
    b.code(h, "diagnosis", "4019", seq_num=1)
    return b.build(directory, source="test:tiny"), ids



class RecordingEncoder(Encoder):
    """Whitespace tokens hashed to ids; embeddings are a seeded projection of token counts."""

    identity = "test-recording-encoder@0"
    max_length = 64
    num_special_tokens = 0

    def __init__(self, dim: int = 8) -> None:
        self._dim = dim
        self.seen_texts: list[str] = []
        gen = torch.Generator().manual_seed(0)
        self._proj = torch.randn(1024, dim, generator=gen)

    @property
    def dim(self) -> int:
        return self._dim

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        self.seen_texts.extend(texts)
        return [[zlib.crc32(w.encode()) % 1024 for w in t.split()] for t in texts]

    def encode_tokens(self, token_lists: Sequence[Sequence[int]]) -> torch.Tensor:
        out = torch.zeros(len(token_lists), self._dim)
        for i, toks in enumerate(token_lists):
            if toks:
                out[i] = self._proj[list(toks)].sum(0)
        return torch.nn.functional.normalize(out + 1e-6, dim=1)


def discharge_note_cohort(directory: str | os.PathLike) -> tuple[Cohort, dict[str, int]]:
    """A hand-built cohort for the note-policy tests: discharge summaries with awkward times.

    Returns the cohort and a name -> id map (admissions ``P1``.., notes ``ds_*`` / ``n_*``).
    Patient P (adult, type 2 diabetes at every admission) has three emergency admissions, each
    15 days after the previous discharge, so every one is a sample of ``readmission`` and
    ``cvd`` and ``P1``/``P2`` are samples of ``phenotype``. Discharge summaries:

    * ``P1``: ``ds_p1_timed`` charted 1 h before discharge; ``ds_p1_nextday`` with only a
      chartdate the day after discharge; ``ds_p1_late`` charted 5 h after discharge; ``ds_p1_mimic``
      with only a chartdate on the discharge day (as in MIMIC-III);
    * ``P2``: ``ds_p2`` charted (wrongly) during ``P1``'s stay, and ``ds_p2_mimic`` dated on ``P2``'s
      discharge day; ``P3``: ``ds_p3``.
    * ``Q1`` (patient Q): an admission without a discharge time, with a discharge summary.

    Each admission also has an in-stay note (``n_p1``.. at admit + 6 h) and ``P1`` a nursing note
    charted after discharge (``n_p1_after``; never an input).
    """
    b = CohortBuilder()
    ids: dict[str, int] = {}
    p = b.patient(dob="2040-01-01", patient_id=7)
    stays = [("P1", "2100-01-01 10:00", "2100-01-10 10:00"), ("P2", "2100-01-25 10:00", "2100-01-30 10:00"),
             ("P3", "2100-02-14 10:00", "2100-02-18 10:00")]
    for k, (name, admit, disch) in enumerate(stays):
        ids[name] = h = b.admission(p, admit, disch, hadm_id=701 + k)
        b.code(h, "diagnosis", "25000", seq_num=1)
        b.code(h, "diagnosis", "4280", seq_num=2)
        ids[f"n_{name.lower()}"] = b.note(h, f"in-stay note of {name}",
                                          charttime=str(pd.Timestamp(admit) + pd.Timedelta(hours=6)))
    p1, p2, p3 = ids["P1"], ids["P2"], ids["P3"]
    ids["ds_p1_timed"] = b.note(p1, "p1 discharge summary", "Discharge summary", charttime="2100-01-10 09:00")
    ids["ds_p1_nextday"] = b.note(p1, "p1 addendum summary", "Discharge summary", chartdate="2100-01-11")
    ids["ds_p1_late"] = b.note(p1, "p1 late summary", "Discharge summary", charttime="2100-01-10 15:00")
    ids["ds_p1_mimic"] = b.note(p1, "p1 dated summary", "Discharge summary", chartdate="2100-01-10")
    ids["n_p1_after"] = b.note(p1, "p1 after discharge", "Nursing", charttime="2100-01-10 12:00")
    ids["ds_p2"] = b.note(p2, "p2 summary, misdated", "Discharge summary", charttime="2100-01-05 10:00")
    ids["ds_p2_mimic"] = b.note(p2, "p2 dated summary", "Discharge summary", chartdate="2100-01-30")
    ids["ds_p3"] = b.note(p3, "p3 summary", "discharge", charttime="2100-02-18 08:00")
    q = b.patient(dob="2040-01-01", patient_id=8)
    ids["Q1"] = h = b.admission(q, "2100-03-01 10:00", None, hadm_id=801)
    b.code(h, "diagnosis", "25000", seq_num=1)
    ids["ds_q1"] = b.note(h, "q1 summary", "Discharge summary", charttime="2100-03-05 10:00")
    return b.build(directory, source="test:discharge-notes"), ids
