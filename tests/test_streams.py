"""Streams (issue 22 item 2): results on stdout, progress and logs on stderr; arguments checked
before any folder, lock or progress line.

``mingle-bench run ... > out.md`` must hold only the table and the summary lines. The CLI runs in a
subprocess with the fake pipeline (tests/pipeline_fakes.py, ``tests/`` on ``PYTHONPATH``), stdout
and stderr read apart; stderr is a pipe, so progress is plain lines (no live display).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mingle_bench import progress
from mingle_bench.cli import main

TESTS_DIR = Path(__file__).resolve().parent
RUN = ["run", "--task", "mortality", "--data", "synthetic:small", "--models", "logreg,mingle", "--seeds", "1",
       "--max-steps", "3", "--eval-every", "1", "--patience", "2", "--bootstrap", "20", "--reference", "none"]


def _fake_cli(argv: list[str]) -> subprocess.CompletedProcess:
    """The CLI in a subprocess with the fake pipeline installed; stdout and stderr apart."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)}
    code = ("import sys, pipeline_fakes; pipeline_fakes.install_fakes();"
            "from mingle_bench.cli import main; sys.exit(main(%r))" % (argv,))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow  # a subprocess end to end: the slow run (CI) keeps it
def test_run_stdout_holds_only_the_table_and_the_summary(tmp_path):
    res = _fake_cli(RUN + ["--out", str(tmp_path)])
    assert res.returncode == 0, res.stderr
    folder = tmp_path / "mortality" / "synthetic-small"
    table = (folder / "table.md").read_text(encoding="utf-8")
    assert res.stdout.startswith(table), res.stdout[:400]
    rest = [line for line in res.stdout[len(table):].splitlines() if line.strip()]
    # after the table: the comparison sentence (if any) and the summary line, nothing else
    assert rest and rest[-1].startswith(f"Results in {folder}/"), rest
    assert len(rest) <= 2, rest
    for noise in ("stage:", "cell ", "started", "\x1b["):
        assert noise not in res.stdout, noise
    # progress went to stderr, as plain lines (stderr is a pipe): the stages, then the cells
    err = res.stderr
    assert "\x1b[" not in err
    assert err.index("stage: load data (synthetic:small)") < err.index("stage: features and embeddings") \
        < err.index("stage: training model x seed (2 cells)") < err.index("cell mingle seed 0: started")
    assert "cell logreg seed 0: started (fitted by its solver)" in err
    assert "cell 2/2 done" in err


def test_solver_fitted_model_gets_no_step_bar(capsys, monkeypatch):
    """On a terminal: the step bar of a trained model shows n/total; a solver-fitted one shows none."""
    import rich.console

    monkeypatch.setattr(rich.console.Console, "is_terminal", property(lambda self: True))
    with progress.CellProgress(True, 2, "aupr", solver_models={"logreg"}) as prog:
        prog.stage("load data (synthetic:small)")
        prog.stage(progress.TRAINING)
        prog.start_cell("logreg", 0, 1000)
        prog.end_cell("logreg/0 done")
        prog.start_cell("mingle", 0, 1000)(10, {"aupr": 0.5})
    lines = capsys.readouterr().err.splitlines()
    logreg = [x for x in lines if "logreg seed 0" in x]
    mingle = [x for x in lines if "mingle seed 0" in x]
    assert logreg and all("/1000" not in x for x in logreg), logreg
    assert any("fitting (solver)" in x for x in logreg), logreg
    assert mingle and "10/1000" in mingle[-1], mingle
    assert any(progress.TRAINING in x and "1/2" in x for x in lines), lines


def test_the_data_stage_shows_its_name_not_a_cell_count(capsys, monkeypatch):
    import rich.console

    monkeypatch.setattr(rich.console.Console, "is_terminal", property(lambda self: True))
    with progress.CellProgress(True, 4, "aupr") as prog:
        prog.stage("features and embeddings")
    lines = [x for x in capsys.readouterr().err.splitlines() if "features and embeddings" in x]
    assert lines and "0/4" not in lines[-1], lines


@pytest.mark.parametrize("extra, culprit", [
    (["--task", "mortalty"], "mortalty"),
    (["--data", "synthtic:small"], "--data 'synthtic:small'"),
    (["--encoder", "hf"], "--encoder"),
    (["--monitor", "nope"], "--monitor"),
    (["--models", "logreg,nosuch"], "nosuch"),
])
def test_bad_arguments_fail_before_any_folder_lock_or_bar(extra, culprit, tmp_path, capsys, monkeypatch, fakes):
    from mingle_bench import pipeline as P

    def prepare(*a, **k):
        raise AssertionError("data was prepared before the arguments were checked")

    monkeypatch.setattr(P, "prepare", prepare)
    argv = [a for a in RUN if a not in ("--task", "mortality")] + ["--out", str(tmp_path / "runs")] + extra
    if "--task" not in extra:
        argv += ["--task", "mortality"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    lines = [x for x in captured.err.splitlines() if x.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and culprit in lines[0], captured.err
    assert "stage:" not in captured.err and captured.out == ""
    assert not (tmp_path / "runs").exists()  # no folder, no .lock


def test_an_embedding_bar_joins_the_runs_live_display(capsys, monkeypatch):
    """On a terminal, a bar opened during the features stage is a line of the run's display (one
    live display, not two fighting over the screen), gone when it ends."""
    import rich.console

    monkeypatch.setattr(rich.console.Console, "is_terminal", property(lambda self: True))
    with progress.CellProgress(True, 2, "aupr") as prog:
        prog.stage("features and embeddings")
        with progress.progress_bar("notes · MiniLM", 4, unit="notes") as bar:
            assert progress._LIVE and len(prog._p.tasks) == 2
            bar.advance(4)
            prog._p.refresh()  # draw the frame now (the display refreshes on its own ten times a second)
        assert len(prog._p.tasks) == 1
    assert not progress._LIVE
    err = capsys.readouterr().err
    assert "notes · MiniLM" in err and "4/4" in err
