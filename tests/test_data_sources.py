"""Source specs and the content-keyed cohort cache."""
from __future__ import annotations

import pandas as pd
import pytest

from mingle_bench.data.sources import data_id, load_source, parse_spec
from mingle_bench.data.synthetic import generate
from mingle_bench.io import cache_root


def test_parse_spec():
    assert parse_spec("synthetic") == ("synthetic", "default", 0)
    assert parse_spec("synthetic:small") == ("synthetic", "small", 0)
    assert parse_spec("synthetic:mimic:3") == ("synthetic", "mimic", 3)
    assert parse_spec("mimic3:/a/b") == ("mimic3", "/a/b", 0)
    for bad, msg in [("", "empty"), ("mimic3", "needs a folder"), ("foo:x", "unknown source kind"),
                     ("synthetic:small:x", "not an integer")]:
        with pytest.raises(ValueError, match=msg):
            parse_spec(bad)


def test_cache_root_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MINGLE_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert cache_root(tmp_path / "x") == tmp_path / "x"


def test_cache_keyed_by_content(tmp_path):
    src = tmp_path / "src"
    generate(src, patients=6, seed=11)
    cache = tmp_path / "cache"
    spec = f"mimic3:{src}"
    a = load_source(spec, cache_dir=cache, progress=False)
    id_a = data_id(spec, cache_dir=cache)
    assert id_a == "mimic3-" + a.source_id[:8]
    # unchanged files: the same folder is reused, and no temporary folder is left behind
    b = load_source(spec, cache_dir=cache, progress=False)
    assert b.source_id == a.source_id
    assert len(list((cache / "cohorts").iterdir())) == 1
    # an edited file gives a new key and is re-parsed
    adm = pd.read_csv(src / "ADMISSIONS.csv", dtype=str, keep_default_na=False)
    adm.loc[0, "ADMISSION_TYPE"] = "URGENT"
    adm.to_csv(src / "ADMISSIONS.csv", index=False)
    c = load_source(spec, cache_dir=cache, progress=False)
    assert c.source_id != a.source_id and data_id(spec, cache_dir=cache) != id_a
    assert len(list((cache / "cohorts").iterdir())) == 2
    assert "URGENT" in set(c.admissions.admission_type)


def test_progress_prints_the_report(tmp_path, capsys):
    src = tmp_path / "src"
    generate(src, patients=4, seed=2)
    load_source(f"mimic3:{src}", cache_dir=tmp_path / "cache", progress=True)
    err = capsys.readouterr().err
    assert "Load report" in err and "cohort table" in err
    load_source(f"mimic3:{src}", cache_dir=tmp_path / "cache", progress=True)
    assert "loaded from cache" in capsys.readouterr().err


def test_a_load_sweeps_staging_folders_of_killed_loads(tmp_path):
    """A killed load leaves a hidden staging folder under cohorts/; the next load removes it once
    nothing has written to it for 30 minutes, and keeps a young one (a load running now)."""
    import os
    import time

    src = tmp_path / "src"
    generate(src, patients=30, seed=1)
    cache = tmp_path / "cache"
    old = cache / "cohorts" / ".mimic3-dead.abc123"
    young = cache / "cohorts" / ".mimic3-live.def456"
    for d in (old, young):
        (d / "part").mkdir(parents=True)
        (d / "part" / "admissions.parquet").write_bytes(b"x" * 1000)
    stale = time.time() - 31 * 60
    for p in (old / "part" / "admissions.parquet", old / "part", old):
        os.utime(p, (stale, stale))
    with pytest.warns(UserWarning, match="removed 1 staging folder"):
        load_source(f"mimic3:{src}", cache_dir=cache, progress=False)
    assert not old.exists() and young.exists()


def test_duckdb_memory_limit_default_is_bounded(monkeypatch):
    from mingle_bench.data import csvio

    monkeypatch.setattr(csvio, "_physical_memory", lambda: 64 * 2**30)
    assert csvio.default_memory_limit() == "8192MB"
    monkeypatch.setattr(csvio, "_physical_memory", lambda: 1 * 2**30)
    assert csvio.default_memory_limit() == "512MB"
    monkeypatch.setattr(csvio, "_physical_memory", lambda: 16 * 2**30)
    assert csvio.default_memory_limit() == "4096MB"
    monkeypatch.setattr(csvio, "_physical_memory", lambda: None)
    assert csvio.default_memory_limit() == "512MB"


def test_duckdb_out_of_memory_is_one_line_naming_the_variable(tmp_path):
    import duckdb

    from mingle_bench import cli
    from mingle_bench.data import csvio

    con = csvio.connect(tmp_path, memory_limit="2MB")
    with pytest.raises(duckdb.OutOfMemoryException) as info:
        con.execute("SELECT list(range) FROM range(2000000)").fetchall()
    msg = cli.error_message(info.value)
    assert msg is not None and "MINGLE_DUCKDB_MEMORY" in msg and "\n" not in msg
