"""A task of your own: in-hospital death within 7 days of admission, predicted 24 h after admission.

Run it with any registered models::

    mingle-bench run --plugin examples/custom_task.py --task death-7d --models logreg,mingle --data synthetic:small

The task contract (docs/extending.md): a :class:`~mingle_bench.tasks.base.Task` subclass with a
``name``, ``label_names`` and ``reference``, registered with ``@register_task``, whose
``make_samples(cohort, admissions)`` returns one row per sample (``patient_id``, ``hadm_id``,
``prediction_time``), the labels (int, one column per label) and the exclusion counts. The base
class then selects the input codes and notes by ``window_end`` (the leakage guard), builds the
visit history and the report; the split, features and models are the same as for every task.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from mingle_bench.data.cohort import Cohort
from mingle_bench.tasks import register_task
from mingle_bench.tasks.base import EarlyPredictionTask

HORIZON = pd.Timedelta(days=7)


@register_task
class EarlyDeathTask(EarlyPredictionTask):
    """In-hospital death within 7 days of admission, per admission, predicted at admit + 24 h.

    * **Label** (``death_within_7d``): 1 when the admission's ``hospital_expire_flag`` is 1 and
      the death (``deathtime``, or the discharge time where the death time is missing) falls at
      or before admit + 7 days; 0 otherwise (survivors, and deaths after day 7).
    * **Cohort**: one sample per admission. Excluded, in this order and counted in the report:
      admissions without a discharge time; patients under 18 at admission; admissions that end
      (discharge, or death when it precedes discharge) at or before admit + 24 h, whose outcome
      is known at prediction time.
    * **Window and prediction time**: observation window [admission, admit + 24 h]; prediction
      at admit + 24 h (``hours=24``).
    * **Inputs**: the admission's codes of the configured ``code_types`` charted by admit + 24 h
      (codes without a time, i.e. diagnoses, are included, with the caveat of
      ``tasks/mortality.py``: they are assigned at discharge) and the notes charted by then;
      discharge summaries never, under either note policy.
    * **Leakage guards**: short stays are excluded, so no sample's outcome is known at
      prediction time; notes and time-stamped codes after the window are dropped (the base
      class, by :meth:`window_end`); history visits must have ended their window by the
      prediction time.
    """

    name = "death-7d"
    label_names = ["death_within_7d"]
    reference = "example task (examples/custom_task.py): 7-day in-hospital mortality at admit + 24 h"

    def __init__(self, code_types=None, min_age="default", hours: float = 24.0, notes: str = "default") -> None:
        super().__init__(code_types, min_age, hours, notes)

    def make_samples(self, cohort: Cohort, adm: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
        keep, excluded = self.early_cohort(adm)
        s = adm.loc[keep]
        died = s["hospital_expire_flag"].astype("int64") == 1
        death_time = s["deathtime"].where(s["deathtime"].notna(), s["dischtime"])
        labels = (died & (death_time <= s["admittime"] + HORIZON)).astype("int64").to_numpy()
        pred = s["admittime"] + pd.Timedelta(hours=self.hours)
        frame = pd.DataFrame({"patient_id": s["patient_id"], "hadm_id": s["hadm_id"], "prediction_time": pred})
        return frame, labels, excluded
