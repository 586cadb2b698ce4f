"""Every user-facing failure of the CLI is one line naming the file, flag or row, never a traceback.

A corpus of malformed arguments and inputs, run in-process through ``mingle_bench.cli.main``
across the subcommands. Where training would start, the fake pipeline stands in
(tests/pipeline_fakes.py); a finished results folder is built once and copied per case.
Each case asserts: exit status != 0, no "Traceback", exactly one ``error:`` line on stderr, and
that line names the culprit.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mingle_bench import io as mio
from mingle_bench import results as R
from mingle_bench import runner
from mingle_bench.cli import main
from pipeline_fakes import folder_locked_elsewhere, install_fakes

FOLDER = Path("mortality") / "synthetic-small"
RUN = ["run", "--task", "mortality", "--data", "synthetic:small", "--models", "mingle,retain", "--seeds", "2",
       "--max-steps", "3", "--eval-every", "1", "--patience", "2", "--quiet", "--bootstrap", "20", "--reference", "none"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A results root holding one finished fake run (2 models x 2 seeds)."""
    out = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as mp:
        install_fakes(mp.setattr)
        runner.run_benchmark(runner.RunConfig(
            task="mortality", data="synthetic:small", models=["mingle", "retain"], seeds=[0, 1], out=str(out),
            max_steps=3, eval_every=1, patience=2, n_boot=20, progress=False, reference=None))
    return out


@pytest.fixture
def results_root(finished, tmp_path) -> Path:
    """A private copy of the finished results root."""
    return Path(shutil.copytree(finished, tmp_path / "out"))


def check(capsys, argv: list[str], culprit: str, *, rc: int | None = None) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code != 0, (argv, err)
    if rc is not None:
        assert code == rc
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert culprit in lines[0], (culprit, lines[0])
    print(lines[0])
    return lines[0]


# -- arguments: one line naming the flag ----------------------------------------------------------
ARGUMENT_CASES = [
    (["run", "--bootstrap", "-5"], "--bootstrap"),
    (["run", "--split-seed", "-4"], "--split-seed"),
    (["run", "--models", "nosuch"], "nosuch"),
    (["run", "--seeds", "0,0"], "--seeds"),
    (["run", "--seeds", "abc"], "--seeds"),
    (["run", "--seeds", "0"], "--seeds"),
    (["run", "--device", "tpu"], "--device"),
    (["run", "--monitor", "foo"], "--monitor"),
    (["run", "--max-steps", "0"], "--max-steps"),
    (["run", "--max-tokens", "0"], "--max-tokens"),
    (["run", "--max-notes-per-visit", "-1"], "--max-notes-per-visit"),
    (["run", "--code-types", "foo"], "--code-types"),
    (["run", "--epochs", "3"], "--epochs"),
    (["run", "--models", "retain", "--tuned", "nosuch-study"], "--tuned nosuch-study"),
    (["tune", "--model", "nosuch"], "--model nosuch"),
    (["run", "--seeds", "1000000000000"], "--seeds"),
    (["run", "--seeds", "0,4294967296"], "--seeds"),
    (["tune", "--model", "retain", "--seed", "4294967296"], "--seed"),
    (["tune", "--model", "retain", "--trials", "0"], "--trials"),
    (["tune", "--model", "retain", "--split-seed", "-1"], "--split-seed"),
    (["tune", "--model", "retain", "--timeout", "-1"], "--timeout"),
    (["tune", "--model", "retain", "--worker-id", "-2"], "--worker-id"),
    (["reproduce", "--bootstrap", "-1"], "--bootstrap"),
    (["reproduce", "--seeds", "x"], "--seeds"),
    (["reproduce", "--split-seed", "-3"], "--split-seed"),
    (["task", "show", "--task", "nosuch"], "--task"),
    (["task", "show", "--task", "mortality", "--split-seed", "-1"], "--split-seed"),
    (["task", "show", "--task", "mortality", "--limit", "-1"], "--limit"),
    (["task", "show", "--task", "mortality", "--code-types", "foo"], "--code-types"),
    (["data", "info", "--data", "nosuch"], "nosuch"),
    (["data", "synth", "--out", "x", "--patients", "0"], "--patients"),
    (["data", "signal", "--data", "mimic3:/nonexistent"], "--data"),
    (["profile-model", "--epochs", "0"], "--epochs"),
    (["profile-model", "--model", "retain"], "--model retain"),
    (["profile-encoder", "--names", "0"], "--names"),
    (["profile-kernel", "--sizes", "huge"], "huge"),
    (["profile-kernel", "--sizes", ","], "--sizes"),
    (["profile-kernel", "--arms", "foo", "--sizes", "tiny"], "foo"),
    (["profile-kernel", "--passes", "x", "--sizes", "tiny"], "--passes"),
    (["profile-kernel", "--repeats", "0"], "--repeats"),
    (["profile-kernel", "--threads", "0"], "--threads"),
    (["cache", "clear", "--stale-minutes", "-1"], "--stale-minutes"),
]


