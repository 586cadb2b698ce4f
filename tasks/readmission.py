"""Unplanned 30-day readmission, predicted at discharge."""
from __future__ import annotations

import numpy as np
import pandas as pd

from mingle_bench.data.cohort import Cohort

from .base import DischargeTimeTask
from .registry import register_task

PLANNED_ADMISSION_TYPES = ("ELECTIVE", "SURGICAL SAME DAY ADMISSION")


@register_task
class ReadmissionTask(DischargeTimeTask):
    """Unplanned readmission within 30 days of discharge.

    * **Label** (``readmission_30d``): 1 when a later admission of the patient (visit order)
      that is not planned (``admission_type`` not ELECTIVE / SURGICAL SAME DAY ADMISSION) starts
      within 30 days (``days``) of the index discharge: 0 <= next ``admittime`` - index
      ``dischtime`` <= 30 days. A later admission that starts before the index discharge
      (overlapping records) is not a readmission and is counted in the report. Deaths after
      discharge without readmission are labelled 0 (no censoring information is available).
    * **Cohort**: one sample per admission. Excluded and counted: admissions without a discharge
      time; in-hospital deaths (``hospital_expire_flag`` = 1 or a ``deathtime``); patients
      younger than ``min_age`` (default: all ages).
    * **Window and prediction time**: prediction at the index discharge; observation window = the
      index admission up to its discharge.
    * **Inputs**: the index admission's codes and its notes charted at or before discharge. Note
      policy (``notes``): ``"default"`` also takes the index admission's own discharge summary,
      counted as written at discharge (MINGLE's note input: the paper uses discharge notes);
      ``"in-stay"`` drops every discharge summary (they are finalised after discharge and
      describe follow-up plans).
    * **Leakage guards**: nothing of a later admission is an input (notes are selected per
      admission by ``hadm_id``, so the readmission's discharge summary never is); apart from the
      index discharge summary under ``"default"``, nothing charted after the index discharge is an
      input; the gap is measured from discharge to the next admit time (not admit to admit, cf.
      KARE#17).
    * **Follows**: the 30-day readmission tasks of PyHealth and of the MIMIC-III literature
      (planned readmissions excluded, as CMS does).
    """

    name = "readmission"
    label_names = ["readmission_30d"]
    reference = "PyHealth readmission / CMS 30-day unplanned readmission"

    def __init__(self, code_types=None, min_age="default", days: float = 30.0, notes: str = "default") -> None:
        super().__init__(code_types, min_age, notes)
        self.days = float(days)

    def make_samples(self, cohort: Cohort, adm: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
        excluded: dict[str, int] = {}
        keep = adm["dischtime"].notna()
        excluded["no discharge time"] = int((~keep).sum())
        died = keep & ((adm["hospital_expire_flag"] == 1) | adm["deathtime"].notna())
        excluded["in-hospital death"] = int(died.sum())
        keep &= ~died
        keep = self.apply_min_age(adm, keep, excluded)

        # every later admission of the same patient, paired with each index admission
        idx = adm.loc[keep, ["patient_id", "hadm_id", "dischtime", "visit_rank"]]
        later = adm[["patient_id", "admittime", "admission_type", "visit_rank"]].rename(
            columns={"visit_rank": "later_rank"})
        pairs = idx.merge(later, on="patient_id")
        pairs = pairs.loc[pairs["later_rank"] > pairs["visit_rank"]]
        gap = pairs["admittime"] - pairs["dischtime"]
        planned = pairs["admission_type"].fillna("").astype(str).str.strip().str.upper().isin(PLANNED_ADMISSION_TYPES)
        in_window = (gap >= pd.Timedelta(0)) & (gap <= pd.Timedelta(days=self.days))
        positive_ids = set(pairs.loc[in_window & ~planned, "hadm_id"].tolist())
        label_info = {
            "later admissions overlapping the index stay (ignored)": int((gap < pd.Timedelta(0)).sum()),
            "planned readmissions within the window (not counted)": int((in_window & planned).sum()),
        }
        s = adm.loc[keep]
        labels = s["hadm_id"].isin(positive_ids).astype("int64").to_numpy()
        frame = pd.DataFrame({"patient_id": s["patient_id"], "hadm_id": s["hadm_id"], "prediction_time": s["window_end"]})
        frame.attrs["label_info"] = label_info
        return frame, labels, excluded
