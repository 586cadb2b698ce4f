"""Ctrl-C ends every command with one line and exit status 130; a closed stdout pipe ends quietly.

For real: the CLI runs in a subprocess (``python -m mingle_bench``, or with the fake pipeline of
tests/pipeline_fakes.py where training would start), gets SIGINT while it works, and must exit
with 130, one ``mingle-bench <cmd>: interrupted; ...`` line on stderr and no traceback; what it
finished is kept (a rerun resumes, ``tune`` saved its best parameters so far). In-process: the
second Ctrl-C, DuckDB's interrupt exceptions and ``tune``'s save on interrupt.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import duckdb
import pytest

from mingle_bench import cli
from mingle_bench import pipeline as P
from mingle_bench import results as R
from mingle_bench.cli import main

TESTS_DIR = Path(__file__).resolve().parent


def _sigint_as_in_a_terminal() -> None:
    """In the child before exec: SIGINT at its default, so Python installs its KeyboardInterrupt
    handler even when the tests run as a background job (``cmd &``), which ignores SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def sigint_handled():
    """The in-process tests see SIGINT as in a terminal, also when run as a background job."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


class Cli:
    """The CLI in a subprocess; stderr is collected line by line while it runs."""

    def __init__(self, argv: list[str], *, fakes: bool, env: dict | None = None, prelude: str = "") -> None:
        """``fakes``: the fake pipeline (tests/pipeline_fakes.py); ``prelude``: Python run before the CLI."""
        env = {**os.environ, **(env or {})}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH")) if p)
        argv = [str(a) for a in argv]
        if fakes:
            prelude = "import pipeline_fakes; pipeline_fakes.install_fakes()\n" + prelude
        cmd = ([sys.executable, "-c", prelude + "\nimport sys\nfrom mingle_bench.cli import main\nsys.exit(main(%r))" % (argv,)]
               if prelude else [sys.executable, "-m", "mingle_bench", *argv])
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=_sigint_as_in_a_terminal)
        self.err: list[str] = []
        self._reader = threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    def interrupt_when(self, ready: Callable[[], bool], timeout: float = 120.0) -> tuple[int, str]:
        """Send SIGINT once ``ready()`` holds (the command is at work); its exit status and stderr."""
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, "the command ended before it was interrupted: " + "".join(self.err)
            assert time.monotonic() < deadline, "the command never reached the point to interrupt"
            time.sleep(0.02)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # never leave it running after a failed test
            raise AssertionError("the command did not stop on SIGINT: " + "".join(self.err)) from None
        self._reader.join(timeout)
        return self.proc.returncode, "".join(self.err)


def assert_interrupted(rc: int, err: str, command: str) -> str:
    """Exit 130, no traceback, and the last stderr line (the only one saying so) is the interrupt line."""
    assert rc == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = err.strip().splitlines()
    said = [line for line in lines if "interrupted" in line]
    assert said == lines[-1:], err
    assert said[0].startswith(f"mingle-bench {command}: interrupted; "), said
    return said[0]


# -- for real, in a subprocess -----------------------------------------------------------------------
@pytest.mark.slow  # a subprocess end to end
def test_ctrl_c_during_training_keeps_finished_cells(fakes, tmp_path, capsys):
    argv = ["run", "--task", "mortality", "--data", "synthetic:small", "--models", "mingle,retain", "--seeds", "3",
            "--max-steps", "6", "--eval-every", "1", "--out", tmp_path, "--quiet", "--bootstrap", "0",
            "--reference", "none"]
    folder = tmp_path / "mortality" / "synthetic-small"
    run = Cli(argv, fakes=True, env={"FAKE_FIT_SLEEP": "0.1"})
    line = assert_interrupted(*run.interrupt_when(lambda: (folder / R.RUNS_FILE).exists()), "run")
    assert "finished cells are saved, rerun the same command to resume" in line
    finished = R.load_runs(folder)
    assert 1 <= len(finished) < 6
    assert main([str(a) for a in argv]) == 0  # the same command resumes
    assert f"{len(finished)} resumed" in capsys.readouterr().out


@pytest.mark.slow
def test_ctrl_c_during_tune_saves_the_best_so_far(tmp_path):
    argv = ["tune", "--task", "mortality", "--data", "synthetic:small", "--model", "retain", "--trials", "200",
            "--max-steps", "3", "--eval-every", "1", "--patience", "2", "--out", tmp_path]
    tune = Cli(argv, fakes=True, env={"FAKE_FIT_SLEEP": "0.05"})
    rc, err = tune.interrupt_when(lambda: any("COMPLETE" in line for line in tune.err))
    line = assert_interrupted(rc, err, "tune")
    saved = tmp_path / "tuning" / "mortality-retain-synthetic-small.json"
    assert f"saved to {saved}" in line and "rerun the same command to resume the study" in line
    best = json.loads(saved.read_text())
    assert best["counts"]["complete"] >= 1 and "scale" in best["best_params"]


@pytest.mark.slow  # a subprocess end to end: the slow run (CI) keeps it
def test_ctrl_c_during_data_generation(tmp_path):
    out = tmp_path / "gen"
    gen = Cli(["data", "synth", "--out", out, "--patients", "20000"], fakes=False)
    line = assert_interrupted(*gen.interrupt_when(out.exists), "data")
    assert "incomplete" in line


#: a DuckDB query that runs until it is interrupted
_ENDLESS_QUERY = "SELECT count(*) FROM range(10000000000000) t(i) WHERE i % 7 = 3"
#: Every CSV scan made to wait on that query, announced on stderr: the SIGINT is sure to land
#: inside DuckDB (a real parse of a small cohort can finish before the signal arrives).
_ENDLESS_PARSE = f"""
import sys
from mingle_bench.data import csvio
_scan = csvio.CsvReader._scan_sql
def _endless(self, path, name, cols):
    print("parsing", path.name, file=sys.stderr, flush=True)
    return "(SELECT * FROM " + _scan(self, path, name, cols) + " WHERE ({_ENDLESS_QUERY}) >= 0)"
