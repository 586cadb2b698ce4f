"""The latent sidecar of the synthetic generator and the per-task oracle (``data signal``)."""
from __future__ import annotations

import contextlib
import io
import json

import pandas as pd
import pytest

from mingle_bench.cli import main
from mingle_bench.oracle import SIGNAL_TASKS, load_latents, task_signal
from mingle_bench.data.sources import content_hash, source_files
from mingle_bench.data.synthetic import LATENT_COLUMNS, LATENTS_FILE, generate
from mingle_bench.data.synthetic_vocab import EVENTS


@pytest.fixture(scope="module")
def small_signal(tmp_path_factory):
    """``data signal --data synthetic:small --json``, parsed (its own cache: module-scoped)."""
    cache = tmp_path_factory.mktemp("signal-cache")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["data", "signal", "--data", "synthetic:small", "--json", "--cache-dir", str(cache)])
    assert rc == 0
    return json.loads(buf.getvalue()), cache


def test_signal_json_shape(small_signal):
    report, _ = small_signal
    assert report["source"] == "synthetic:small" and report["split_seed"] == 0
    assert set(report["tasks"]) == set(SIGNAL_TASKS)
    for name, r in report["tasks"].items():
        assert {"samples", "positives", "test_samples", "test_positives", "oracle_auroc"} <= set(r), name
        assert 0 < r["test_samples"] < r["samples"]
        assert 0 <= r["test_positives"] <= r["positives"]
        assert 0.0 <= r["oracle_auroc"] <= 1.0
    ph = report["tasks"]["phenotype"]
    assert 0 < ph["mean_prevalence"] < 1 and 0.0 <= ph["oracle_macro_auroc"] <= 1.0


def test_signal_deterministic_and_mortality_has_signal(small_signal):
    report, cache = small_signal
    again = task_signal("synthetic:small", tasks=("mortality", "phenotype"), cache_dir=cache)
    for t in ("mortality", "phenotype"):
        assert again["tasks"][t] == report["tasks"][t]
    assert report["tasks"]["mortality"]["oracle_auroc"] > 0.65


def test_signal_rejects_non_synthetic_sources(tmp_path, capsys):
    assert main(["data", "signal", "--data", f"mimic3:{tmp_path}"]) == 1
    err = capsys.readouterr().err
    assert "only synthetic sources" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="only synthetic sources"):
        task_signal(f"mimic4:{tmp_path}")


def test_latent_sidecar_matches_admissions_and_is_ignored_by_the_loader(tmp_path):
    generate(tmp_path / "a", patients=30, seed=5)
    generate(tmp_path / "b", patients=30, seed=5)
    assert (tmp_path / "a" / LATENTS_FILE).read_bytes() == (tmp_path / "b" / LATENTS_FILE).read_bytes()
    lat = load_latents(tmp_path / "a")
    assert list(lat.columns) == LATENT_COLUMNS
    adm = pd.read_csv(tmp_path / "a" / "ADMISSIONS.csv", dtype={"DIAGNOSIS": str})
    assert sorted(lat.hadm_id) == sorted(adm.HADM_ID) and lat.hadm_id.is_unique
    merged = adm.merge(lat, left_on="HADM_ID", right_on="hadm_id")
    assert (merged.SUBJECT_ID == merged.subject_id).all()
    labels = merged.event.map(lambda e: EVENTS[e]["label"].upper())
    assert (labels == merged.DIAGNOSIS).all()  # the sidecar's event is the one the admission was written with
    # the MIMIC-III loader reads only the MIMIC tables: the sidecar changes no cohort key
    files = source_files("mimic3", tmp_path / "a")
    assert LATENTS_FILE not in {p.name for p in files.values()}
    before = content_hash(files, tmp_path)
    (tmp_path / "a" / LATENTS_FILE).unlink()
    assert content_hash(source_files("mimic3", tmp_path / "a"), tmp_path) == before


def test_load_latents_names_a_folder_without_sidecar(tmp_path):
    with pytest.raises(FileNotFoundError, match="no latent sidecar"):
        load_latents(tmp_path)