@pytest.mark.parametrize("argv,culprit", ARGUMENT_CASES, ids=[" ".join(a) for a, _ in ARGUMENT_CASES])
def test_bad_argument_is_one_line(fakes, tmp_path, capsys, argv, culprit):
    extra = ["--out", tmp_path / "runs"] if argv[0] in ("run", "tune", "reproduce") else []
    check(capsys, argv + extra, culprit)


# -- paths -----------------------------------------------------------------------------------------
def test_out_is_a_file(fakes, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    check(capsys, RUN + ["--out", f], str(f))


def test_table_of_a_missing_folder(tmp_path, capsys):
    check(capsys, ["table", tmp_path / "nope"], str(tmp_path / "nope"))


def test_table_of_a_file(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    check(capsys, ["table", f], str(f))


def test_data_info_missing_mimic_folder(tmp_path, capsys):
    check(capsys, ["data", "info", "--data", f"mimic3:{tmp_path / 'nope'}"], str(tmp_path / "nope"))


def test_data_cache_dir_is_a_file(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    check(capsys, ["data", "info", "--data", "synthetic:small", "--cache-dir", f], str(f))


def test_data_synth_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    check(capsys, ["data", "synth", "--out", f, "--patients", "5"], str(f))


def test_profile_kernel_out_under_a_file(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    check(capsys, ["profile-kernel", "--sizes", "tiny", "--out", f / "k"], str(f))


def _deny_writes(monkeypatch, folder: Path):
    """A read-only folder: real permissions for a normal user; root ignores them, so simulate."""
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        return lambda: os.chmod(folder, 0o755)
    real = mio.tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if dir is not None and Path(dir).resolve().is_relative_to(folder.resolve()):
            raise PermissionError(13, "Permission denied", str(Path(dir) / "tmpfile"))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(mio.tempfile, "mkstemp", mkstemp)
    return lambda: None


def test_read_only_results_folder_with_every_cell_finished(fakes, results_root, capsys, monkeypatch):
    undo = _deny_writes(monkeypatch, results_root / FOLDER)
    try:
        line = check(capsys, RUN + ["--out", results_root], str(results_root / FOLDER))
    finally:
        undo()
    assert "Permission denied" in line


def test_read_only_cache_folder(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    undo = _deny_writes(monkeypatch, cache)
    try:
        check(capsys, ["data", "info", "--data", "synthetic:small", "--cache-dir", cache], str(cache))
    finally:
        undo()


# -- malformed files in a results folder: one line naming the file ----------------------------------
def test_garbage_config_json(fakes, results_root, capsys):
    (results_root / FOLDER / "config.json").write_text("{garbage")
    check(capsys, RUN + ["--out", results_root], str(results_root / FOLDER / "config.json"))


def test_config_json_not_an_object(fakes, results_root, capsys):
    (results_root / FOLDER / "config.json").write_text("[1, 2]\n")
    check(capsys, RUN + ["--out", results_root], str(results_root / FOLDER / "config.json"))


def test_garbage_runs_jsonl_line(fakes, results_root, capsys):
    with open(results_root / FOLDER / R.RUNS_FILE, "a") as fh:
        fh.write("{not json\n")
    check(capsys, RUN + ["--out", results_root], f"{results_root / FOLDER / R.RUNS_FILE}, line 5")


def test_garbage_splits_json(fakes, results_root, capsys):
    (results_root / FOLDER / "splits.json").write_text("")
    check(capsys, RUN + ["--out", results_root], str(results_root / FOLDER / "splits.json"))


def test_truncated_predictions_with_every_cell_finished(fakes, results_root, capsys):
    p = R.preds_path(results_root / FOLDER, "retain", 1)
    p.write_bytes(p.read_bytes()[:40])
    check(capsys, RUN + ["--out", results_root], str(p))


def test_truncated_labels_file(fakes, results_root, capsys):
    p = R.labels_path(results_root / FOLDER)
    p.write_bytes(b"\x00" * 3)
    check(capsys, ["table", results_root / FOLDER, "--write"], str(p))


def test_table_with_garbage_config(results_root, capsys):
    (results_root / FOLDER / "config.json").write_text("nope")
    check(capsys, ["table", results_root / FOLDER], str(results_root / FOLDER / "config.json"))


def test_table_with_garbage_comparison(results_root, capsys):
    (results_root / FOLDER / "comparison.json").write_text("{")
    check(capsys, ["table", results_root / FOLDER], str(results_root / FOLDER / "comparison.json"))


def test_tuned_file_not_json(fakes, tmp_path, capsys):
    f = tmp_path / "study.json"
    f.write_text("garbage")
    check(capsys, RUN + ["--out", tmp_path / "runs", "--tuned", f], str(f))


def test_folder_in_use_by_another_run(fakes, results_root, capsys):
    with folder_locked_elsewhere(results_root / FOLDER) as pid:
        line = check(capsys, RUN + ["--out", results_root], f"{results_root / FOLDER} is in use by another run")
    assert f"pid {pid}" in line


def test_damaged_cohort_cache_is_rebuilt_with_a_warning(tmp_path, capsys):
    """A cached cohort whose meta.json is garbage, or whose parquet differs from its recorded
    sha256, is moved aside with a warning naming the file and rebuilt from the source files."""
    cache = tmp_path / "cache"
    assert main(["data", "info", "--data", "synthetic:small", "--cache-dir", str(cache), "--json"]) == 0
    first = capsys.readouterr().out
    (meta,) = (cache / "cohorts").glob("*/meta.json")
    meta.write_text("garbage")
    with pytest.warns(UserWarning, match=f"{meta}: not valid JSON"):
        assert main(["data", "info", "--data", "synthetic:small", "--cache-dir", str(cache), "--json"]) == 0
    assert capsys.readouterr().out == first
    (table,) = (cache / "cohorts").glob("[!.]*/admissions.parquet")
    table.write_bytes(table.read_bytes()[:-8] + b"\0" * 8)
    with pytest.warns(UserWarning, match=f"{table}: sha256 differs"):
        assert main(["data", "info", "--data", "synthetic:small", "--cache-dir", str(cache), "--json"]) == 0
    assert capsys.readouterr().out == first


# -- --debug shows the traceback --------------------------------------------------------------------
def test_debug_raises(fakes, tmp_path):
    with pytest.raises(ValueError, match="--bootstrap"):
        main(["run", "--bootstrap", "-5", "--debug", "--out", str(tmp_path)])


# -- cache clear ------------------------------------------------------------------------------------
def test_cache_clear_cohorts_and_stale_staging(tmp_path, capsys, monkeypatch):
    import time

    root = tmp_path / "cache"
    monkeypatch.setenv("MINGLE_CACHE", str(root))
    (root / "cohorts" / "synthetic-abc").mkdir(parents=True)
    (root / "cohorts" / "synthetic-abc" / "meta.json").write_text("{}")
    (root / "synthetic" / "small-seed0").mkdir(parents=True)
    stale = root / "cohorts" / ".synthetic-def.x1"           # left by a killed load an hour ago
    stale.mkdir()
    (stale / "a.parquet").write_bytes(b"x")
    old = time.time() - 3600
    os.utime(stale / "a.parquet", (old, old))
    os.utime(stale, (old, old))
    live = root / "synthetic" / ".small-seed1.x2"             # a load running now
    live.mkdir()
    (root / "embeddings" / "ns").mkdir(parents=True)

    assert main(["cache", "clear"]) == 0                       # embeddings (the default) + stale staging
    out = capsys.readouterr().out
    assert "removed 1 leftover staging folder" in out
    assert not (root / "embeddings").exists() and not stale.exists()
    assert live.exists() and (root / "cohorts" / "synthetic-abc").exists()

    assert main(["cache", "clear", "--cohorts"]) == 0
    assert sorted(p.name for p in (root / "cohorts").iterdir()) == []
    assert sorted(p.name for p in (root / "synthetic").iterdir()) == [live.name]
    assert main(["cache", "clear", "--all", "--stale-minutes", "0"]) == 0
    assert not live.exists()


# -- messages: a full disk, a non-UTF-8 file, long notes (issue 23 item 7) ---------------------------
def _disk_full(*a, **k):
    raise OSError(28, "No space left on device")  # as a write or flush raises it: no file name


def test_full_disk_names_the_file_being_written(fakes, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(mio, "_fsync", _disk_full)
    line = check(capsys, RUN + ["--out", tmp_path / "runs"], "No space left on device")
    written = line.split("error: ", 1)[1].split(": No space left on device")[0]
    assert Path(written).is_relative_to(tmp_path / "runs") and not Path(written).exists(), line
    assert "free some space" in line


def test_full_disk_atomic_writers_raise_with_the_path(tmp_path, monkeypatch):
    monkeypatch.setattr(mio, "_fsync", _disk_full)
    with pytest.raises(OSError) as e:
        mio.atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert e.value.errno == 28 and e.value.filename == str(tmp_path / "a.json")
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind
    with pytest.raises(OSError) as e, mio.staged_dir(tmp_path / "folder"):
        _disk_full()
    assert e.value.filename == str(tmp_path / "folder")


def test_non_utf8_meds_config_names_itself(tmp_path, capsys):
    cfg = tmp_path / "mapping.yaml"
    cfg.write_bytes(b"codes:\n  note: 'caf\xe9'\n")
    check(capsys, ["data", "info", "--data", f"meds:{tmp_path}", "--meds-config", cfg], f"{cfg}: not UTF-8")


def test_non_utf8_results_json_names_itself(results_root, capsys):
    cfg = results_root / FOLDER / "config.json"
    cfg.write_bytes(b'{"task": "caf\xe9"}')
    check(capsys, ["table", results_root / FOLDER], f"{cfg}: not UTF-8")


@pytest.fixture(scope="module")
def long_note_source(tmp_path_factory) -> Path:
    """A MIMIC-III-shaped folder whose first note is 3 MB long (DuckDB's default line limit is 2 MB)."""
    import pandas as pd

    from mingle_bench.data.synthetic import generate

    d = tmp_path_factory.mktemp("longnote")
    generate(d, patients=10, seed=5)
    notes = pd.read_csv(d / "NOTEEVENTS.csv", dtype=str, keep_default_na=False)
    notes.loc[0, "TEXT"] = ("patient seen, plan unchanged.\n" * 100_000)[:3_000_000]
    notes.to_csv(d / "NOTEEVENTS.csv", index=False)
    return d


def test_a_long_note_is_read(long_note_source, tmp_path):
    from mingle_bench.data.mimic3 import load_mimic3

    c = load_mimic3(long_note_source, tmp_path / "out")
    assert not any("NOTEEVENTS" in k and "line" in k for k in c.report["skipped"]), c.report["skipped"]
    longest = max(len(t) for t in c.read_note_texts(c.notes["note_id"].tolist()).values())
    assert longest == 3_000_000


def test_a_note_over_the_line_limit_is_skipped_with_the_reason(long_note_source, tmp_path, monkeypatch):
    from mingle_bench.data import csvio
    from mingle_bench.data.mimic3 import load_mimic3

    monkeypatch.setattr(csvio, "MAX_LINE_BYTES", 2 ** 20)
    c = load_mimic3(long_note_source, tmp_path / "out")
    reason = "NOTEEVENTS: line longer than the CSV reader's limit of 1 MiB (csvio.MAX_LINE_BYTES), skipped"
    assert c.report["skipped"][reason] == 1