csvio.CsvReader._scan_sql = _endless
"""


@pytest.mark.slow
def test_ctrl_c_during_the_duckdb_parse(tmp_path):
    """DuckDB turns the SIGINT into `InterruptException` / `Query interrupted`: still one line and 130."""
    from mingle_bench.data.synthetic import generate

    generate(tmp_path / "m3", patients=300, seed=1)
    info = Cli(["data", "info", "--data", f"mimic3:{tmp_path / 'm3'}", "--cache-dir", tmp_path / "cache"],
               fakes=False, prelude=_ENDLESS_PARSE)
    started: list[float] = []

    def in_the_query() -> bool:  # a moment after the scan starts, so the signal finds the query running
        if not started and any(line.startswith("parsing") for line in info.err):
            started.append(time.monotonic())
        return bool(started) and time.monotonic() - started[0] > 0.3

    assert_interrupted(*info.interrupt_when(in_the_query), "data")
    assert not list((tmp_path / "cache").glob("cohorts/[!.]*/meta.json"))  # no half-parsed cohort is kept


def test_a_closed_stdout_pipe_ends_quietly_in_process(monkeypatch, capsys):
    """`mingle-bench models --json | head -1`: stdout is a pipe whose reader has gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        assert main(["models", "--json"]) == cli.EXIT_BROKEN_PIPE
        monkeypatch.undo()
        assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_a_closed_stdout_pipe_ends_quietly():
    """The same in a subprocess: the reader has gone before we write."""
    proc = subprocess.Popen([sys.executable, "-m", "mingle_bench", "models", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == cli.EXIT_BROKEN_PIPE and err == ""


# -- in-process -------------------------------------------------------------------------------------
def test_a_second_ctrl_c_stops_at_once(monkeypatch, sigint_handled):
    exits: list[int] = []
    monkeypatch.setattr(cli.os, "_exit", exits.append)
    before = signal.getsignal(signal.SIGINT)
    with cli.second_interrupt_aborts():
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)  # while the first one unwinds: exit 130 without waiting
    assert exits == [130]
    assert signal.getsignal(signal.SIGINT) is before


def _raises(exc: BaseException):
    def f(*a, **k):
        raise exc
    return f


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), RuntimeError("Query interrupted"),
                                 duckdb.InterruptException("INTERRUPT Error: Interrupted!")],
                         ids=["KeyboardInterrupt", "RuntimeError", "duckdb.InterruptException"])
def test_duckdb_interrupts_are_interrupts(monkeypatch, capsys, exc):
    from mingle_bench.data import sources

    monkeypatch.setattr(sources, "load_source", _raises(exc))
    rc = main(["data", "info", "--data", "synthetic:small"])
    assert_interrupted(rc, capsys.readouterr().err, "data")


