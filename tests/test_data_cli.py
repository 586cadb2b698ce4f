"""``mingle-bench data synth`` and ``mingle-bench data info``."""
from __future__ import annotations

import hashlib
import json

import pytest

from mingle_bench.cli import main

INFO_KEYS = {"patients", "admissions", "in_hospital_deaths", "diagnoses", "procedures", "prescriptions", "notes",
             "distinct_codes", "skipped"}


def test_synth_writes_a_readable_folder(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["data", "synth", "--out", str(out), "--patients", "15", "--seed", "2"]) == 0
    assert "ADMISSIONS" in capsys.readouterr().out
    digest = hashlib.sha256((out / "NOTEEVENTS.csv").read_bytes()).hexdigest()
    assert main(["data", "synth", "--out", str(out), "--patients", "15", "--seed", "2"]) == 0
    assert hashlib.sha256((out / "NOTEEVENTS.csv").read_bytes()).hexdigest() == digest
    capsys.readouterr()
    assert main(["data", "info", "--data", f"mimic3:{out}", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert INFO_KEYS <= set(info)
    assert info["patients"] == 15
    assert set(info["distinct_codes"]) == {"diagnosis", "procedure", "medication", "service"}
    assert all(isinstance(v, int) for v in info["skipped"].values())


def test_synth_rejects_bad_arguments(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--patients", "0"]) == 1
    assert "--patients" in capsys.readouterr().err


@pytest.mark.shared_data
def test_info_demo_json(mimic3_demo_dir, capsys):
    assert main(["data", "info", "--data", f"mimic3:{mimic3_demo_dir}", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["patients"], info["admissions"], info["in_hospital_deaths"], info["diagnoses"]) == (100, 129, 40, 1761)
    assert info["distinct_codes"]["diagnosis"] == 581
    assert info["notes"] == 0


@pytest.mark.shared_data
def test_info_table_output(mimic3_demo_dir, capsys):
    assert main(["data", "info", "--data", f"mimic3:{mimic3_demo_dir}"]) == 0
    out = capsys.readouterr().out
    assert "Load report" in out and "in_hospital_deaths" in out and "skipped (reason)" in out
