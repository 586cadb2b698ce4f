"""Next-visit phenotyping: the 25 benchmark phenotypes at visit t+1 from visit t (MINGLE's MIMIC-III task)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from mingle_bench.data.cohort import Cohort

from .base import DischargeTimeTask
from .phenotype_defs import load_phenotypes
from .registry import register_task


@register_task
class PhenotypeTask(DischargeTimeTask):
    """Given visit t, predict which of the 25 benchmark phenotypes occur at visit t+1.

    * **Labels** (25, multi-label): phenotype k is 1 when any ICD-9 diagnosis code of the next
      admission t+1 (any ``seq_num``) belongs to phenotype k in ``tasks/phenotypes.json`` (the
      single-level CCS categories of Harutyunyan et al. 2019, as ICD-9 code lists).
    * **Cohort**: patients with at least 2 admissions; one sample per admission t that has a next
      admission t+1 in visit order (time, then ``hadm_id``). Excluded and counted: the last
      admission of each patient (and single-admission patients); admissions without a discharge
      time; admissions whose next admission has no ICD-9 diagnosis code (an all-zero label would
      be indistinguishable from "no phenotype"; ICD-10 admissions of MIMIC-IV land here).
    * **Window and prediction time**: prediction at the discharge of visit t; observation window
      = visit t, up to its discharge.
    * **Inputs**: the codes of visit t (configured ``code_types``) and the notes of visit t charted
      at or before its discharge. Note policy (``notes``): ``"default"`` also takes visit t's own
      discharge summary (linked by ``hadm_id``), counted as written at the discharge of visit t
      whatever its chart date or time; this is MINGLE's note input (the paper embeds discharge
      notes on MIMIC-III). ``"in-stay"`` drops every discharge summary (they are often finalised
      after discharge and some are amended later), keeping only notes written during the stay
      (nursing, physician, radiology, ...); see docs/tasks.md.
    * **Leakage guards**: nothing of visit t+1 (codes or notes, its discharge summary included) is
      an input of sample t: notes are selected per admission by ``hadm_id``; the history holds
      only visits whose window ended by the prediction time.
    * **Follows**: the MINGLE / HypEHR / CACHE MIMIC-III next-visit task (labels from
      Harutyunyan et al. 2019 phenotypes).
    """

    name = "phenotype"
    label_names = list(load_phenotypes()[0])
    reference = "MINGLE (Cui et al. 2024) next-visit phenotyping; phenotypes of Harutyunyan et al. 2019"

    def make_samples(self, cohort: Cohort, adm: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
        names, code_to_label = load_phenotypes()
        nxt = self.next_admission(adm)
        excluded: dict[str, int] = {}
        keep = nxt["next_hadm_id"].notna()
        excluded["no next admission (last or only visit)"] = int((~keep).sum())
        no_disch = keep & adm["dischtime"].isna()
        excluded["no discharge time"] = int(no_disch.sum())
        keep &= ~no_disch
        keep = self.apply_min_age(adm, keep, excluded)

        c = cohort.codes
        dx = c.loc[(c["code_type"] == "diagnosis") & (c["icd_version"] == 9).fillna(False).astype(bool),
                   ["hadm_id", "code"]]
        has_dx = set(dx["hadm_id"].unique().tolist())
        next_ids = nxt["next_hadm_id"]
        no_dx = keep & ~next_ids.isin(has_dx)
        excluded["next admission has no ICD-9 diagnosis code"] = int(no_dx.sum())
        keep &= ~no_dx

        s = adm.loc[keep]
        next_of = next_ids.loc[keep].astype("int64").to_numpy()
        row_of_next = {h: i for i, h in enumerate(next_of.tolist())}
        lab = dx.assign(k=dx["code"].astype(str).map(code_to_label))
        lab = lab.loc[lab["k"].notna() & lab["hadm_id"].isin(row_of_next)]
        labels = np.zeros((len(s), len(names)), dtype=np.int8)
        rows = lab["hadm_id"].map(row_of_next).to_numpy(dtype=np.int64)
        labels[rows, lab["k"].to_numpy(dtype=np.int64)] = 1
        frame = pd.DataFrame({"patient_id": s["patient_id"], "hadm_id": s["hadm_id"], "prediction_time": s["window_end"]})
        return frame, labels, excluded
