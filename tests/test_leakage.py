"""Leakage canaries: notes charted after the prediction time and discharge summaries carry unique
tokens, checked on the `task show` output and on the texts the encoder is fed while building TaskData;
nothing of visit t+1 reaches phenotype sample t. Late notes never reach any input. Discharge summaries
never reach the admit + 48 h tasks, nor any task under ``notes="in-stay"``; under the default note
policy the discharge-time tasks take each admission's own summary (which admission's summary reaches
which input is checked note by note in test_note_policy.py)."""
from __future__ import annotations

import json

import pytest

from factories import (AFTER_48H_TOKEN, DAY2_TOKEN, DISCHARGE_TOKEN, EARLY_TOKEN, LATE_TOKEN, RecordingEncoder,
                       make_cohort)
from mingle_bench.cli import main
from mingle_bench.features import build_task_data

TASKS = ("cvd", "los", "mortality", "phenotype", "readmission")
EARLY_TASKS = ("los", "mortality")
NEVER = (LATE_TOKEN, DISCHARGE_TOKEN)
NEVER_EARLY = NEVER + (AFTER_48H_TOKEN, DAY2_TOKEN)
NOTE_POLICIES = ("default", "in-stay")
SMALL_DW = dict(deepwalk_dim=4, deepwalk_walks_per_node=1, deepwalk_walk_length=5)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("canary"), n_patients=30, seed=3)


def _forbidden(task: str, notes: str = "default") -> tuple[str, ...]:
    if task in EARLY_TASKS:
        return NEVER_EARLY
    return NEVER if notes == "in-stay" else (LATE_TOKEN,)  # default: own discharge summaries are inputs


def _task_show(monkeypatch, capsys, cohort, task: str) -> list[dict]:
    import mingle_bench.data.sources as sources

    monkeypatch.setattr(sources, "load_source", lambda spec, cache_dir=None, progress=True: cohort)
    assert main(["task", "show", "--task", task, "--data", "factory", "--jsonl"]) == 0
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("task", TASKS)
def test_task_show_never_prints_a_canary(monkeypatch, capsys, cohort, task):
    rows = _task_show(monkeypatch, capsys, cohort, task)
    assert rows, "no samples"
    blob = json.dumps(rows)
    for token in _forbidden(task):
        assert token not in blob, f"{token} leaked into `task show --task {task}`"
    assert EARLY_TOKEN in blob  # positive control: legitimate early notes are shown
    if task in EARLY_TASKS:
        assert all("rx:late_drug" not in r["codes"] for r in rows)
        for r in rows:  # every prediction time is admit + 48 h
            adm = cohort.admissions.set_index("hadm_id").loc[r["hadm_id"]]
            assert r["prediction_time"] == (adm["admittime"] + __import__("pandas").Timedelta(hours=48)).isoformat()
    else:
        assert AFTER_48H_TOKEN in blob  # discharge-time tasks do see notes charted during the stay
        assert DISCHARGE_TOKEN in blob  # and, under the default note policy, the discharge summaries


