"""``mingle-bench encoder probe`` on ``synthetic:small`` with the tfidf encoder (seconds; no transformer)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mingle_bench.cli import main
from mingle_bench.probe import cluster_bootstrap, label_probe, with_ci

ARGS = ["encoder", "probe", "--task", "mortality", "--data", "synthetic:small", "--encoder", "tfidf?dim=16",
        "--bootstrap", "50"]


@pytest.fixture(scope="module")
def probe_json(tmp_path_factory):
    """The probe's JSON report (its own cache: module-scoped)."""
    cache = tmp_path_factory.mktemp("probe-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINGLE_CACHE", str(cache))
        out = tmp_path_factory.mktemp("probe-out") / "probe.json"
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = main([*ARGS, "--json", "--cache-dir", str(cache)])
        assert rc == 0
        out.write_text(buf.getvalue())
    return json.loads(out.read_text()), cache


def test_probe_report_shape_and_ranges(probe_json):
    report, _ = probe_json
    assert report["task"] == "mortality" and report["source"] == "synthetic:small"
    assert report["encoder"]["identity"].startswith("tfidf@fit:") and report["encoder"]["dim"] == 16
    assert report["encoder"]["train_texts"] > 0  # fitted, on the train split's texts
    assert report["precision"] == "fp32"  # tfidf has no neural arithmetic
    s = report["splits"]
    assert s["test"]["samples"] > 0 and s["test"]["positives"] > 0 and s["train"]["samples"] > s["test"]["samples"]
    for block in (report["probe"], report["reference_tfidf"]):
        r = block["labels"]["in_hospital_mortality"]
        assert 0.0 <= r["ci"][0] <= r["value"] <= r["ci"][1] <= 1.0 and r["n_valid"] > 40
        assert block["C"] in (0.01, 0.1, 1.0, 10.0)
    # the notes hold the mortality signal (DNR, frailty, lactate): the raw-text reference is above chance
    assert report["reference_tfidf"]["labels"]["in_hospital_mortality"]["value"] > 0.6


def test_probe_reports_the_note_only_latents(probe_json):
    report, _ = probe_json
    lat = report["latents"]
    assert set(lat) == {"dnr", "frailty", "smoking", "hba1c", "poor_hba1c"}
    assert lat["dnr"]["encoder"]["metric"] == "auroc" and lat["frailty"]["encoder"]["metric"] == "r2"
    assert lat["hba1c"]["rows"] == "with_a1c" and lat["hba1c"]["encoder"]["test_n"] < lat["dnr"]["encoder"]["test_n"]
    # DNR is written in the physician note in words: TF-IDF of the raw text decodes it well
    assert lat["dnr"]["reference_tfidf"]["value"] > 0.8


def test_probe_is_deterministic_and_prints_tables(probe_json, capsys):
    report, cache = probe_json
    rc = main([*ARGS, "--no-latents", "--cache-dir", str(cache)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "in_hospital_mortality" in out and "TF-IDF reference" in out and "latent (note-only)" not in out
    v = report["probe"]["labels"]["in_hospital_mortality"]
    assert f"{v['value']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]" in out  # the same numbers again


@pytest.mark.parametrize("argv,culprit", [
    (["--task", "nope", "--encoder", "tfidf"], "--task 'nope'"),
    (["--task", "mortality", "--encoder", "default?pooling=avg"], "pooling='avg'"),
    (["--task", "mortality", "--encoder", "tfidf", "--bootstrap", "0"], "--bootstrap"),
])
def test_probe_bad_arguments_are_one_line(argv, culprit, capsys):
    code = main(["encoder", "probe", *argv])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if "error:" in x]
    assert code != 0 and "Traceback" not in err and len(lines) == 1 and culprit in lines[0], err


def test_cluster_bootstrap_resamples_whole_patients():
    groups = np.array([1, 1, 2, 3, 3, 3])
    boots = cluster_bootstrap(groups, 20, seed=0)
    for b in boots:
        picked = groups[b]
        for g in np.unique(picked):  # a patient comes with all of its rows, k times
            assert (picked == g).sum() % (groups == g).sum() == 0
    assert [b.tolist() for b in boots] == [b.tolist() for b in cluster_bootstrap(groups, 20, seed=0)]
    y, p = np.array([0, 1, 0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7])
    r = with_ci(lambda a, b: float(np.mean(a == (b > 0.5))), y, p, boots)
    assert r["value"] == 1.0 and r["ci"] == [1.0, 1.0]


def test_multilabel_probe_reports_micro_and_macro():
    rng = np.random.default_rng(0)
    n = 300
    x = rng.normal(size=(n, 5))
    y = np.column_stack([(x[:, 0] + rng.normal(scale=0.5, size=n)) > 0, (x[:, 1] > 1.0),
                         np.zeros(n, dtype=bool)]).astype(np.int64)  # the last label never occurs
    split = np.array(["train"] * 200 + ["val"] * 40 + ["test"] * 60, dtype=object)
    boots = cluster_bootstrap(np.arange(60), 30, seed=0)
    r = label_probe(x, y, split, ["a", "b", "never"], boots)
    assert r["labels"]["a"]["value"] > 0.8 and r["labels"]["never"]["value"] is None
    assert r["micro_auroc"]["value"] is not None and r["macro_auroc"]["ci"] is not None
    # macro: the mean over the labels with both classes in the test split
    assert abs(r["macro_auroc"]["value"] - np.mean([r["labels"]["a"]["value"], r["labels"]["b"]["value"]])) < 1e-3
