"""Task labels on the real MIMIC-III demo and the phenotype definitions against the CCS tool.

Both read ``../shared/data`` in place (fixtures ``mimic3_demo_dir`` / ``ccs_dir``) and skip when
it is absent.
"""
from __future__ import annotations

import json
from importlib import resources

import pandas as pd
import pytest

from mingle_bench.tasks import get_task
from mingle_bench.tasks.phenotype_defs import PHENOTYPE_CCS, derive_from_ccs, load_phenotypes, read_ccs_single_dx

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def demo_cohort(mimic3_demo_dir, tmp_path_factory):
    from mingle_bench.data.sources import load_source

    return load_source(f"mimic3:{mimic3_demo_dir}", cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


def test_mortality_counts_on_the_mimic3_demo(demo_cohort, mimic3_demo_dir):
    ts = get_task("mortality").build(demo_cohort)
    rep = ts.report
    n_pos = int(ts.labels.sum())
    print(f"\nmortality on the MIMIC-III demo: {rep['admissions']} admissions; excluded {rep['excluded']}; "
          f"{rep['samples']} samples from {rep['patients']} patients; {n_pos} died in hospital, "
          f"{rep['samples'] - n_pos} survived")
    # 129 admissions; 1 admission of a 17-year-old (patient 10127); 14 adult stays end (discharge
    # or in-hospital death) within 48 h of admission; 114 remain, 29 of them in-hospital deaths
    # (the demo has 40 in-hospital deaths; 11 of them are in excluded admissions).
    assert rep["admissions"] == 129
    assert rep["excluded"] == {"no discharge time": 0, "age below 18 (or unknown)": 1, "stay ended within 48 h": 14}
    assert rep["samples"] == 114 and rep["patients"] == 86
    assert n_pos == 29 and rep["samples"] - n_pos == 85

    # the same numbers, derived independently from the raw CSV files
    adm = pd.read_csv(mimic3_demo_dir / "ADMISSIONS.csv", parse_dates=["admittime", "dischtime", "deathtime"])
    pat = pd.read_csv(mimic3_demo_dir / "PATIENTS.csv", parse_dates=["dob"])
    adm.columns, pat.columns = adm.columns.str.lower(), pat.columns.str.lower()
    adm = adm.merge(pat[["subject_id", "dob"]], on="subject_id")
    adult = (adm["admittime"] - adm["dob"]).dt.days / 365.25 >= 18
    end = adm[["dischtime", "deathtime"]].min(axis=1)
    keep = adult & (end > adm["admittime"] + pd.Timedelta(hours=48))
    assert int((~adult).sum()) == 1 and int(keep.sum()) == rep["samples"]
    assert int(adm.loc[keep, "hospital_expire_flag"].sum()) == n_pos
    assert int(adm["hospital_expire_flag"].sum()) == 40
    assert sorted(ts.samples["hadm_id"]) == sorted(adm.loc[keep, "hadm_id"])


def test_other_task_counts_on_the_mimic3_demo(demo_cohort):
    counts = {}
    for name in ("los", "readmission", "phenotype", "cvd"):
        ts = get_task(name).build(demo_cohort)
        counts[name] = (ts.report["samples"], int(ts.labels.sum()))
        print(f"{name}: {ts.report['samples']} samples, {int(ts.labels.sum())} positive label cells, "
              f"excluded {ts.report['excluded']}")
    # los shares mortality's cohort (114); 59 of those stays exceed 7 days
    assert counts["los"] == (114, 59)
    # readmission: 129 - 40 in-hospital deaths = 89 index stays
    assert counts["readmission"][0] == 89
    # phenotype: 14 patients with >= 2 admissions contribute 129 - 100 = 29 (t, t+1) pairs
    assert counts["phenotype"][0] == 29


def test_phenotype_file_equals_the_ccs_tool(ccs_dir):
    tool = read_ccs_single_dx(ccs_dir / "ccs_single_dx_tool_2015.csv")
    names, code_to_label = load_phenotypes()
    spec = json.loads(resources.files("mingle_bench.tasks").joinpath("phenotypes.json").read_text())
    assert [p["name"] for p in spec["phenotypes"]] == [n for n, _ in PHENOTYPE_CCS] == names
    ccs_of_label = {i: ccs for i, (_, ccs) in enumerate(PHENOTYPE_CCS)}
    wanted = tool.loc[tool["ccs"].isin(ccs_of_label.values())]
    # every ICD-9 code in those categories maps to its phenotype ...
    for code, ccs in zip(wanted["icd9"], wanted["ccs"]):
        assert code in code_to_label, f"ICD-9 {code} (CCS {ccs}) missing from phenotypes.json"
        assert ccs_of_label[code_to_label[code]] == ccs, f"ICD-9 {code}: CCS {ccs} but phenotype {names[code_to_label[code]]}"
    # ... and the file holds nothing else
    assert set(code_to_label) == set(wanted["icd9"])
    assert len(code_to_label) == len(wanted) == 767
    assert derive_from_ccs(ccs_dir / "ccs_single_dx_tool_2015.csv") == spec


def test_ccs_reader_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="CCS single-level"):
        read_ccs_single_dx(tmp_path / "nope.csv")