def test_phenotype_sample_t_never_sees_visit_t_plus_1(monkeypatch, capsys, cohort):
    from mingle_bench.tasks.base import ordered_admissions

    rows = _task_show(monkeypatch, capsys, cohort, "phenotype")
    adm = ordered_admissions(cohort)
    nxt = dict(zip(adm["hadm_id"], adm.groupby("patient_id")["hadm_id"].shift(-1)))
    codes_of = cohort.codes.groupby("hadm_id")["code_id"].agg(set).to_dict()
    notes_of = cohort.notes.dropna(subset=["hadm_id"]).groupby("hadm_id")["note_id"].agg(set).to_dict()
    unique_next = 0
    for r in rows:
        h, n = r["hadm_id"], int(nxt[r["hadm_id"]])
        assert set(r["codes"]) <= codes_of[h]
        assert not set(r["note_ids"]) & notes_of.get(n, set())
        assert n not in r["history"]
        own = {c for c in codes_of[n] if c.startswith("dx9:V7")}
        assert own and not own & set(r["codes"]) and not own & set(r["dropped_unseen_codes"])
        unique_next += 1
    assert unique_next == len(rows) > 0


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("scope,notes", [("all", "default"), ("samples", "default"), ("all", "in-stay")])
def test_encoder_and_taskdata_never_see_a_canary(cohort, tmp_path, task, scope, notes):
    from mingle_bench.tasks import get_task

    requested: list[int] = []
    original = cohort.read_note_texts

    class Spy:
        def __getattr__(self, name):
            return getattr(cohort, name)

        def read_note_texts(self, ids):
            requested.extend(int(i) for i in ids)
            return original(ids)

    enc = RecordingEncoder()
    data = build_task_data(Spy(), get_task(task, notes=notes), encoder=enc, graph_scope=scope, cache_dir=tmp_path,
                           progress=False, **SMALL_DW)
    seen = "\n".join(enc.seen_texts)
    for token in _forbidden(task, notes):
        assert token not in seen, f"{token} reached the encoder for {task} ({scope}, notes={notes})"
    assert EARLY_TOKEN in seen
    if task not in EARLY_TASKS and notes == "default":
        assert DISCHARGE_TOKEN in seen
    texts = original(requested)
    assert not any(tok in t for t in texts.values() for tok in _forbidden(task, notes))
    # the TaskData's own inputs: codes of the index visits never include post-window codes
    if task in EARLY_TASKS:
        late = data.vocab.index.get("rx:late_drug")
        assert late is None or late not in data.visit_codes.tolist()
    assert data.visit_note_emb.shape == (data.n_visits, enc.dim)
    assert data.visit_has_notes.any()


def test_canaries_through_the_mimic3_loader(tmp_path, monkeypatch, capsys):
    """Plant canary notes in a MIMIC-III-format NOTEEVENTS.csv and read it through the real loader."""
    import pandas as pd

    from mingle_bench.data.synthetic import generate

    folder = tmp_path / "mimic"
    generate(folder, patients=40, seed=5)
    adm = pd.read_csv(folder / "ADMISSIONS.csv", parse_dates=["ADMITTIME", "DISCHTIME"])
    adm = adm.loc[adm["DISCHTIME"] - adm["ADMITTIME"] > pd.Timedelta(hours=72)].head(25)
    notes = pd.read_csv(folder / "NOTEEVENTS.csv", usecols=["ROW_ID"])
    row_id = int(notes["ROW_ID"].max()) + 1
    lines = []
    for _, a in adm.iterrows():
        admit, disch = a["ADMITTIME"], a["DISCHTIME"]
        planted = [
            ("Nursing/other", admit + pd.Timedelta(hours=6), True, EARLY_TOKEN),
            ("Physician ", admit + pd.Timedelta(hours=60), True, AFTER_48H_TOKEN),
            ("Radiology", admit + pd.Timedelta(days=2), False, DAY2_TOKEN),      # date only
            ("Discharge summary", disch - pd.Timedelta(hours=2), True, DISCHARGE_TOKEN),
            ("Nursing/other", disch + pd.Timedelta(hours=3), True, LATE_TOKEN),
        ]
        for cat, when, timed, token in planted:
            charttime = when.strftime("%Y-%m-%d %H:%M:%S") if timed else ""
            lines.append(f'{row_id},{int(a["SUBJECT_ID"])},{int(a["HADM_ID"])},{when:%Y-%m-%d},{charttime},,'
                         f'"{cat}","canary",,,"planted {token} text"\n')
            row_id += 1
    text = (folder / "NOTEEVENTS.csv").read_text()
    (folder / "NOTEEVENTS.csv").write_text(text if text.endswith("\n") else text + "\n")
    with open(folder / "NOTEEVENTS.csv", "a") as fh:
        fh.writelines(lines)
    from mingle_bench.data.sources import load_source

    cohort = load_source(f"mimic3:{folder}", cache_dir=tmp_path / "cache", progress=False)
    assert int(cohort.notes["description"].eq("canary").sum()) == 5 * len(adm)
    for task in TASKS:
        blob = json.dumps(_task_show(monkeypatch, capsys, cohort, task))
        for token in _forbidden(task):
            assert token not in blob, f"{token} leaked into {task} through the MIMIC-III loader"
        assert EARLY_TOKEN in blob
        from mingle_bench.tasks import get_task

        ts = get_task(task, notes="in-stay").build(cohort)
        texts = cohort.read_note_texts([n for ids in ts.input_note_ids.values() for n in ids])
        assert not any(tok in t for t in texts.values() for tok in _forbidden(task, "in-stay"))
