"""Length of stay above 7 days, predicted 48 h after admission."""
from __future__ import annotations

import numpy as np
import pandas as pd

from mingle_bench.data.cohort import Cohort

from .base import EarlyPredictionTask
from .registry import register_task


@register_task
class LengthOfStayTask(EarlyPredictionTask):
    """Length of stay above 7 days, predicted at admit + 48 h.

    * **Label** (``los_gt_7d``): 1 when ``dischtime - admittime`` exceeds 7 days
      (``threshold_days``), else 0. An in-hospital death ends the stay at discharge as recorded.
    * **Cohort**: one sample per admission, with the same exclusions as ``mortality``: no
      discharge time; under 18 (``min_age``); stays that end at or before admit + 48 h (their
      label would be known at prediction time).
    * **Window and prediction time**: observation window [admission, admit + 48 h]; prediction
      at admit + 48 h.
    * **Inputs**: identical to ``mortality``: the admission's codes (time-stamped codes only when
      charted by admit + 48 h; diagnoses are assigned at discharge, see the caveat there) and the
      notes charted at or before admit + 48 h, never discharge summaries (under either note
      policy).
    * **Leakage guards**: as ``mortality``.
    * **Follows**: the length-of-stay > 7 days task of PyHealth / Harutyunyan et al. 2019
      (binarised) with the 48 h observation window of the mortality task.
    """

    name = "los"
    label_names = ["los_gt_7d"]
    reference = "PyHealth / Harutyunyan et al. 2019 length of stay, binarised at 7 days, admit + 48 h"

    def __init__(self, code_types=None, min_age="default", hours: float = 48.0, threshold_days: float = 7.0,
                 notes: str = "default") -> None:
        super().__init__(code_types, min_age, hours, notes)
        if not threshold_days * 24 > hours:
            raise ValueError(f"threshold_days ({threshold_days}) must exceed the {hours:g} h observation window")
        self.threshold_days = float(threshold_days)

    def make_samples(self, cohort: Cohort, adm: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
        keep, excluded = self.early_cohort(adm)
        s = adm.loc[keep]
        los = s["dischtime"] - s["admittime"]
        labels = (los > pd.Timedelta(days=self.threshold_days)).astype("int64").to_numpy()
        pred = s["admittime"] + pd.Timedelta(hours=self.hours)
        frame = pd.DataFrame({"patient_id": s["patient_id"], "hadm_id": s["hadm_id"], "prediction_time": pred})
        return frame, labels, excluded
