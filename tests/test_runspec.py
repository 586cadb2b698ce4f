"""The run specification (mingle_bench/runspec.py): one declaration of every run/tune/reproduce
option, from which the flags, the fingerprint, the input hash and the study attributes derive.
The committed reference results must keep their fingerprints and input hashes."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mingle_bench import pipeline as P
from mingle_bench import results as R
from mingle_bench import runner, runspec as RS, tuning
from mingle_bench.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "results" / "mortality" / "synthetic-default"

#: the keys (and policies) before the specification existed: changing them changes every hash
OLD_FINGERPRINT_KEYS = {"pipeline", "task", "data", "data_id", "split_seed", "encoder", "max_steps", "eval_every",
                        "patience", "monitor", "notes", "max_notes_per_visit", "max_tokens", "graph_scope",
                        "code_types", "protocol", "tuning_trials", "precision", "split"}
OLD_STUDY_ATTRS = {"pipeline", "task", "model", "data", "data_id", "split_seed", "max_steps", "eval_every", "patience",
                   "monitor", "notes", "encoder", "split_sha256"}


def test_the_committed_fingerprint_is_recomputed_from_its_stored_keys():
    config = json.loads((REFERENCE / "config.json").read_text())
    run_cfg = RS.fingerprint_dict(config)
    assert RS.fingerprint(run_cfg) == config["fingerprint"]
    assert "precision" not in run_cfg and "split" not in run_cfg  # written only when not fp32 / random


def test_the_committed_input_hashes_are_recomputed():
    import torch

    config = json.loads((REFERENCE / "config.json").read_text())
    records = R.load_runs(REFERENCE)
    if not records[0]["config"].get("pipeline") == P.PIPELINE_VERSION or not torch.__version__.startswith("2.13.0"):
        pytest.skip("the reference was written by another pipeline or torch version")
    run_cfg = RS.fingerprint_dict(config)
    for r in records:
        assert runner.input_hash(r["model"], r["seed"], r["config"]["hparams"], run_cfg, config["source_id"],
                                 config["input_digest"]) == r["input_hash"], (r["model"], r["seed"])


def test_key_sets_are_unchanged():
    assert set(RS.FINGERPRINT_KEYS) == OLD_FINGERPRINT_KEYS
    assert runner.FINGERPRINT_KEYS == RS.FINGERPRINT_KEYS
    assert set(RS.STUDY_ATTRS) == OLD_STUDY_ATTRS and tuning.STUDY_ATTRS == RS.STUDY_ATTRS
    # new study attributes are optional: studies written before them still match
    assert {"precision", "split", "graph_scope", "code_types"} <= set(RS.OPTIONAL_STUDY_ATTRS)


def test_conditional_keys_appear_only_when_not_default():
    base = {f.name: f.default for f in RS.FIELDS} | {"pipeline": "x", "data_id": "synthetic-small"}
    assert "precision" not in RS.fingerprint_dict(base)
    assert RS.fingerprint_dict({**base, "precision": "bf16"})["precision"] == "bf16"
    assert RS.fingerprint_dict({**base, "split": "meds"})["split"] == "meds"
    attrs = RS.study_attrs({**base, "model": "logreg"})
    assert "graph_scope" not in attrs and "code_types" not in attrs
    attrs = RS.study_attrs({**base, "model": "logreg", "graph_scope": "samples", "code_types": ("diagnosis",)})
    assert attrs["graph_scope"] == "samples" and attrs["code_types"] == ["diagnosis"]


def test_inputs_and_runconfig_follow_the_spec():
    assert {f.name for f in dataclasses.fields(P.Inputs)} == set(RS.INPUT_FIELDS)
    for f in dataclasses.fields(P.Inputs):
        if f.name != "task":
            assert f.default == RS.get(f.name).default, f.name
    run_fields = {f.name: f for f in dataclasses.fields(runner.RunConfig)}
    for f in RS.fields("run"):
        if f.name in {"json", "quiet", "debug", "meds_config", "epochs"}:
            continue
        assert f.name in run_fields, f.name
    cfg = runner.RunConfig(task="los", graph_scope="samples", code_types=["diagnosis"])
    assert cfg.inputs() == P.Inputs(task="los", graph_scope="samples", code_types=("diagnosis",))


@pytest.mark.parametrize("command", RS.COMMANDS)
def test_every_field_is_a_flag_of_its_commands_in_a_stage_group(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices[command]
    titles = {g.title: {a.dest for a in g._group_actions} for g in sub._action_groups}
    for f in RS.fields(command):
        assert f.dest in titles[RS.GROUPS[f.group]], (command, f.flag)
    assert "examples:" in sub.format_help()


def test_tune_takes_every_option_that_shapes_inputs():
    tune_flags = {f.name for f in RS.fields("tune")}
    assert set(RS.INPUT_FIELDS) <= tune_flags
    assert set(RS.INPUT_FIELDS) - {"task"} <= {f.name for f in RS.fields("reproduce")}


def test_tune_passes_the_new_inputs_through(monkeypatch, tmp_path):
    seen = {}

    def fake_tune(**kw):
        seen.update(kw)
        raise P.RunError("stop here")

    monkeypatch.setattr(tuning, "tune", fake_tune)
    from mingle_bench.cli import main

    rc = main(["tune", "--task", "los", "--model", "logreg", "--graph-scope", "samples", "--code-types",
               "diagnosis,medication", "--out", str(tmp_path), "--quiet"])
    assert rc == 1
    assert seen["graph_scope"] == "samples" and seen["code_types"] == ("diagnosis", "medication")
    assert seen["task"] == "los" and seen["model"] == "logreg"


def test_registry_choices_are_checked_with_one_line(capsys):
    from mingle_bench.cli import main

    assert main(["run", "--task", "mortalty", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "--task mortalty: unknown task" in err and "mortality" in err


def test_run_json_is_one_document_on_stdout(fakes, tmp_path, capsys):
    from mingle_bench.cli import main

    argv = ["run", "--data", "synthetic:small", "--models", "retain,mingle", "--seeds", "2", "--max-steps", "3",
            "--eval-every", "1", "--patience", "2", "--bootstrap", "50", "--reference", "none", "--out",
            str(tmp_path), "--quiet", "--json"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)  # nothing else on stdout: the tables went to stderr
    assert sorted(map(tuple, doc["trained"])) == [("mingle", 0), ("mingle", 1), ("retain", 0), ("retain", 1)]
    assert {r["model"] for r in doc["rows"]} == {"mingle", "retain"} and doc["failed"] == []
    assert Path(doc["folder"]) == tmp_path / "mortality" / "synthetic-small"
    # table --json reads the same folder back
    assert main(["table", doc["folder"], "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert {r["model"] for r in table["rows"]} == {"mingle", "retain"}
    assert table["config"]["fingerprint"] == json.loads((Path(doc["folder"]) / "config.json").read_text())["fingerprint"]


def test_table_json_of_the_committed_reference(capsys):
    from mingle_bench.cli import main

    assert main(["table", str(REFERENCE), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {r["model"] for r in doc["rows"]} >= {"mingle", "logreg"} and doc["comparison"] is not None


def test_tune_and_reproduce_json(monkeypatch, tmp_path, capsys):
    from mingle_bench import reproduce
    from mingle_bench.cli import main

    res = tuning.TuneResult(study_name="s", storage="sqlite:///x.db", best_value=0.5, best_params={"lr": 0.01},
                            hparams={"lr": 0.01, "C": 1.0}, counts={"complete": 3}, path=tmp_path / "s.json",
                            monitor="aupr")
    monkeypatch.setattr(tuning, "tune", lambda **kw: print("chatter") or res)
    assert main(["tune", "--model", "logreg", "--out", str(tmp_path), "--quiet", "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["best_params"] == {"lr": 0.01} and doc["trials"] == {"complete": 3} and "chatter" in err

    rr = reproduce.ReproduceResult(folder=tmp_path / "paper", main_md="# main", task_folders={"cvd": tmp_path})
    monkeypatch.setattr(reproduce, "reproduce", lambda **kw: rr)
    assert main(["reproduce", "--out", str(tmp_path), "--quiet", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["folder"] == str(tmp_path / "paper") and doc["task_folders"] == {"cvd": str(tmp_path)}
