"""In-hospital mortality, predicted 48 h after admission."""
from __future__ import annotations

import numpy as np
import pandas as pd

from mingle_bench.data.cohort import Cohort

from .base import EarlyPredictionTask
from .registry import register_task


@register_task
class MortalityTask(EarlyPredictionTask):
    """In-hospital mortality per admission, predicted at admit + 48 h.

    * **Label** (``in_hospital_mortality``): the admission's ``hospital_expire_flag``, cast
      explicitly to int (never parsed from text; cf. PyHealth issues #391/#551).
    * **Cohort**: one sample per admission. Excluded, in this order and counted in the report:
      admissions without a discharge time; patients under 18 at admission (``min_age``);
      admissions that end (discharge, or death when it precedes discharge) at or before
      admit + 48 h.
    * **Window and prediction time**: observation window [admission, admit + 48 h]; prediction
      at admit + 48 h (``hours``).
    * **Inputs**: the admission's codes of the configured ``code_types`` (time-stamped codes only
      when charted by admit + 48 h; codes without a time, i.e. diagnoses and MIMIC-III
      procedures, are included) and the notes charted at or before admit + 48 h (a date-only
      note counts at the end of its day). Discharge summaries are never inputs, under either note
      policy (``notes="default"`` or ``"in-stay"``; the policy matters only for the
      discharge-time tasks).
      **Caveat**: MIMIC diagnosis codes are assigned at discharge for billing, so they summarise
      the whole stay, including events after the prediction time; this is how the published
      code-based benchmarks use them. ``code_types=("medication", "service")`` gives a strictly
      time-stamped input view.
    * **Leakage guards**: the outcome is unknown at prediction time (short stays excluded);
      notes after the window and all discharge summaries are dropped and counted; history
      visits must have ended their window by the prediction time.
    * **Follows**: the 48 h in-hospital mortality definitions of Harutyunyan et al. 2019 (there:
      per ICU stay) and PyHealth's ``InHospitalMortalityMIMIC4``; per-admission, as in the
      MINGLE/HypEHR visit-level setting.
    """

    name = "mortality"
    label_names = ["in_hospital_mortality"]
    reference = "Harutyunyan et al. 2019 (48 h in-hospital mortality), per admission"

    def make_samples(self, cohort: Cohort, adm: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
        keep, excluded = self.early_cohort(adm)
        s = adm.loc[keep]
        labels = s["hospital_expire_flag"].astype("int64").to_numpy()
        pred = s["admittime"] + pd.Timedelta(hours=self.hours)
        frame = pd.DataFrame({"patient_id": s["patient_id"], "hadm_id": s["hadm_id"], "prediction_time": pred})
        return frame, labels, excluded
