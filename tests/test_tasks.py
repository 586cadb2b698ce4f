"""Task definitions on a hand-built cohort whose labels and inputs are worked out by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factories import CohortBuilder, tiny_cohort
from mingle_bench.tasks import Task, TaskSamples, get_task, list_tasks
from mingle_bench.tasks.phenotype_defs import load_phenotypes

TASKS = ("cvd", "los", "mortality", "phenotype", "readmission")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_cohort(tmp_path_factory.mktemp("tiny"))


def _by_hadm(ts: TaskSamples) -> dict[int, list[int]]:
    return {int(h): ts.labels[i].tolist() for i, h in enumerate(ts.samples["hadm_id"])}


def test_registry_lists_every_task_and_rejects_unknown():
    assert set(TASKS) <= set(list_tasks())
    for name in TASKS:
        task = get_task(name)
        assert isinstance(task, Task) and task.name == name
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        get_task("nope")
    with pytest.raises(ValueError, match="code_types"):
        get_task("mortality", code_types=["labs"])


@pytest.mark.parametrize("name", TASKS)
def test_docstring_states_the_definition(name):
    doc = type(get_task(name)).__doc__.lower()
    for part in ("label", "cohort", "prediction", "inputs", "leakage", "follows"):
        assert part in doc, f"{name} docstring lacks {part!r}"


@pytest.mark.parametrize("name", TASKS)
def test_samples_contract(tiny, name):
    cohort, _ = tiny
    ts = get_task(name).build(cohort)
    assert list(ts.samples.columns) == ["sample_id", "patient_id", "hadm_id", "prediction_time"]
    assert ts.labels.dtype == np.int8 and ts.labels.shape == (len(ts.samples), len(ts.label_names))
    assert str(ts.samples["prediction_time"].dtype) == "datetime64[ns]"
    assert ts.samples["sample_id"].is_unique
    assert len(ts.history) == len(ts.samples)
    for hist, h in zip(ts.history, ts.samples["hadm_id"]):
        assert hist[-1] == h
    assert set(ts.input_codes) == set(cohort.admissions["hadm_id"].tolist())
    # the index admission's window never ends after the prediction time
    for h, pt in zip(ts.samples["hadm_id"], ts.samples["prediction_time"]):
        assert ts.window_end[int(h)] <= pt


def test_mortality_labels_exclusions_and_inputs(tiny):
    cohort, ids = tiny
    ts = get_task("mortality").build(cohort)
    assert _by_hadm(ts) == {ids["A1"]: [0], ids["A3"]: [0], ids["C1"]: [1], ids["D_lo"]: [0]}
    assert ts.report["excluded"] == {"no discharge time": 0, "age below 18 (or unknown)": 1, "stay ended within 48 h": 3}
    a1 = ids["A1"]
    assert ts.samples.set_index("hadm_id").loc[a1, "prediction_time"] == pd.Timestamp("2100-01-03 10:00")
    # time-stamped codes only up to admit + 48 h (date-only times count at the end of the day)
    assert ts.input_codes[a1] == ["dx9:4019", "dx9:25000", "px9:3893", "rx:heparin", "svc:MED"]
    # notes: charted at/before admit + 48 h; a date-only note counts at the end of its day
    assert ts.input_note_ids[a1] == [ids["n_early"], ids["n_day2_date"], ids["n_exact_48h"]]
    assert ts.report["inputs"]["notes_unlinked"] == 1
    assert ts.report["inputs"]["notes_discharge_summary"] == 1


def test_mortality_code_types_and_min_age_are_configurable(tiny):
    cohort, ids = tiny
    ts = get_task("mortality", code_types=["medication", "service"]).build(cohort)
    assert ts.input_codes[ids["A1"]] == ["rx:heparin", "svc:MED"]
    ts = get_task("mortality", min_age=None).build(cohort)
    assert ids["B1"] in ts.samples["hadm_id"].tolist()


def test_los_labels(tiny):
    cohort, ids = tiny
    ts = get_task("los").build(cohort)
    assert _by_hadm(ts) == {ids["A1"]: [1], ids["A3"]: [0], ids["C1"]: [0], ids["D_lo"]: [0]}
    assert ts.input_codes == get_task("mortality").build(cohort).input_codes


def test_readmission_labels_gap_planned_and_deaths(tiny):
    cohort, ids = tiny
    ts = get_task("readmission").build(cohort)
    # A1 -> A2 after 15 days (emergency): 1; A2 -> A3 elective: planned, 0; C1/E1 died: excluded;
    # D_lo's later admission D_hi starts before D_lo's discharge (overlap): not a readmission.
    assert _by_hadm(ts) == {ids["A1"]: [1], ids["A2"]: [0], ids["A3"]: [0], ids["B1"]: [0],
                            ids["D_lo"]: [0], ids["D_hi"]: [0]}
    assert ts.report["excluded"]["in-hospital death"] == 2
    assert ts.report["label_info"] == {"later admissions overlapping the index stay (ignored)": 1,
                                       "planned readmissions within the window (not counted)": 1}
    a1 = ids["A1"]
    assert ts.input_codes[a1] == ["dx9:4019", "dx9:25000", "px9:3893", "rx:heparin", "rx:day3_drug",
                                  "rx:late_drug", "svc:MED"]
    in_stay = [ids["n_early"], ids["n_day2_date"], ids["n_exact_48h"], ids["n_day3_date"], ids["n_day5"]]
    # default note policy: the admission's own discharge summary too, counted at discharge
    assert ts.input_note_ids[a1] == in_stay + [ids["n_discharge"]]
    assert get_task("readmission", notes="in-stay").build(cohort).input_note_ids[a1] == in_stay
    # D_hi's history guard: D_lo started at the same time but ends after D_hi's prediction time
    hist = dict(zip(ts.samples["hadm_id"], ts.history))
    assert hist[ids["D_hi"]] == [ids["D_hi"]]
    assert ts.report["inputs"]["history_admissions_overlapping_prediction_time"] == 1
    # the gap is measured from discharge: A1's 15-day gap is outside a 14-day window
    assert get_task("readmission", days=14).build(cohort).labels[0, 0] == 0


def test_phenotype_next_visit_labels(tiny):
    cohort, ids = tiny
    names, _ = load_phenotypes()
    ts = get_task("phenotype").build(cohort)
    got = {h: {names[k] for k, v in enumerate(row) if v} for h, row in _by_hadm(ts).items()}
    assert got == {
        ids["A1"]: {"Congestive heart failure; nonhypertensive", "Acute and unspecified renal failure",
                    "Diabetes mellitus without complication"},
        ids["A2"]: {"Coronary atherosclerosis and other heart disease"},
        ids["D_lo"]: {"Shock"},  # equal admittime: D_lo (smaller hadm_id) comes first
    }
    assert ts.report["excluded"]["no next admission (last or only visit)"] == 5
    assert len(ts.label_names) == 25
    # inputs of visit t are visit t's own codes only
    a1_codes = set(cohort.codes.loc[cohort.codes["hadm_id"] == ids["A1"], "code_id"])
    assert set(ts.input_codes[ids["A1"]]) <= a1_codes


def test_cvd_t2d_cohort_and_one_year_events(tiny):
    cohort, ids = tiny
    ts = get_task("cvd").build(cohort)
    assert _by_hadm(ts) == {ids["A1"]: [1], ids["A2"]: [1]}
    assert ts.report["excluded"]["in-hospital death"] == 1
    assert ts.report["excluded"]["no type 2 diabetes code at the admission"] == 5
    # a 10-day horizon finds no event (the next admission is 15 days later)
    assert get_task("cvd", days=10).build(cohort).labels.sum() == 0


def test_cvd_code_sets():
    from mingle_bench.tasks.base import match_codes
    from mingle_bench.tasks.cvd import CVD_ICD9, T2D_ICD9

    cvd = "|".join(f"(?:{p})" for p in CVD_ICD9.values())
    hits = match_codes(pd.Series(["41401", "4280", "40201", "40200", "43491", "43490", "436", "4359", "4100", "4019"]), cvd)
    assert hits.tolist() == [True, True, True, False, True, False, True, False, True, False]
    t2d = match_codes(pd.Series(["25000", "25002", "25001", "25003", "25040", "2500"]), T2D_ICD9)
    assert t2d.tolist() == [True, True, False, False, True, False]


def test_visit_order_is_stable_on_equal_timestamps(tmp_path):
    b = CohortBuilder()
    p = b.patient(dob="2040-01-01")
    for hadm in (9, 3, 7):  # inserted out of order, same admittime
        h = b.admission(p, "2100-01-01 10:00", "2100-01-05 10:00", hadm_id=hadm)
        b.code(h, "diagnosis", "4019", seq_num=1)
    cohort = b.build(tmp_path)
    from mingle_bench.tasks.base import ordered_admissions

    assert ordered_admissions(cohort)["hadm_id"].tolist() == [3, 7, 9]
    shuffled = cohort.admissions.sample(frac=1.0, random_state=1)
    cohort.admissions = shuffled
    assert ordered_admissions(cohort)["hadm_id"].tolist() == [3, 7, 9]


def test_labels_must_be_binary(tmp_path):
    b = CohortBuilder()
    p = b.patient(dob="2040-01-01")
    b.admission(p, "2100-01-01", "2100-01-05", death="2100-01-05", hadm_id=5)
    cohort = b.build(tmp_path)
    assert get_task("mortality").build(cohort).labels.tolist() == [[1]]
    cohort.admissions["hospital_expire_flag"] = np.array([2], dtype=np.int8)
    with pytest.raises(ValueError, match="labels must be 0/1"):
        get_task("mortality").build(cohort)


def test_duplicate_admission_ids_are_rejected(tmp_path):
    b = CohortBuilder()
    p = b.patient()
    b.admission(p, "2100-01-01", "2100-01-05", hadm_id=5)
    b.admission(p, "2100-02-01", "2100-02-05", hadm_id=6)
    cohort = b.build(tmp_path)
    cohort.admissions.loc[1, "hadm_id"] = 5
    with pytest.raises(ValueError, match="hadm_id 5 more than once"):
        get_task("mortality").build(cohort)


def test_empty_cohort_gives_no_samples(tmp_path):
    cohort = CohortBuilder().build(tmp_path)
    for name in TASKS:
        ts = get_task(name).build(cohort)
        assert len(ts) == 0 and ts.labels.shape == (0, len(ts.label_names))


def test_admission_without_discharge_time_shows_no_timed_inputs(tmp_path):
    b = CohortBuilder()
    p = b.patient(dob="2040-01-01")
    h1 = b.admission(p, "2100-01-01 10:00", "2100-01-05 10:00", hadm_id=1)
    h2 = b.admission(p, "2100-02-01 10:00", None, hadm_id=2)
    for h in (h1, h2):
        b.code(h, "diagnosis", "4019", seq_num=1)
        b.code(h, "medication", "heparin", time="2100-02-02 10:00")
    nid = b.note(h2, "note", charttime="2100-02-01 12:00")
    cohort = b.build(tmp_path)
    ts = get_task("readmission").build(cohort)
    assert ts.samples["hadm_id"].tolist() == [1]
    assert ts.input_codes[2] == ["dx9:4019"] and ts.input_note_ids[2] == []
    assert ts.report["excluded"]["no discharge time"] == 1
    early = get_task("mortality").build(cohort)
    assert nid in early.input_note_ids[2]  # admit + 48 h still bounds an open stay


def test_inputs_linked_to_another_patients_admission_are_dropped(tmp_path):
    b = CohortBuilder()
    p, q = b.patient(dob="2040-01-01"), b.patient(dob="2040-01-01")
    h = b.admission(p, "2100-01-01 10:00", "2100-01-05 10:00", hadm_id=1)
    b.admission(q, "2100-01-01 10:00", "2100-01-05 10:00", hadm_id=2)
    b.code(h, "diagnosis", "4019", seq_num=1)
    own = b.note(h, "own note", charttime="2100-01-01 12:00")
    b.note(h, "someone else's note", charttime="2100-01-01 12:00", patient_id=q)
    cohort = b.build(tmp_path)
    cohort.codes = pd.concat([cohort.codes, cohort.codes.assign(patient_id=q, code_id="dx9:4280", code="4280")],
                             ignore_index=True)
    ts = get_task("readmission").build(cohort)
    assert ts.input_note_ids[1] == [own] and ts.input_codes[1] == ["dx9:4019"]
    assert ts.report["inputs"]["notes_patient_mismatch"] == 1
    assert ts.report["inputs"]["code_events_patient_mismatch"] == 1


def test_task_cli_list_show_and_errors(tiny, monkeypatch, capsys):
    import json

    import mingle_bench.data.sources as sources
    from mingle_bench.cli import main

    cohort, ids = tiny
    monkeypatch.setattr(sources, "load_source", lambda spec, cache_dir=None, progress=True: cohort)
    assert main(["task", "list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in TASKS)

    assert main(["task", "show", "--task", "readmission", "--data", "x", "--limit", "2"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 2 and "in-hospital death" in err
    assert rows[0]["hadm_id"] == ids["A1"] and rows[0]["labels"] == {"readmission_30d": 1}
    assert rows[0]["note_texts"][0] == "early note" and rows[0]["history"] == [ids["A1"]]
    assert set(rows[0]) == {"sample_id", "patient_id", "hadm_id", "split", "prediction_time", "labels", "codes",
                            "dropped_unseen_codes", "note_ids", "note_texts", "history"}

    assert main(["task", "show", "--task", "nope", "--data", "x"]) == 1
    assert "--task 'nope': unknown task" in capsys.readouterr().err
    assert main(["task", "show", "--task", "los", "--data", "x", "--code-types", "labs"]) == 1
    assert "--code-types 'labs'" in capsys.readouterr().err
