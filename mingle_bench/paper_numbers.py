"""Published numbers of the MINGLE paper (arXiv 2403.08818) that could be verified, with their source.

The paper's full Table 1 (baselines vs MINGLE on MIMIC-III and CRADLE) could not be retrieved;
only these numbers are known, and nothing else is filled in or guessed:

* MINGLE ACC **80.17** on MIMIC-III (next-visit phenotyping, 25 labels): quoted from the paper
  by a third-party reproduction.
* MINGLE F1 **about 46** on MIMIC-III: the same reproduction, approximate ("about 46"), so it
  is shown as ``≈46``.
* A **+11.83%** relative improvement: the paper's abstract ("improves predictive performance by
  11.83% relatively"); the abstract does not say which metric or which baseline it refers to.

CRADLE (the ``cvd`` task's counterpart) is private; no CRADLE number is known.
Numbers are in % like the tables.
"""
from __future__ import annotations

from dataclasses import dataclass

#: our task -> the paper's dataset for that task
PAPER_DATASET = {"phenotype": "MIMIC-III", "cvd": "CRADLE"}


@dataclass(frozen=True)
class PaperNumber:
    """One published number (in %); ``approximate`` numbers are shown as ``≈`` and rounded (report/paper.py)."""

    dataset: str
    task: str
    model: str
    metric: str
    value: float
    approximate: bool
    source: str


SOURCE_REPRO = "third-party reproduction quoting the paper's Table 1"
SOURCE_ABSTRACT = "paper abstract (arXiv 2403.08818)"

PUBLISHED: tuple[PaperNumber, ...] = (
    PaperNumber("MIMIC-III", "phenotype", "mingle", "acc", 80.17, False, SOURCE_REPRO),
    PaperNumber("MIMIC-III", "phenotype", "mingle", "f1", 46.0, True, SOURCE_REPRO + " (\"about 46\")"),
)

#: relative improvement claimed in the abstract, in %; metric and baseline unspecified there
RELATIVE_IMPROVEMENT_PCT = 11.83
RELATIVE_IMPROVEMENT_SOURCE = SOURCE_ABSTRACT + "; the metric and the baseline are not stated"
