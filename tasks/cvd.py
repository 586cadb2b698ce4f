"""CRADLE-style cardiovascular events in type 2 diabetes, within one year of an index admission."""
from __future__ import annotations

import numpy as np
import pandas as pd

from mingle_bench.data.cohort import Cohort

from .base import DischargeTimeTask, match_codes
from .registry import register_task

# Regular expressions on diagnosis codes as released (no dot), anchored at the start.
T2D_ICD9 = r"250\d[02]$"            # 250.x0 / 250.x2: diabetes mellitus, type II
T2D_ICD10 = r"E11"                  # E11.*: type 2 diabetes mellitus
CVD_ICD9 = {
    "coronary heart disease": r"41[0-4]",                                   # 410-414 ischaemic heart disease
    "myocardial infarction": r"410",                                        # (within CHD) acute MI
    "heart failure": r"428|39891$|402[019]1$|404[019][13]$",               # HF, rheumatic HF, hypertensive HF
    "stroke": r"43[0-2]|43[34]\d1$|436",                                   # haemorrhagic, ischaemic with infarction, acute ill-defined
}
CVD_ICD10 = {
    "coronary heart disease": r"I2[0-5]",
    "myocardial infarction": r"I2[12]",
    "heart failure": r"I50|I110|I13[02]|I0981",
    "stroke": r"I6[0-3]",
}


@register_task
class CVDTask(DischargeTimeTask):
    """Cardiovascular event within one year, for patients with type 2 diabetes (CRADLE-style).

    * **Cohort**: index admissions are the admissions at which a type 2 diabetes diagnosis is
      coded (ICD-9 250.x0 / 250.x2, ICD-10 E11.*), so cohort membership uses only the index
      admission. Excluded and counted: admissions without a discharge time; in-hospital deaths
      at the index (no later admission can follow); patients younger than ``min_age`` (default 18).
    * **Label** (``cvd_1y``): 1 when a later admission (visit order) starting within 365 days
      (``days``) after the index discharge carries a CVD diagnosis code (any ``seq_num``):
        - coronary heart disease: ICD-9 410-414; ICD-10 I20-I25
        - myocardial infarction: ICD-9 410; ICD-10 I21-I22 (contained in CHD)
        - heart failure: ICD-9 428, 398.91, 402.x1, 404.x1, 404.x3; ICD-10 I50, I11.0, I13.0, I13.2, I09.81
        - stroke: ICD-9 430-432, 433.x1, 434.x1, 436; ICD-10 I60-I63
      A patient with prior CVD stays in the cohort (CVD history is an input, not an exclusion);
      no later admission within the year means label 0 (no censoring information).
    * **Window and prediction time**: prediction at the index discharge; observation window = the
      index admission.
    * **Inputs**: the index admission's codes and its notes charted at or before discharge. Note
      policy (``notes``): ``"default"`` also takes the index admission's own discharge summary,
      counted as written at discharge (MINGLE's note input: the paper uses discharge notes);
      ``"in-stay"`` drops every discharge summary.
    * **Leakage guards**: later admissions define only the label: none of their codes or notes
      (discharge summaries included; notes are selected per admission by ``hadm_id``) is an
      input; apart from the index discharge summary under ``"default"``, nothing charted after
      the index discharge is an input.
    * **Follows**: the CRADLE task of MINGLE / HypEHR / CACHE (CVD risk in type 2 diabetes,
      1-year horizon); the CRADLE code sets are not public, these are standard administrative
      definitions.
    """

    name = "cvd"
    label_names = ["cvd_1y"]
    reference = "MINGLE / CACHE CRADLE task (CVD in type 2 diabetes within 1 year), public code sets"
    default_min_age = 18.0

    def __init__(self, code_types=None, min_age="default", days: float = 365.0, notes: str = "default") -> None:
        super().__init__(code_types, min_age, notes)
        self.days = float(days)

    @staticmethod
    def _dx_matching(codes: pd.DataFrame, icd9: str, icd10: str) -> pd.Series:
        dx = codes.loc[codes["code_type"] == "diagnosis"]
        v = dx["icd_version"]
        m9 = (v == 9).fillna(False).astype(bool) & match_codes(dx["code"], icd9)
        m10 = (v == 10).fillna(False).astype(bool) & match_codes(dx["code"], icd10)
        return dx.loc[m9 | m10, "hadm_id"]

    def make_samples(self, cohort: Cohort, adm: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
        t2d_adm = set(self._dx_matching(cohort.codes, T2D_ICD9, T2D_ICD10).tolist())
        cvd9 = "|".join(f"(?:{p})" for p in CVD_ICD9.values())
        cvd10 = "|".join(f"(?:{p})" for p in CVD_ICD10.values())
        cvd_adm = set(self._dx_matching(cohort.codes, cvd9, cvd10).tolist())

        excluded: dict[str, int] = {}
        keep = adm["hadm_id"].isin(t2d_adm)
        excluded["no type 2 diabetes code at the admission"] = int((~keep).sum())
        no_disch = keep & adm["dischtime"].isna()
        excluded["no discharge time"] = int(no_disch.sum())
        keep &= ~no_disch
        died = keep & ((adm["hospital_expire_flag"] == 1) | adm["deathtime"].notna())
        excluded["in-hospital death"] = int(died.sum())
        keep &= ~died
        keep = self.apply_min_age(adm, keep, excluded)

        idx = adm.loc[keep, ["patient_id", "hadm_id", "dischtime", "visit_rank"]]
        later = adm[["patient_id", "hadm_id", "admittime", "visit_rank"]].rename(
            columns={"hadm_id": "later_hadm_id", "visit_rank": "later_rank"})
        pairs = idx.merge(later, on="patient_id")
        gap = pairs["admittime"] - pairs["dischtime"]
        event = ((pairs["later_rank"] > pairs["visit_rank"]) & (gap >= pd.Timedelta(0))
                 & (gap <= pd.Timedelta(days=self.days)) & pairs["later_hadm_id"].isin(cvd_adm))
        positive_ids = set(pairs.loc[event, "hadm_id"].tolist())
        s = adm.loc[keep]
        labels = s["hadm_id"].isin(positive_ids).astype("int64").to_numpy()
        frame = pd.DataFrame({"patient_id": s["patient_id"], "hadm_id": s["hadm_id"], "prediction_time": s["window_end"]})
        return frame, labels, excluded
