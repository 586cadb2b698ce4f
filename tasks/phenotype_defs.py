"""The 25 benchmark phenotypes as ICD-9-CM code lists (``phenotypes.json``).

Harutyunyan et al. (2019, "Multitask learning and benchmarking with clinical time series
data") define 25 acute and chronic phenotypes, each a single-level CCS diagnosis category
(AHRQ HCUP Clinical Classifications Software, 2015). ``phenotypes.json`` is this project's
own definition file: for every phenotype, its name (in the benchmark's label order), its CCS
category and the full list of ICD-9-CM diagnosis codes (as released, without the dot) that
the CCS single-level tool assigns to it. :func:`derive_from_ccs` rebuilds those lists from
the official tool, and a test checks that the file equals the tool for every code.
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

import pandas as pd

# (label name, CCS single-level category), in the benchmark's label order.
PHENOTYPE_CCS: tuple[tuple[str, int], ...] = (
    ("Acute and unspecified renal failure", 157),
    ("Acute cerebrovascular disease", 109),
    ("Acute myocardial infarction", 100),
    ("Cardiac dysrhythmias", 106),
    ("Chronic kidney disease", 158),
    ("Chronic obstructive pulmonary disease and bronchiectasis", 127),
    ("Complications of surgical procedures or medical care", 238),
    ("Conduction disorders", 105),
    ("Congestive heart failure; nonhypertensive", 108),
    ("Coronary atherosclerosis and other heart disease", 101),
    ("Diabetes mellitus with complications", 50),
    ("Diabetes mellitus without complication", 49),
    ("Disorders of lipid metabolism", 53),
    ("Essential hypertension", 98),
    ("Fluid and electrolyte disorders", 55),
    ("Gastrointestinal hemorrhage", 153),
    ("Hypertension with complications and secondary hypertension", 99),
    ("Other liver diseases", 151),
    ("Other lower respiratory disease", 133),
    ("Other upper respiratory disease", 134),
    ("Pleurisy; pneumothorax; pulmonary collapse", 130),
    ("Pneumonia (except that caused by tuberculosis or sexually transmitted disease)", 122),
    ("Respiratory failure; insufficiency; arrest (adult)", 131),
    ("Septicemia (except in labor)", 2),
    ("Shock", 249),
)


def read_ccs_single_dx(path: str | Path) -> pd.DataFrame:
    """The CCS single-level diagnosis tool as a frame with ``icd9`` and ``ccs`` (int) columns.

    The tool quotes values with ``'`` and pads them with spaces; both are stripped.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: CCS single-level diagnosis tool not found")
    raw = pd.read_csv(path, dtype=str, quotechar="'", skipinitialspace=False)
    raw.columns = [c.strip("' \"") for c in raw.columns]
    need = {"ICD-9-CM CODE", "CCS CATEGORY"}
    if not need <= set(raw.columns):
        raise ValueError(f"{path}: expected columns {sorted(need)}, found {list(raw.columns)}")
    df = pd.DataFrame({
        "icd9": raw["ICD-9-CM CODE"].astype(str).str.strip("' \""),
        "ccs": raw["CCS CATEGORY"].astype(str).str.strip("' \""),
    })
    df = df.loc[(df["icd9"] != "") & df["ccs"].str.fullmatch(r"\d+")]
    return df.assign(ccs=df["ccs"].astype(int)).reset_index(drop=True)


def derive_from_ccs(path: str | Path) -> dict:
    """Build the definition file's content from the official CCS single-level tool."""
    tool = read_ccs_single_dx(path)
    phenotypes = []
    for name, ccs in PHENOTYPE_CCS:
        codes = sorted(tool.loc[tool["ccs"] == ccs, "icd9"].unique().tolist())
        if not codes:
            raise ValueError(f"{path}: CCS category {ccs} ({name}) has no ICD-9 codes")
        phenotypes.append({"name": name, "ccs": [ccs], "icd9": codes})
    return {
        "description": "25 benchmark phenotypes of Harutyunyan et al. 2019 as ICD-9-CM diagnosis code lists "
                       "(codes without the dot), derived from the AHRQ HCUP CCS single-level diagnosis tool, 2015.",
        "coding": "ICD-9-CM diagnosis",
        "phenotypes": phenotypes,
    }


@lru_cache(maxsize=1)
def load_phenotypes() -> tuple[list[str], dict[str, int]]:
    """The label names (benchmark order) and a map ICD-9 code -> label index."""
    text = resources.files(__package__).joinpath("phenotypes.json").read_text()
    spec = json.loads(text)
    names: list[str] = []
    code_to_label: dict[str, int] = {}
    for i, ph in enumerate(spec["phenotypes"]):
        names.append(ph["name"])
        for code in ph["icd9"]:
            if code in code_to_label:
                raise ValueError(f"phenotypes.json: ICD-9 {code} is listed under two phenotypes")
            code_to_label[code] = i
    if len(names) != 25:
        raise ValueError(f"phenotypes.json: expected 25 phenotypes, found {len(names)}")
    return names, code_to_label
