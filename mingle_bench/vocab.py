"""The code vocabulary: which codes become hypergraph nodes, fitted on the train split only.

Codes seen at validation/test time but not in the train split are dropped and counted
(:meth:`CodeVocab.encode`), never silently added.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import pandas as pd

from mingle_bench.data.cohort import CODE_TYPES


@dataclass
class CodeVocab:
    """Index <-> ``code_id`` with each code's type and description text.

    Order: by code type (:data:`CODE_TYPES` order), then ``code_id``, so the same train codes
    always give the same indices.
    """

    code_ids: list[str]
    code_types: list[str]
    texts: list[str]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {c: i for i, c in enumerate(self.code_ids)}
        if len(self.index) != len(self.code_ids):
            raise ValueError("vocabulary has duplicate code ids")

    def __len__(self) -> int:
        return len(self.code_ids)

    def __contains__(self, code_id: object) -> bool:
        return code_id in self.index

    @classmethod
    def fit(cls, visits_codes: Iterable[Sequence[str]], code_texts: pd.DataFrame) -> "CodeVocab":
        """Fit on the code lists of the train visits. Texts come from ``code_texts``
        (cohort table); a code without a description uses its raw ``code_id``."""
        seen = {c for codes in visits_codes for c in codes}
        text_of = dict(zip(code_texts["code_id"].astype(str), code_texts["text"].astype(str)))
        type_of = dict(zip(code_texts["code_id"].astype(str), code_texts["code_type"].astype(str)))
        prefix_type = {"dx": "diagnosis", "px": "procedure", "rx": "medication", "svc": "service"}

        def ctype(c: str) -> str:
            if c in type_of:
                return type_of[c]
            head = c.split(":", 1)[0].rstrip("0123456789")
            return prefix_type.get(head, "diagnosis")

        rank = {t: i for i, t in enumerate(CODE_TYPES)}
        ordered = sorted(seen, key=lambda c: (rank.get(ctype(c), len(rank)), c))
        texts = [text_of.get(c, "") or c for c in ordered]
        return cls(code_ids=ordered, code_types=[ctype(c) for c in ordered], texts=texts)

    def encode(self, codes: Sequence[str]) -> tuple[list[int], list[str]]:
        """Vocabulary indices of ``codes`` and the codes dropped as unseen."""
        idx, unseen = [], []
        for c in codes:
            i = self.index.get(c)
            (unseen.append(c) if i is None else idx.append(i))
        return idx, unseen

    def missing_text_count(self) -> int:
        return sum(t == c for t, c in zip(self.texts, self.code_ids))

    def to_json(self) -> dict:
        return {"code_ids": self.code_ids, "code_types": self.code_types, "texts": self.texts, "sha256": self.sha256()}

    @classmethod
    def from_json(cls, obj: dict) -> "CodeVocab":
        return cls(code_ids=list(obj["code_ids"]), code_types=list(obj["code_types"]), texts=list(obj["texts"]))

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps([self.code_ids, self.texts]).encode()).hexdigest()
