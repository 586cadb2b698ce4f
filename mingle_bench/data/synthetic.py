"""Synthetic MIMIC-III-shaped cohort with a documented latent model (the embedded default data).

:func:`generate` writes a folder with the MIMIC-III v1.4 file names, UPPER-case quoted headers
and value formats (strings quoted, numbers and timestamps bare, NOTEEVENTS text with quoted
newlines, dates shifted into the 2100s, ages over 89 shifted to ~300 years). It is read back
through the MIMIC-III loader like the real release. The same ``seed`` gives byte-identical
files (one seeded NumPy generator drives every draw; files are written in a fixed order).

Latent model (the data card; ``docs/data.md`` carries the same with numbers)
------------------------------------------------------------------------------
Per patient (fixed, except where noted):

- demographics: sex; age at first admission (7% are 90+, written with a DOB shifted ~300 years);
- behaviours: smoker (22%), heavy alcohol use (8%); **notes always**, codes only sometimes
  (``3051`` for 30% of a smoker's admissions, ``30500`` for 40% of a drinker's);
- frailty ``f ~ N(0,1) + 0.04 (age-65)``: **notes only** (functional status, fall risk);
- social context (lives alone 15%, homeless 3%, supported otherwise): **notes only**;
- code status DNR/DNI (more likely with age, frailty, metastatic cancer; can switch on after an
  admission): **notes only**;
- chronic conditions (:data:`~mingle_bench.data.synthetic_vocab.CHRONIC`: type 1/2 diabetes,
  hypertension, CAD, CHF, atrial fibrillation, CKD, COPD, hyperlipidemia, cirrhosis, metastatic
  cancer, depression, hypothyroidism) with age-dependent prevalence and comorbidity links
  (diabetes -> hypertension/CKD/CAD, CAD -> CHF, smoking -> COPD/CAD, alcohol -> cirrhosis).
  Each admission codes each present condition with probability ``code_p`` (0.55-0.9), while
  notes name it with ``pmh_p``; CKD, AF and cirrhosis are rarely named (**mostly codes**),
  diabetes and hypertension are usually named (**both**). AMI makes CAD permanent and may
  start CHF; AKI may start CKD;
- diabetes control: HbA1c (poorly controlled in 40% of diabetics), **notes only** apart from a
  higher rate of "uncontrolled" 250x2 codes.

Per admission:

- the acute event (:data:`~mingle_bench.data.synthetic_vocab.EVENTS`: sepsis, pneumonia, AMI,
  CHF exacerbation, COPD exacerbation, AKI, GI bleed, stroke, DKA, hip fracture, elective CABG,
  colectomy) is drawn with weights multiplied by the patient's chronic conditions; for
  diabetics the cardiovascular events (AMI, stroke, CHF) are further multiplied by
  ``exp(0.6 * cv_risk)`` with ``cv_risk = 0.8 smoker + 0.9 poor HbA1c + 0.7 CAD + 0.4 HTN +
  0.4 CKD + 0.03 (age-65)``; its principal code is drawn from a pool whose tail holds rare
  near-synonyms (ten AMI wall codes, nine septicemia organisms, seven heart-failure types,
  CABG vessel counts, ...); the event is named in the physician note 85% of the time (**both**);
- severity ``s ~ N(event shift, 0.8) + 0.015 (age-65) + 0.15 n_major + 0.2 f``. It drives:
  lactate (**notes only**), pressor need (**notes**; norepinephrine in PRESCRIPTIONS for only a
  third), shock / severe-sepsis codes (coded for half of the shocked, **codes**), mechanical
  ventilation (procedures 9604/9671/9672 and respiratory failure 51881 in codes, intubation
  also in notes: **both**);
- in-hospital death: ``logit = -4.2 + 1.25 s + 1.5 DNR + 0.35 f + 0.02 (age-65) + 0.5 cancer``
  -> deathtime = dischtime, HOSPITAL_EXPIRE_FLAG=1, DOD;
- length of stay: ``log LOS = log(0.85 event median) + 0.3 s + 0.25 f + 0.35 alone/homeless +
  0.3 vent + N(0, 0.45)`` (days; deaths stop earlier);
- cardiovascular return (type-2 diabetics only): after each discharge the patient comes back
  with a cardiovascular event (AMI, stroke or CHF exacerbation, the event drawn among those
  three only) with ``p = sigmoid(-5.0 + 2.5 cv_risk)`` (:data:`CV_RETURN`), after a gap
  uniform in 3-330 days (:data:`CV_RETURN_DAYS`);
- otherwise, next admission: the patient returns with ``p = sigmoid(-0.8 + 0.4 n_major + 0.5 f
  + 0.7 social + 0.5 cancer)``; the gap is <= 30 days with ``p30 = sigmoid(-2.0 + 1.8 social +
  0.9 f + 0.4 s + 0.5 n_major)`` (so 30-day readmission is driven by chronic burden in codes
  and by social context and frailty in notes), otherwise 31 days + Exp(400 days). Some die
  after discharge (DOD set, no further admission).

Codes per admission: ~11 diagnoses (event, severity, chronic, plus a Zipf-ranked background of
~200 real ICD-9 codes), ~4 procedures, 30+ prescription rows (event, chronic and ward drugs,
1-4 rows each), 1-2 services. Notes: a physician admission note, 0-2 nursing notes and often a
radiology report within the first 48 h; sometimes a later nursing note; a discharge summary
(charted on or after the discharge day, with the outcome: only for post-discharge tasks);
radiology reports without HADM_ID between admissions; a few ISERROR=1 notes.

PRESCRIPTIONS product fields are SYNTHETIC: each DRUG string carries one fixed NDC (11 digits,
MIMIC-III's zero-padded 5-4-2 layout without dashes), GSN (6 digits), FORMULARY_DRUG_CD (e.g.
``HEPA5000I``) and PROD_STRENGTH (e.g. ``5000 Units / mL``) in every row, seed and size
(:func:`~mingle_bench.data.synthetic_vocab.rx_products`). NDC and GSN are digits of a keyed hash
of the drug name, distinct across drugs: well-formed, but not the drugs' real codes, so a real
NDC lookup (FDA NDC directory, RxNorm, NDC->ATC maps) resolves them to nothing or to an unrelated
product; they only let NDC-keyed readers (e.g. PyHealth) see one medication code per drug. The
strengths are a hand-written plausible table; the dose columns (DOSE_VAL_RX "mg", FORM_UNIT_DISP
"TAB") stay placeholders that need not agree with them. Filling these fields draws no random
numbers: every other value is the same as when they were empty (before this change), and the
MIMIC-III loader reads only SUBJECT_ID, HADM_ID, STARTDATE and DRUG of this table (the cohort's
content hash, which covers the files' bytes, did change with them).

Latent sidecar: :func:`generate` also writes :data:`LATENTS_FILE` (``SYNTHETIC_LATENTS.csv``,
not a MIMIC table name, so the MIMIC-III loader and the cohort's content hash ignore it): one
row per admission with :data:`LATENT_COLUMNS`, the latents as they stood during that stay
(chronic conditions and DNR before the stay's own updates). Writing it draws no random numbers.
:mod:`mingle_bench.oracle` (``mingle-bench data signal``) fits the *oracle* on it.

Generator version 2 (changed from version 1, fixed on the oracle alone, never on model
results): version 1 left CVD in type-2 diabetes near the noise floor (oracle AUROC 0.61 on 29
test positives: diabetics came back at the same rate as anyone, and ``cv_risk`` only tilted
which event a return brought), and 30-day readmission weak (0.74 on 90). Version 2 adds the
cardiovascular return above, which makes ``cv_risk`` decide whether a diabetic has a CVD
admission within the year (and adds ~12% admissions, mostly diabetics), and strengthens the
social / frailty / chronic-burden effects on returning and on returning within 30 days
(version 1: ``sigmoid(-0.7 + 0.3 n_major + 0.4 f + 0.5 social + 0.4 cancer)`` and ``p30 =
sigmoid(-1.2 + 0.9 social + 0.45 f + 0.3 s + 0.3 n_major)``); the 30-day readmission rate
moves from 17% to 15% of samples.

Signal per task on ``synthetic:default`` (2,000 patients, split seed 0; ``mingle-bench data
signal``): the oracle is a logistic regression on the index admission's latents, trained on
the train split and scored on the test split (phenotype: AUROC of the flattened label matrix,
positives are label cells):

===========  =======  =========  ==============  ============
task         samples  positives  test positives  oracle AUROC
===========  =======  =========  ==============  ============
mortality      3,330        324              59         0.847
los            3,330      1,541             307         0.843
phenotype      1,506      7,550           1,481         0.904
readmission    3,154        462             105         0.821
cvd              948        519             102         0.808
===========  =======  =========  ==============  ============

(version 1: mortality 2,969 / 318 / 55 / 0.896; los 2,969 / 1,385 / 272 / 0.856; phenotype
1,143 / 5,192 / 972 / 0.888; readmission 2,808 / 483 / 90 / 0.738; cvd 647 / 170 / 29 / 0.606.)

Where each task's signal lives:

=======================  ===================================================================
task                     signal
=======================  ===================================================================
in-hospital mortality    severity (codes: shock, ventilation; notes: lactate, pressors),
                         DNR (notes only), frailty (notes only), cancer (codes + notes)
30-day readmission       chronic burden CHF/COPD/CKD/cirrhosis/cancer (codes), social
                         context and frailty (notes only)
LOS > 7 days             event type (both), severity (both), frailty and social (notes)
next-visit phenotypes    persistent chronic conditions (codes; partly notes) and event
                         recurrence; ICD-9 codes fall in the 25 CCS benchmark phenotypes
CVD in type-2 diabetes   cv_risk: CAD/HTN/CKD (codes), smoking and HbA1c (notes), age
=======================  ===================================================================
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from mingle_bench.data import synthetic_notes
from mingle_bench.data.synthetic_vocab import (BACKGROUND_DX, BACKGROUND_PX, BACKGROUND_RX, CHRONIC, EVENTS,
                                               PRESSORS, PROCEDURES, SECOND_SERVICE, SEVERE_SEPSIS, SHOCK,
                                               VENT_CODES, check_vocabulary, icd9_dx_dictionary, rx_products)

GENERATOR_VERSION = 2


def generator_fingerprint() -> str:
    """Version plus a hash of the generator's source files: names the cached synthetic folder,
    so editing the generator never serves stale files."""
    import hashlib

    h = hashlib.blake2b(digest_size=4)
    here = Path(__file__).parent
    for name in ("synthetic.py", "synthetic_vocab.py", "synthetic_notes.py"):
        h.update((here / name).read_bytes())
    return f"{GENERATOR_VERSION}-{h.hexdigest()}"

MAJOR = ("chf", "copd", "ckd", "liver", "cancer")
CV_EVENTS = ("ami", "stroke", "chf_exac")
# After each discharge a type-2 diabetic returns with a cardiovascular event (one of CV_EVENTS)
# with p = sigmoid(CV_RETURN[0] + CV_RETURN[1] * cv_risk), after CV_RETURN_DAYS (uniform) days.
CV_RETURN = (-5.0, 2.5)
CV_RETURN_DAYS = (3.0, 330.0)
# order in which chronic conditions are drawn (later ones depend on earlier ones)
LATENT_ORDER = ("t2dm", "t1dm", "htn", "lipid", "cad", "chf", "afib", "ckd", "copd", "liver", "cancer", "depression",
                "hypothyroid")

HEADERS = {
    "PATIENTS": ["ROW_ID", "SUBJECT_ID", "GENDER", "DOB", "DOD", "DOD_HOSP", "DOD_SSN", "EXPIRE_FLAG"],
    "ADMISSIONS": ["ROW_ID", "SUBJECT_ID", "HADM_ID", "ADMITTIME", "DISCHTIME", "DEATHTIME", "ADMISSION_TYPE",
                   "ADMISSION_LOCATION", "DISCHARGE_LOCATION", "INSURANCE", "LANGUAGE", "RELIGION",
                   "MARITAL_STATUS", "ETHNICITY", "EDREGTIME", "EDOUTTIME", "DIAGNOSIS", "HOSPITAL_EXPIRE_FLAG",
                   "HAS_CHARTEVENTS_DATA"],
    "DIAGNOSES_ICD": ["ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"],
    "PROCEDURES_ICD": ["ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"],
    "PRESCRIPTIONS": ["ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "STARTDATE", "ENDDATE", "DRUG_TYPE", "DRUG",
                      "DRUG_NAME_POE", "DRUG_NAME_GENERIC", "FORMULARY_DRUG_CD", "GSN", "NDC", "PROD_STRENGTH",
                      "DOSE_VAL_RX", "DOSE_UNIT_RX", "FORM_VAL_DISP", "FORM_UNIT_DISP", "ROUTE"],
    "SERVICES": ["ROW_ID", "SUBJECT_ID", "HADM_ID", "TRANSFERTIME", "PREV_SERVICE", "CURR_SERVICE"],
    "NOTEEVENTS": ["ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CHARTTIME", "STORETIME", "CATEGORY",
                   "DESCRIPTION", "CGID", "ISERROR", "TEXT"],
    "D_ICD_DIAGNOSES": ["ROW_ID", "ICD9_CODE", "SHORT_TITLE", "LONG_TITLE"],
    "D_ICD_PROCEDURES": ["ROW_ID", "ICD9_CODE", "SHORT_TITLE", "LONG_TITLE"],
}
# Columns written quoted (text in the PostgreSQL export of the release); others bare.
QUOTED = {
    "PATIENTS": {"GENDER"},
    "ADMISSIONS": {"ADMISSION_TYPE", "ADMISSION_LOCATION", "DISCHARGE_LOCATION", "INSURANCE", "LANGUAGE",
                   "RELIGION", "MARITAL_STATUS", "ETHNICITY", "DIAGNOSIS"},
    "DIAGNOSES_ICD": {"ICD9_CODE"},
    "PROCEDURES_ICD": {"ICD9_CODE"},
    "PRESCRIPTIONS": {"DRUG_TYPE", "DRUG", "DRUG_NAME_POE", "DRUG_NAME_GENERIC", "FORMULARY_DRUG_CD", "GSN", "NDC",
                      "PROD_STRENGTH", "DOSE_VAL_RX", "DOSE_UNIT_RX", "FORM_VAL_DISP", "FORM_UNIT_DISP", "ROUTE"},
    "SERVICES": {"PREV_SERVICE", "CURR_SERVICE"},
    "NOTEEVENTS": {"CATEGORY", "DESCRIPTION", "ISERROR", "TEXT"},
    "D_ICD_DIAGNOSES": {"ICD9_CODE", "SHORT_TITLE", "LONG_TITLE"},
    "D_ICD_PROCEDURES": {"ICD9_CODE", "SHORT_TITLE", "LONG_TITLE"},
}


LATENTS_FILE = "SYNTHETIC_LATENTS.csv"
# The sidecar's columns: ids, patient latents as they stand at the admission, then the admission's own.
LATENT_COLUMNS = (["subject_id", "hadm_id", "visit", "age", "sex", "smoker", "alcohol", "frailty", "social", "dnr"]
                  + list(CHRONIC) + ["poor_a1c", "a1c", "event", "severity", "cv_risk", "pressors", "vent"])


def _fmt_ts(t: datetime | None) -> str:
    return "" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class _Writer:
    """Writes one MIMIC-III CSV: quoted header, quoted text columns, '\\n' line ends."""

    def __init__(self, directory: Path, table: str):
        self.table = table
        self.cols = HEADERS[table]
        self.quoted = [c in QUOTED[table] for c in self.cols]
        self.path = directory / f"{table}.csv"
        self.fh = open(self.path, "w", encoding="utf-8", newline="")
        self.fh.write(",".join(f'"{c}"' for c in self.cols) + "\n")
        self.row_id = 0
        self.count = 0

    def write(self, *values) -> None:
        """``values`` excludes ROW_ID (assigned sequentially). None/"" -> empty field."""
        self.row_id += 1
        vals = (self.row_id,) + values
        out = []
        for v, q in zip(vals, self.quoted):
            if v is None or v == "":
                out.append("")
            elif q:
                out.append('"' + str(v).replace('"', '""') + '"')
            else:
                out.append(str(v))
        self.fh.write(",".join(out) + "\n")
        self.count += 1

    def close(self) -> None:
        self.fh.close()


class _Pool:
    """Weighted sampler over a (value, weight) list; duplicate values merge their weights."""

    def __init__(self, pairs):
        merged: dict[str, float] = {}
        for v, w in pairs:
            merged[v] = merged.get(v, 0.0) + float(w)
        self.values = list(merged)
        w = np.array(list(merged.values()), dtype=float)
        self.cum = np.cumsum(w / w.sum())
        self.cum[-1] = 1.0

    def draw(self, rng: np.random.Generator) -> str:
        return self.values[int(np.searchsorted(self.cum, rng.random(), side="right"))]

    def draw_distinct(self, rng: np.random.Generator, k: int, exclude: set) -> list[str]:
        out: list[str] = []
        tries = 0
        while len(out) < k and tries < 8 * k + 10:
            v = self.draw(rng)
            tries += 1
            if v not in exclude and v not in out:
                out.append(v)
        return out


@dataclass
class _Patient:
    pid: int
    sex: str
    age0: float
    old: bool
    smoker: bool
    alcohol: bool
    frailty: float
    social: str
    dnr: bool
    chronic: dict[str, bool]
    a1c: float | None
    admissions: list = field(default_factory=list)


LOCATIONS = {"EMERGENCY": ["EMERGENCY ROOM ADMIT", "CLINIC REFERRAL/PREMATURE", "TRANSFER FROM HOSP/EXTRAM",
                           "PHYS REFERRAL/NORMAL DELI"], "ELECTIVE": ["PHYS REFERRAL/NORMAL DELI"],
             "URGENT": ["TRANSFER FROM HOSP/EXTRAM", "CLINIC REFERRAL/PREMATURE"]}
INSURANCE = [("Medicare", 0.55), ("Private", 0.32), ("Medicaid", 0.1), ("Government", 0.03)]
ETHNICITY = [("WHITE", 0.7), ("BLACK/AFRICAN AMERICAN", 0.1), ("HISPANIC OR LATINO", 0.04), ("ASIAN", 0.03),
             ("UNKNOWN/NOT SPECIFIED", 0.08), ("OTHER", 0.05)]
DOSES = ("1", "2", "0.5", "4", "1.5", "3", "0.25", "5", "2.5", "6")
ROUTES = {"Heparin": "SC", "Insulin": "SC", "Vancomycin": "IV", "Piperacillin-Tazobactam": "IV",
          "NORepinephrine": "IV DRIP", "Vasopressin": "IV DRIP", "Phenylephrine": "IV DRIP"}


def generate(out_dir: str | os.PathLike, patients: int = 2000, seed: int = 0, progress: bool = False) -> dict:
    """Write a MIMIC-III-schema folder of ``patients`` synthetic patients; return row counts.

    Same ``seed`` and ``patients`` -> byte-identical files. Raises ValueError for bad arguments.
    """
    if not isinstance(patients, (int, np.integer)) or patients < 1:
        raise ValueError(f"--patients must be a positive integer, got {patients!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed!r}")
    check_vocabulary()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 20240313]))
    w = {t: _Writer(out, t) for t in HEADERS}
    latents = open(out / LATENTS_FILE, "w", encoding="utf-8", newline="")
    latents.write(",".join(LATENT_COLUMNS) + "\n")
    try:
        _write_dictionaries(w)
        gen = _Generator(rng, w, latents)
        # MIMIC-III ids: subject_id ascending from 100s-99999, hadm_id random in 100000-199999.
        n_hadm_slots = max(100_000, patients * 12)
        gen.hadm_ids = (100_000 + rng.permutation(n_hadm_slots)).tolist()
        for i in range(patients):
            gen.patient(i)
            if progress and (i + 1) % 5000 == 0:
                print(f"  generated {i + 1:,} / {patients:,} patients", file=sys.stderr, flush=True)
    finally:
        for wr in w.values():
            wr.close()
        latents.close()
    return {t: wr.count for t, wr in w.items()}


# ICD-9 3-digit categories the latent model owns (benchmark phenotypes and CVD): never drawn as noise.
LATENT_CATEGORIES = frozenset(
    "038 250 272 276 401 402 403 404 405 410 411 412 413 414 426 427 428 430 431 432 433 434 435 436 437 438 "
    "480 481 482 483 484 485 486 490 491 492 493 494 496 518 571 572 573 578 584 585 586 785 995 996 997 998 "
    "999".split())


def tail_dx_pool(n: int = 4000, s: float = 1.05) -> list[tuple[str, float]]:
    """The long tail: ``n`` real ICD-9 codes outside the latent categories, Zipf weights 1/(rank+30)^s.

    Chosen with a fixed generator (independent of the data seed), so every seed and size share
    one vocabulary."""
    codes = [c for c, _, _ in icd9_dx_dictionary() if c[:3] not in LATENT_CATEGORIES]
    pick = np.random.default_rng(20240313).permutation(len(codes))[:n]
    return [(codes[i], 1.0 / (rank + 30) ** s) for rank, i in enumerate(pick, start=1)]


def _write_dictionaries(w: dict[str, _Writer]) -> None:
    for code, short, long in icd9_dx_dictionary():
        w["D_ICD_DIAGNOSES"].write(code, short, long)
    for code in sorted(PROCEDURES):
        short, long = PROCEDURES[code]
        w["D_ICD_PROCEDURES"].write(code, short, long)


class _Generator:
    def __init__(self, rng: np.random.Generator, w: dict[str, _Writer], latents=None):
        self.rng = rng
        self.w = w
        self.latents = latents  # text file of the sidecar (LATENT_COLUMNS), or None
        self.hadm_ids: list[int] = []
        self.bg_dx = _Pool(BACKGROUND_DX)
        self.tail_dx = _Pool(tail_dx_pool())
        self.bg_px = _Pool(BACKGROUND_PX)
        self.bg_rx = _Pool(BACKGROUND_RX)
        self.rx_products = rx_products()
        self.chronic_pools = {c: _Pool(d["pool"]) for c, d in CHRONIC.items()}
        self.event_pools = {e: _Pool(d["pool"]) for e, d in EVENTS.items()}
        self.insurance = _Pool(INSURANCE)
        self.ethnicity = _Pool(ETHNICITY)
        self.n_adm = 0

    # -- latent patient ----------------------------------------------------------------------------
    def _latent(self, idx: int) -> _Patient:
        r = self.rng
        sex = "M" if r.random() < 0.56 else "F"
        old = r.random() < 0.07
        age0 = float(r.uniform(90, 97)) if old else float(np.clip(r.normal(63, 16), 18, 89.5))
        smoker = r.random() < 0.22
        alcohol = r.random() < 0.08
        frailty = float(r.normal(0, 1) + 0.04 * (min(age0, 95) - 65))
        u = r.random()
        social = "homeless" if u < 0.03 else ("alone" if u < 0.18 else "supported")
        decade = (min(age0, 95) - 65) / 10
        has: dict[str, bool] = {}
        for c in LATENT_ORDER:
            d = CHRONIC[c]
            bonus = 0.0
            if c == "t1dm" and has.get("t2dm"):
                has[c] = False
                continue
            if c == "htn":
                bonus += 0.8 * has["t2dm"]
            if c == "lipid":
                bonus += 0.6 * has["t2dm"] + 0.4 * has["htn"]
            if c == "cad":
                bonus += 0.6 * has["t2dm"] + 0.5 * has["htn"] + 0.6 * smoker + 0.4 * has["lipid"]
            if c == "chf":
                bonus += 1.0 * has["cad"] + 0.4 * has["htn"]
            if c == "afib":
                bonus += 0.5 * has["chf"]
            if c == "ckd":
                bonus += 0.8 * has["t2dm"] + 0.6 * has["htn"] + 0.5 * has["chf"]
            if c == "copd":
                bonus += 1.6 * smoker
            if c == "liver":
                bonus += 2.2 * alcohol
            if c == "cancer":
                bonus += 0.5 * smoker
            p = d["prevalence"]
            logit = math.log(p / (1 - p)) + d["age_slope"] * decade + bonus
            has[c] = bool(r.random() < _sigmoid(logit))
        diabetic = has["t2dm"] or has["t1dm"]
        a1c = None
        if diabetic:
            poor = r.random() < 0.4
            a1c = float(r.uniform(8.8, 12.5) if poor else r.uniform(6.0, 7.9))
        dnr = bool(r.random() < _sigmoid(-3.4 + 0.07 * (min(age0, 95) - 65) + 0.7 * frailty + 1.5 * has["cancer"]))
        return _Patient(pid=0, sex=sex, age0=age0, old=old, smoker=smoker, alcohol=alcohol, frailty=frailty,
                        social=social, dnr=dnr, chronic=has, a1c=a1c)

    def patient(self, idx: int) -> None:
        r = self.rng
        p = self._latent(idx)
        p.pid = 100 + idx * 3 + int(r.integers(0, 3))  # ascending, gapped like MIMIC
        first = datetime(2100 + int(r.integers(0, 100)), 1, 1) + timedelta(minutes=int(r.integers(0, 365 * 24 * 60)))
        if p.old:  # MIMIC shifts the DOB of patients over 89 to ~300 years before the first admission
            dob = first - timedelta(days=int(300 * 365.25) + int(r.integers(0, 365)))
        else:
            dob = first - timedelta(days=int(p.age0 * 365.25))
        dob = datetime(dob.year, dob.month, dob.day)
        t = first
        dod: datetime | None = None
        prev_event = None
        cv_next = False
        for k in range(12):
            age = p.age0 + (t - first).days / 365.25
            adm = self._admission(p, t, age, prev_event, cv_event=cv_next)
            prev_event = adm["event"]
            if adm["died"]:
                dod = adm["dischtime"]
                break
            major = sum(p.chronic[c] for c in MAJOR)
            fpos = p.frailty
            soc = 1.0 if p.social != "supported" else 0.0
            # out-of-hospital death after discharge
            if r.random() < _sigmoid(-4.0 + 0.5 * adm["severity"] + 0.4 * fpos + 0.03 * (min(age, 95) - 65)
                                     + 1.5 * p.chronic["cancer"]):
                dod = adm["dischtime"] + timedelta(days=float(r.exponential(150)) + 1)
                if r.random() < 0.5:
                    break
            cv_next = bool(p.chronic["t2dm"] and r.random() < _sigmoid(CV_RETURN[0] + CV_RETURN[1] * adm["cv_risk"]))
            if cv_next:  # a type-2 diabetic comes back with a cardiovascular event within the year
                gap = float(r.uniform(*CV_RETURN_DAYS))
            else:
                if r.random() >= _sigmoid(-0.8 + 0.4 * major + 0.5 * fpos + 0.7 * soc + 0.5 * p.chronic["cancer"]):
                    break
                p30 = _sigmoid(-2.0 + 1.8 * soc + 0.9 * fpos + 0.4 * adm["severity"] + 0.5 * major)
                gap = float(r.uniform(1, 30)) if r.random() < p30 else 31 + float(r.exponential(400))
            t = adm["dischtime"] + timedelta(days=gap, minutes=int(r.integers(0, 24 * 60)))
            if dod is not None and t >= dod:
                break
        self._write_patient(p, dob, dod)

    def _write_patient(self, p: _Patient, dob: datetime, dod: datetime | None) -> None:
        d = None if dod is None else datetime(dod.year, dod.month, dod.day)
        died_in_hosp = any(a["died"] for a in p.admissions)
        self.w["PATIENTS"].write(p.pid, p.sex, _fmt_ts(dob), _fmt_ts(d), _fmt_ts(d) if died_in_hosp else "",
                                 _fmt_ts(d) if (d is not None and self.rng.random() < 0.7) else "",
                                 1 if d is not None else 0)

    # -- one admission --------------------------------------------------------------------------------
    def _admission(self, p: _Patient, t: datetime, age: float, prev_event: str | None,
                   cv_event: bool = False) -> dict:
        """One stay; ``cv_event`` restricts the acute event to the cardiovascular ones."""
        r = self.rng
        ch = p.chronic
        diabetic_t2 = ch["t2dm"]
        poor_a1c = p.a1c is not None and p.a1c > 8.5
        cv_risk = (0.8 * p.smoker + 0.9 * poor_a1c + 0.7 * ch["cad"] + 0.4 * ch["htn"] + 0.4 * ch["ckd"]
                   + 0.03 * (min(age, 95) - 65))
        names = list(EVENTS)
        weights = []
        for e in names:
            d = EVENTS[e]
            wgt = d["base"] + d.get("risk_add", 0.0) * ch.get("cad", False)
            for c, m in d["risk"].items():
                if ch.get(c):
                    wgt *= m
            if d.get("frail"):
                wgt *= math.exp(0.6 * p.frailty + 0.03 * (min(age, 95) - 65))
            if diabetic_t2 and e in CV_EVENTS:
                wgt *= math.exp(0.6 * cv_risk)
            if e == prev_event:
                wgt *= 1.5
            if e == "cabg" and not ch["cad"]:
                wgt = 0.0
            if cv_event and e not in CV_EVENTS:
                wgt = 0.0
            weights.append(wgt)
        warr = np.array(weights)
        event = names[int(np.searchsorted(np.cumsum(warr / warr.sum()), r.random(), side="right").clip(0, len(names) - 1))]
        ev = EVENTS[event]
        major = sum(ch[c] for c in MAJOR)
        sev = float(r.normal(ev["sev"], 0.8) + 0.015 * (min(age, 95) - 65) + 0.15 * major + 0.2 * p.frailty)
        pressors = sev > 0.6 and r.random() < _sigmoid(2.5 * (sev - 1.4))
        vent = r.random() < _sigmoid(2.0 * (sev - 1.6) + (0.8 if event in ("pneumonia", "copd_exac", "stroke") else 0)
                                     + (1.5 if event == "cabg" else 0))
        lactate = max(0.5, 1.0 + 1.3 * max(sev, 0.0) + float(r.normal(0, 0.5)) + (1.0 if pressors else 0.0))
        died = r.random() < _sigmoid(-4.2 + 1.25 * sev + 1.5 * p.dnr + 0.35 * p.frailty + 0.02 * (min(age, 95) - 65)
                                     + 0.5 * ch["cancer"])
        soc = p.social != "supported"
        log_los = (math.log(0.85 * ev["los"]) + 0.3 * sev + 0.25 * p.frailty + 0.35 * soc + 0.3 * vent
                   + float(r.normal(0, 0.45)))
        los = float(min(max(math.exp(log_los), 0.15), 120.0))
        if died:
            los = max(0.1, los * float(r.uniform(0.2, 1.0)))
        elective = bool(ev.get("elective"))
        adm_type = "ELECTIVE" if elective else ("URGENT" if r.random() < 0.06 else "EMERGENCY")
        if elective:
            t = datetime(t.year, t.month, t.day, 7) + timedelta(minutes=int(r.integers(0, 180)))
        admittime = t.replace(second=0, microsecond=0)
        dischtime = (admittime + timedelta(days=los)).replace(second=0, microsecond=0)
        if dischtime <= admittime:
            dischtime = admittime + timedelta(minutes=30)
        hadm = self.hadm_ids[self.n_adm]
        self.n_adm += 1

        # --- diagnoses ---
        dx: list[str] = [self.event_pools[event].draw(r)]
        if pressors and r.random() < 0.5:
            dx.append(SHOCK.get(event, "78559"))
        if event == "sepsis" and sev > 1.0 and r.random() < 0.6:
            dx.append(SEVERE_SEPSIS)
        if vent:
            dx.append(VENT_CODES["resp_failure"])
        for code, pr in ev["extra"]:
            if r.random() < pr:
                dx.append(code)
        for c, d in CHRONIC.items():
            if ch[c] and r.random() < d["code_p"]:
                code = self.chronic_pools[c].draw(r)
                if c == "t2dm" and poor_a1c and r.random() < 0.4:
                    code = "25002"
                dx.append(code)
        if p.smoker and r.random() < 0.3:
            dx.append("3051")
        if p.alcohol and r.random() < 0.4:
            dx.append("30500" if r.random() < 0.7 else "30390")
        dx = list(dict.fromkeys(dx))
        dx += self.tail_dx.draw_distinct(r, int(r.poisson(2.0)), set(dx))
        n_bg = int(r.poisson(max(1.0, 10.0 - len(dx))))
        dx += self.bg_dx.draw_distinct(r, n_bg, set(dx))
        for i, code in enumerate(dx, start=1):
            self.w["DIAGNOSES_ICD"].write(p.pid, hadm, i, code)

        # --- procedures ---
        px: list[str] = [c for c, pr in ev["px"] if r.random() < pr]
        if vent:
            px += [VENT_CODES["intubation"], VENT_CODES["long"] if los > 4 else VENT_CODES["short"]]
        if ch["ckd"] and r.random() < 0.15:
            px.append("3995")
        px = list(dict.fromkeys(px))
        px += self.bg_px.draw_distinct(r, int(r.poisson(2.0)), set(px))
        for i, code in enumerate(px, start=1):
            self.w["PROCEDURES_ICD"].write(p.pid, hadm, i, code)

        # --- prescriptions ---
        drugs: list[str] = [m for m in ev["meds"] if r.random() < 0.85]
        for c, d in CHRONIC.items():
            if ch[c]:
                drugs += [m for m in d["meds"] if r.random() < 0.55]
        if pressors and r.random() < 0.35:
            drugs.append(PRESSORS[0])
            if r.random() < 0.4:
                drugs.append(PRESSORS[1])
        drugs = list(dict.fromkeys(drugs))
        drugs += self.bg_rx.draw_distinct(r, int(r.poisson(9)), set(drugs))
        stay_days = max((dischtime - admittime).total_seconds() / 86400.0, 0.1)
        for drug in drugs:
            product = self.rx_products[drug]  # fixed per drug: no random draw
            for dose_i in range(1 + int(r.poisson(1.1))):
                start = admittime + timedelta(days=float(r.uniform(0, stay_days)))
                start_d = datetime(start.year, start.month, start.day)
                end_d = start_d + timedelta(days=int(r.integers(0, 4)))
                self.w["PRESCRIPTIONS"].write(
                    p.pid, hadm, "", _fmt_ts(start_d), _fmt_ts(end_d), "MAIN", drug, drug, drug,
                    product.formulary_drug_cd, product.gsn, product.ndc, product.prod_strength,
                    DOSES[dose_i % len(DOSES)], "mg", "1", "TAB", ROUTES.get(drug, "PO" if r.random() < 0.6 else "IV"))

        # --- services ---
        svc = ev["service"]
        self.w["SERVICES"].write(p.pid, hadm, _fmt_ts(admittime + timedelta(minutes=int(r.integers(1, 90)))), "", svc)
        if r.random() < 0.15 and svc in SECOND_SERVICE:
            nxt = SECOND_SERVICE[svc][int(r.integers(len(SECOND_SERVICE[svc])))]
            when = admittime + timedelta(days=float(r.uniform(0.2, 0.9)) * stay_days)
            self.w["SERVICES"].write(p.pid, hadm, _fmt_ts(when), svc, nxt)

        # --- admissions row ---
        loc = LOCATIONS[adm_type][int(r.integers(len(LOCATIONS[adm_type])))]
        dispo = "DEAD/EXPIRED" if died else ("HOME" if r.random() < 0.4 else
                                             ("HOME HEALTH CARE" if r.random() < 0.5 else "SNF"))
        ed_in = admittime - timedelta(minutes=int(r.integers(60, 400))) if adm_type == "EMERGENCY" else None
        self.w["ADMISSIONS"].write(
            p.pid, hadm, _fmt_ts(admittime), _fmt_ts(dischtime), _fmt_ts(dischtime) if died else "", adm_type, loc,
            dispo, self.insurance.draw(r), "ENGL" if r.random() < 0.8 else "", "",
            "MARRIED" if p.social == "supported" and r.random() < 0.7 else "SINGLE", self.ethnicity.draw(r),
            _fmt_ts(ed_in), _fmt_ts(admittime - timedelta(minutes=10)) if ed_in else "", ev["label"].upper(),
            1 if died else 0, 1)

        # --- notes ---
        ctx = dict(sex=p.sex, age_text=str(int(min(age, 91))) if age < 90 else "over 90", event=event,
                   event_in_notes=r.random() < 0.85, event_label=ev["label"], lactate=lactate,
                   wbc=float(r.uniform(4, 12) + 6 * max(sev, 0)), creat=float(r.uniform(0.7, 1.3) + 1.5 * ch["ckd"]),
                   hgb=float(r.uniform(9, 14) - (3 if event == "gi_bleed" else 0)), pressors=pressors, vent=vent,
                   temp=float(37.0 + r.uniform(-0.4, 0.6) + (1.2 if event in ("sepsis", "pneumonia") else 0)),
                   hr=int(75 + 10 * max(sev, 0) + r.integers(-10, 15)),
                   sbp=int(np.clip(125 - 15 * max(sev, 0) + r.integers(-15, 20), 65, 200)),
                   dbp=int(np.clip(70 - 6 * max(sev, 0) + r.integers(-10, 10), 35, 110)), meds=drugs,
                   a1c=p.a1c, frailty=p.frailty, social=p.social, smoker=p.smoker, alcohol=p.alcohol, dnr=p.dnr,
                   pmh=[CHRONIC[c]["label"] for c in CHRONIC if ch[c] and r.random() < CHRONIC[c]["pmh_p"]],
                   chronic_labels=[CHRONIC[c]["label"] for c in CHRONIC if ch[c]], died=died, service=svc,
                   admit_deid=f"{admittime.year}-{admittime.month}-{admittime.day}",
                   disch_deid=f"{dischtime.year}-{dischtime.month}-{dischtime.day}")
        self._notes(p, hadm, admittime, dischtime, ctx)
        if self.latents is not None:  # the latents as they stood during this stay (no random draws)
            row = [p.pid, hadm, len(p.admissions), f"{age:.3f}", p.sex, int(p.smoker), int(p.alcohol),
                   f"{p.frailty:.4f}", p.social, int(p.dnr), *(int(ch[c]) for c in CHRONIC), int(poor_a1c),
                   "" if p.a1c is None else f"{p.a1c:.2f}", event, f"{sev:.4f}", f"{cv_risk:.4f}", int(pressors),
                   int(vent)]
            self.latents.write(",".join(str(v) for v in row) + "\n")
        adm = dict(hadm=hadm, event=event, died=died, admittime=admittime, dischtime=dischtime, severity=sev,
                   cv_risk=cv_risk)
        p.admissions.append(adm)

        # --- latent updates after the stay ---
        if event == "ami":
            ch["cad"] = True
            if not ch["chf"] and r.random() < 0.25:
                ch["chf"] = True
        if event == "aki" and not ch["ckd"] and r.random() < 0.15:
            ch["ckd"] = True
        if not p.dnr and r.random() < _sigmoid(-4.5 + 0.8 * p.frailty + 0.5 * sev):
            p.dnr = True
        return adm

    def _note(self, p: _Patient, hadm: int | None, when: datetime, category: str, description: str, text: str,
              with_time: bool = True, iserror: bool = False) -> None:
        r = self.rng
        cgid = int(r.integers(14000, 21000)) if category in ("Nursing", "Physician ") else ""
        store = when + timedelta(minutes=int(r.integers(5, 240))) if with_time else None
        self.w["NOTEEVENTS"].write(
            p.pid, hadm if hadm is not None else "", when.strftime("%Y-%m-%d"), _fmt_ts(when) if with_time else "",
            _fmt_ts(store), category, description, cgid, "1" if iserror else "", text)

    def _notes(self, p: _Patient, hadm: int, admit: datetime, disch: datetime, ctx: dict) -> None:
        r = self.rng
        stay_h = (disch - admit).total_seconds() / 3600.0
        horizon = min(48.0, stay_h)
        if r.random() < 0.05:  # outpatient imaging before the admission, no HADM_ID
            title, text = synthetic_notes.radiology_note(r, dict(ctx, vent=False))
            self._note(p, None, admit - timedelta(days=float(r.uniform(1, 20))), "Radiology", title, text)
        if r.random() < 0.9:
            when = admit + timedelta(hours=float(r.uniform(0.5, min(14.0, max(horizon, 0.6)))))
            self._note(p, hadm, when, "Physician ", "Physician Resident Admission Note", synthetic_notes.physician_note(r, ctx))
        n_nursing = int(r.random() < 0.55) + int(r.random() < 0.1)
        for _ in range(n_nursing):
            when = admit + timedelta(hours=float(r.uniform(2.0, max(horizon, 2.1))))
            text = synthetic_notes.nursing_note(r, ctx)
            self._note(p, hadm, when, "Nursing", "Nursing Progress Note", text)
            if r.random() < 0.01:  # an erroneous duplicate, flagged ISERROR=1 as in MIMIC
                self._note(p, hadm, when + timedelta(minutes=3), "Nursing", "Nursing Progress Note",
                           "ERROR: wrong patient. " + text, iserror=True)
        if r.random() < 0.3:
            title, text = synthetic_notes.radiology_note(r, ctx)
            self._note(p, hadm, admit + timedelta(hours=float(r.uniform(0.2, max(horizon, 0.3)))), "Radiology",
                       title, text)
        if stay_h > 72 and r.random() < 0.3:  # a later note, outside admission-time windows
            when = admit + timedelta(hours=float(r.uniform(49, stay_h)))
            self._note(p, hadm, when, "Nursing", "Nursing Progress Note", synthetic_notes.nursing_note(r, ctx))
        if r.random() < 0.92:
            lag = 0 if r.random() < 0.6 else int(r.integers(1, 15))
            when = datetime(disch.year, disch.month, disch.day) + timedelta(days=lag)
            self._note(p, hadm, when, "Discharge summary", "Report", synthetic_notes.discharge_summary(r, ctx), with_time=False)