def test_an_interrupt_wrapped_by_a_loader_is_still_one():
    try:
        try:
            raise RuntimeError("Query interrupted")
        except RuntimeError:
            raise ValueError("x.csv: cannot be read (Query interrupted)") from None
    except ValueError as exc:
        assert cli.is_interrupt(exc)
    assert not cli.is_interrupt(ValueError("x.csv: cannot be read"))


def test_tune_interrupted_in_process_saves_and_resumes(fakes, tmp_path, capsys, monkeypatch):
    calls = []
    real_fit = P.fit

    def fit(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_fit(*a, **k)

    monkeypatch.setattr(P, "fit", fit)
    argv = ["tune", "--task", "mortality", "--data", "synthetic:small", "--model", "retain", "--trials", "4",
            "--max-steps", "3", "--eval-every", "1", "--patience", "2", "--out", str(tmp_path), "--quiet"]
    line = assert_interrupted(main(argv), capsys.readouterr().err, "tune")
    saved = json.loads((tmp_path / "tuning" / "mortality-retain-synthetic-small.json").read_text())
    assert "(2 complete trials" in line and saved["counts"] == {**saved["counts"], "complete": 2, "fail": 1}
    assert main(argv) == 0  # the same command resumes the study up to 4 finished trials
    saved = json.loads((tmp_path / "tuning" / "mortality-retain-synthetic-small.json").read_text())
    assert saved["counts"]["complete"] + saved["counts"]["pruned"] == 4


@pytest.mark.parametrize("where", ["heartbeat start", "heartbeat stop"])
def test_ctrl_c_in_optunas_bookkeeping_is_raised_after_the_trial(fakes, tmp_path, capsys, monkeypatch,
                                                                  sigint_handled, where):
    """A Ctrl-C landing while Optuna starts or stops a trial's (non-daemon) heartbeat thread must not
    leave that thread beating: the process would hang at exit. It is held until the trial is told."""
    import threading

    from optuna.storages import _heartbeat

    real = {"start": _heartbeat.HeartbeatThread.start, "join": _heartbeat.HeartbeatThread.join}
    method = "start" if where == "heartbeat start" else "join"
    sent: list[int] = []

    def with_ctrl_c(self):
        if not sent:
            sent.append(1)
            if method == "start":
                real[method](self)
                signal.raise_signal(signal.SIGINT)
            else:
                signal.raise_signal(signal.SIGINT)
                real[method](self)
        else:
            real[method](self)

    monkeypatch.setattr(_heartbeat.HeartbeatThread, method, with_ctrl_c)
    threads_before = set(threading.enumerate())
    argv = ["tune", "--task", "mortality", "--data", "synthetic:small", "--model", "retain", "--trials", "4",
            "--max-steps", "3", "--eval-every", "1", "--patience", "2", "--out", str(tmp_path), "--quiet"]
    line = assert_interrupted(main(argv), capsys.readouterr().err, "tune")
    assert sent
    left = [t for t in set(threading.enumerate()) - threads_before if t.is_alive() and not t.daemon]
    assert not left, f"threads still running after the interrupt: {left}"
    import optuna

    study = optuna.load_study(study_name="mortality-retain-synthetic-small", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    states = [t.state.name for t in study.trials]  # only the trial the Ctrl-C landed in ran
    assert states == (["FAIL"] if method == "start" else ["COMPLETE"]), states
    if method == "join":
        assert "saved to" in line


def test_interruptible_stops_a_running_duckdb_query(tmp_path, sigint_handled):
    """DuckDB often loses a SIGINT that lands during a query on the main thread; ``interruptible``
    keeps the main thread waiting, so Ctrl-C interrupts the query and the worker's cleanup runs."""
    from mingle_bench.data import csvio

    cleaned: list[str] = []

    def endless() -> None:
        con = csvio.connect(tmp_path / "scratch")
        try:
            con.execute(_ENDLESS_QUERY)
        finally:
            cleaned.append("query ended")

    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        csvio.interruptible(endless)
    assert cleaned == ["query ended"] and time.monotonic() - t0 < 30
    assert csvio.interruptible(lambda a, b=0: a + b, 2, b=3) == 5
    with pytest.raises(ValueError, match="x.csv"):
        csvio.interruptible(_raises(ValueError("x.csv: bad")))
