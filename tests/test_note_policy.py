"""The note policy (``notes="default"`` / ``"in-stay"``): the discharge-time tasks take each admission's
own discharge summary by default, never another admission's; ``in-stay`` and the admit + 48 h tasks
never take one. Canaries are note ids planted in hand-built and random cohorts."""
from __future__ import annotations

import pytest

from factories import DISCHARGE_TOKEN, discharge_note_cohort, make_cohort
from mingle_bench.tasks import get_task
from mingle_bench.tasks.base import NOTE_POLICIES, is_discharge_note
from mingle_bench.tasks.cvd import CVDTask

DISCHARGE_TASKS = ("cvd", "phenotype", "readmission")
EARLY_TASKS = ("los", "mortality")
OWN_DS = {"P1": ["ds_p1_timed", "ds_p1_nextday", "ds_p1_late", "ds_p1_mimic"],
          "P2": ["ds_p2", "ds_p2_mimic"], "P3": ["ds_p3"]}


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    return discharge_note_cohort(tmp_path_factory.mktemp("dsnotes"))


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("dscanary"), n_patients=30, seed=3)


def _discharge_ids_by_admission(cohort) -> dict[int, set[int]]:
    n = cohort.notes.loc[is_discharge_note(cohort.notes["category"]) & cohort.notes["hadm_id"].notna()]
    return n.groupby(n["hadm_id"].astype("int64"))["note_id"].agg(set).to_dict()


def _all_discharge_ids(cohort) -> set[int]:
    return set(cohort.notes.loc[is_discharge_note(cohort.notes["category"]), "note_id"].tolist())


@pytest.mark.parametrize("task", DISCHARGE_TASKS)
def test_default_takes_the_index_admissions_own_discharge_summaries(hand, task):
    cohort, ids = hand
    ts = get_task(task).build(cohort)
    assert ts.samples["hadm_id"].tolist() == ([ids["P1"], ids["P2"]] if task == "phenotype"
                                              else [ids["P1"], ids["P2"], ids["P3"]])
    for adm, own in OWN_DS.items():
        # every own discharge summary (timed before or after discharge, dated the discharge day or
        # the day after, misdated) counts at the discharge: after the in-stay note, in note-id order
        assert ts.input_note_ids[ids[adm]] == [ids[f"n_{adm.lower()}"]] + [ids[k] for k in own]
    assert ids["n_p1_after"] not in ts.input_note_ids[ids["P1"]]  # only discharge summaries move
    assert ts.input_note_ids[ids["Q1"]] == []  # no discharge time: no note, its summary included
    inputs = ts.report["inputs"]
    assert inputs["notes_discharge_summary"] == 0
    assert inputs["notes_discharge_summary_input"] == 7
    assert inputs["notes_after_window"] == 2  # n_p1_after and Q1's summary
    assert ts.report["notes_policy"] == "default"


@pytest.mark.parametrize("task", DISCHARGE_TASKS)
def test_default_never_takes_another_admissions_discharge_summary(hand, task):
    cohort, ids = hand
    ts = get_task(task).build(cohort)
    others = {adm: {ids[k] for a, ks in OWN_DS.items() if a != adm for k in ks} for adm in OWN_DS}
    for adm in OWN_DS:  # every hyperedge, sample or not
        assert not set(ts.input_note_ids[ids[adm]]) & others[adm], adm
    # P2's summary is charted inside P1's stay, yet it belongs to P2: never an input of sample P1
    assert ids["ds_p2"] not in ts.input_note_ids[ids["P1"]]
    # the history of a sample holds only earlier admissions, whose summaries were written by then
    hist = dict(zip(ts.samples["hadm_id"], ts.history))
    assert hist[ids["P1"]] == [ids["P1"]]


@pytest.mark.parametrize("task", DISCHARGE_TASKS + EARLY_TASKS)
def test_in_stay_takes_no_discharge_summary(hand, task):
    cohort, ids = hand
    ts = get_task(task, notes="in-stay").build(cohort)
    assert ts.report["notes_policy"] == "in-stay"
    ds = _all_discharge_ids(cohort)
    assert all(not set(v) & ds for v in ts.input_note_ids.values())
    assert ts.report["inputs"]["notes_discharge_summary"] == len(ds) == 8
    assert ts.report["inputs"]["notes_discharge_summary_input"] == 0
    assert ts.input_note_ids[ids["P1"]] == [ids["n_p1"]]


@pytest.mark.parametrize("notes", NOTE_POLICIES)
@pytest.mark.parametrize("task", EARLY_TASKS)
def test_admit_48h_tasks_take_no_discharge_summary_under_either_policy(hand, canary, task, notes):
    for cohort in (hand[0], canary):
        ts = get_task(task, notes=notes).build(cohort)
        assert len(ts) > 0
        ds = _all_discharge_ids(cohort)
        assert all(not set(v) & ds for v in ts.input_note_ids.values())
        assert ts.report["inputs"]["notes_discharge_summary_input"] == 0
        assert ts.report["inputs"]["notes_discharge_summary"] == len(ds)


@pytest.mark.parametrize("task", DISCHARGE_TASKS)
def test_random_cohort_every_admission_sees_exactly_its_own_discharge_summary(canary, task):
    """make_cohort plants one DISCHARGE_TOKEN summary per admission, charted 1 h before discharge."""
    ts = get_task(task).build(canary)
    own = _discharge_ids_by_admission(canary)
    all_ds = _all_discharge_ids(canary)
    assert len(ts) > 0
    for h, notes in ts.input_note_ids.items():
        assert set(notes) & all_ds == own.get(h, set()), h
    texts = canary.read_note_texts([n for h in ts.samples["hadm_id"] for n in ts.input_note_ids[int(h)]])
    assert any(DISCHARGE_TOKEN in t for t in texts.values())
    if task == "phenotype":  # visit t+1's summary is never an input of sample t
        adm = canary.admissions.sort_values(["patient_id", "admittime", "hadm_id"])
        nxt = dict(zip(adm["hadm_id"], adm.groupby("patient_id")["hadm_id"].shift(-1)))
        for h in ts.samples["hadm_id"].tolist():
            assert not set(ts.input_note_ids[h]) & own[int(nxt[h])]


def test_unknown_note_policy_errors_clearly():
    for name in DISCHARGE_TASKS + EARLY_TASKS:
        with pytest.raises(ValueError, match=r"notes must be one of 'default', 'in-stay', got 'discharge'"):
            get_task(name, notes="discharge")
    with pytest.raises(ValueError, match="notes must be one of"):
        CVDTask(notes="")


def test_policy_is_stored_and_shown():
    for name in DISCHARGE_TASKS + EARLY_TASKS:
        assert get_task(name).notes == "default"
        t = get_task(name, notes="in-stay")
        assert t.notes == "in-stay" and "notes='in-stay'" in repr(t)
        assert t.allows_discharge_summary() is False
        assert get_task(name).allows_discharge_summary() is (name in DISCHARGE_TASKS)
    assert get_task("readmission", code_types=["diagnosis"], notes="in-stay").code_types == ("diagnosis",)
