"""``mingle-bench models`` and ``mingle-bench profile-model``."""
from __future__ import annotations

import json

import pytest

from mingle_bench.cli import main


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["models"]}
    assert rows["hypehr"]["fixed"] == {"use_concept": False, "use_notes": False}
    assert rows["mingle"]["training"] == "full-graph" and rows["retain"]["training"] == "minibatch"
    assert rows["logreg"]["training"] == "sklearn" and rows["note-mlp"]["requires"] == ["visit_note_emb"]
    assert rows["mingle"]["defaults"]["hidden"] == 48
    assert rows["mingle"]["family"] == "mingle" and rows["hypehr"]["family"] == "baseline"
    assert rows["logreg"]["family"] == "reference" and rows["mingle"]["display"] == "MINGLE"
    assert rows["hypehr"]["class"] == "Mingle" and rows["hypehr"]["display"] == "HypEHR"


def test_models_table(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "mingle-no-notes" in out and "use_notes=False" in out
    assert "MINGLE w/o note semantics" in out and "reference" in out


def test_profile_model_json(capsys, monkeypatch):
    from mingle_bench.profiling import models as profiling

    monkeypatch.setitem(profiling.SIZES, "small", {"visits": 40, "codes": 16, "draws": 5})
    assert main(["profile-model", "--size", "small", "--json", "--epochs", "1", "--threads", "1"]) == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("fused_epoch_s", "reference_epoch_s", "incidences", "threads"):
        assert key in res
    assert res["threads"] == 1 and res["visits"] == 40 and res["codes"] == 16
    assert res["incidences"] >= 40 + 16          # every visit has a code, every code a self-loop
    assert res["reference_epoch_s"] > 0 and res["reference_impl_ran"] == "reference"
    if res["fused_available"]:
        assert res["fused_epoch_s"] > 0 and res["fused_impl_ran"] == "fused"
    else:
        assert res["fused_epoch_s"] is None and "fused_note" in res


def test_profile_model_bad_arguments(capsys):
    assert main(["profile-model", "--epochs", "0"]) == 1
    assert "--epochs must be >= 1" in capsys.readouterr().err
    assert main(["profile-model", "--model", "retain"]) == 1
    assert "full-graph models only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["profile-model", "--size", "huge"])


def test_profile_model_times_every_full_graph_model_at_its_own_widths(capsys, monkeypatch):
    """HyperGAT declares no ``heads``: it is profiled at its own defaults, not MINGLE's."""
    from mingle_bench.profiling import models as profiling

    monkeypatch.setitem(profiling.SIZES, "small", {"visits": 40, "codes": 16, "draws": 5})
    assert main(["profile-model", "--model", "hypergat", "--size", "small", "--epochs", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("hypergat epoch") and "d=100 L=2" in out and "h=" not in out
    assert profiling.model_hparams("mingle") == {"hidden": 48, "heads": 4, "layers": 2}
