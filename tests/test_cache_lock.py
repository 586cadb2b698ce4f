"""The cache is safe while in use: ``cache clear`` never breaks a command reading the cache.

A second process holds the shared cache lock (as ``run``, ``tune``, ``reproduce``, ``task show``
and ``data info|export|signal`` do through ``cli.main``); ``cache clear`` then refuses with one
line naming that process (pid and command), exit 1, the cache intact; ``--wait`` waits for it;
a killed holder never blocks. Also: the cache root follows ``$XDG_CACHE_HOME``.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mingle_bench import cachelock
from mingle_bench.cli import build_parser, main
from mingle_bench.io import cache_root
from pipeline_fakes import wait_for

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mingle_bench import cachelock
    root, mode, ready, release = sys.argv[1:5]
    lock = cachelock.shared if mode == "shared" else cachelock.exclusive
    with lock(root, command="mingle-bench run --task mortality --seeds 3"):
        Path(ready).touch()
        while not Path(release).exists():
            time.sleep(0.02)
""")


class Holder:
    """A subprocess holding the cache lock of ``root`` until :meth:`release` (or a kill)."""

    def __init__(self, root: Path, tmp: Path, mode: str = "shared"):
        self.ready, self.release_file = tmp / f"ready-{mode}", tmp / f"release-{mode}"
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), mode, str(self.ready),
                                      str(self.release_file)])
        assert wait_for(self.ready, 60), "the lock-holding process did not start"
        self.pid = self.proc.pid

    def release(self) -> None:
        self.release_file.touch()
        assert self.proc.wait(60) == 0

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(60)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cache root holding one cohort, one generated data set and one embedding namespace."""
    root = tmp_path / "cache"
    monkeypatch.setenv("MINGLE_CACHE", str(root))
    for entry in ("cohorts/synthetic-abc", "synthetic/small-seed0", "embeddings/ns"):
        (root / entry).mkdir(parents=True)
        (root / entry / "meta.json").write_text("{}")
    return root


def entries(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.glob("*/*") if not p.name.startswith(".")
                  and not p.parent.name.startswith("."))


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def test_clear_refuses_while_a_process_reads_the_cache_then_clears(cache, tmp_path, capsys):
    before = entries(cache)
    holder = Holder(cache, tmp_path)
    try:
        assert main(["cache", "clear", "--all"]) == 1
        line = one_error_line(capsys.readouterr().err)
        assert line.startswith("mingle-bench cache: error: the cache ")
        assert f"pid {holder.pid} (mingle-bench run --task mortality --seeds 3, since " in line
        assert "nothing was cleared" in line and "--wait" in line
        assert entries(cache) == before                       # nothing touched
        assert main(["cache", "clear", "--cohorts"]) == 1      # every kind of clear is refused
        assert main(["cache", "clear"]) == 1
        assert entries(cache) == before
        capsys.readouterr()
        assert main(["cache", "info", "--json"]) == 0         # info names the user too
        assert f'"pid": {holder.pid}' in capsys.readouterr().out
    finally:
        holder.release()
    assert main(["cache", "clear", "--all"]) == 0
    assert entries(cache) == []
    assert list((cache / cachelock.USERS_DIR).iterdir()) == []  # the holder removed its record


def test_clear_wait_waits_for_the_reader(cache, tmp_path, capsys, monkeypatch):
    holder = Holder(cache, tmp_path)
    said = []

    def on_wait(message):  # called just before the clear blocks: let the reader finish now
        said.append(message)
        holder.release_file.touch()

    monkeypatch.setattr(cachelock, "_say", on_wait)
    try:
        assert main(["cache", "clear", "--all", "--wait"]) == 0
    finally:
        holder.release()
    assert len(said) == 1 and f"pid {holder.pid} (mingle-bench run" in said[0] and said[0].startswith("waiting")
    assert entries(cache) == []


def test_a_killed_reader_never_blocks_a_clear(cache, tmp_path, capsys):
    holder = Holder(cache, tmp_path)
    holder.kill()
    (record,) = (cache / cachelock.USERS_DIR).glob("*.json")  # left behind by the killed process
    assert cachelock.users(cache) == [] and not record.exists()  # recognised as dead and swept
    assert main(["cache", "clear", "--all"]) == 0
    assert entries(cache) == []


def test_a_reader_waits_for_a_clear_in_progress(cache, tmp_path, monkeypatch):
    clear = Holder(cache, tmp_path, mode="exclusive")
    said = []
    monkeypatch.setattr(cachelock, "_say", lambda m: (said.append(m), clear.release_file.touch()))
    try:
        with cachelock.shared(cache, command="mingle-bench task show"):
            # the shared lock was granted, so the clear has let go of the cache (its process may
            # still be exiting, with its own record, for a moment: not asserted)
            assert os.getpid() in [u.pid for u in cachelock.users(cache)]
    finally:
        clear.release()
    assert len(said) == 1 and f"released by pid {clear.pid}" in said[0]


@pytest.mark.slow  # cross-process: a second process clears the cache during a run
def test_run_holds_the_lock_while_it_reads(fakes, cache, tmp_path, monkeypatch):
    """``cli.main`` takes the shared lock for ``run``: a clear from another process during the run is
    refused naming this process and its command line; the run finishes normally."""
    from mingle_bench import pipeline

    seen = {}
    real_load = pipeline.load_cohort

    def load_and_clear(spec, progress=True):
        seen["clear"] = subprocess.run([sys.executable, "-m", "mingle_bench.cli", "cache", "clear", "--all"],
                                       capture_output=True, text=True, timeout=120)
        return real_load(spec, progress)

    monkeypatch.setattr(pipeline, "load_cohort", load_and_clear)
    argv = ["run", "--task", "mortality", "--data", "synthetic:small", "--models", "mingle", "--seeds", "1",
            "--max-steps", "3", "--eval-every", "1", "--patience", "2", "--quiet", "--reference", "none",
            "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    clear = seen["clear"]
    assert clear.returncode == 1, clear.stderr
    line = one_error_line(clear.stderr)
    assert f"pid {os.getpid()} (mingle-bench run --task mortality --data synthetic:small" in line
    assert entries(cache) != []


def test_the_commands_that_read_the_cache_take_the_lock(tmp_path):
    parser = build_parser()
    reading = [["run"], ["tune", "--model", "retain"], ["reproduce"], ["task", "show", "--task", "mortality"],
               ["data", "info"], ["data", "signal"], ["data", "export", "--data", "synthetic", "--out", str(tmp_path)]]
    other = [["cache", "clear"], ["cache", "info"], ["task", "list"], ["models"], ["table", str(tmp_path)]]
    for argv in reading:
        assert not isinstance(cachelock.for_command(parser.parse_args(argv)), contextlib.nullcontext), argv
    for argv in other:
        assert isinstance(cachelock.for_command(parser.parse_args(argv)), contextlib.nullcontext), argv
    own = tmp_path / "own-cache"                                 # --cache-dir picks the root it locks
    with cachelock.for_command(parser.parse_args(["data", "info", "--cache-dir", str(own)]),
                               ["data", "info", "--cache-dir", str(own)]):
        (user,) = cachelock.users(own)
        assert user.pid == os.getpid() and user.mode == "shared"
        assert user.command == f"mingle-bench data info --cache-dir {own}"
    assert cachelock.users(own) == []


def test_the_lock_is_reentrant_and_a_reader_cannot_clear(cache):
    with cachelock.shared(cache):
        with cachelock.shared(cache):
            assert len(cachelock.users(cache)) == 1
        with pytest.raises(RuntimeError, match="shared cache lock"):
            with cachelock.exclusive(cache):
                pass
        assert len(cachelock.users(cache)) == 1
    assert cachelock.users(cache) == []
    with cachelock.exclusive(cache):   # free again
        pass


def test_cache_root_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("MINGLE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "mingle-bench"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")      # invalid per the XDG spec: ignored
    assert cache_root() == Path.home() / ".cache" / "mingle-bench"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert cache_root() == Path.home() / ".cache" / "mingle-bench"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("MINGLE_CACHE", str(tmp_path / "mine"))  # $MINGLE_CACHE wins
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("MINGLE_CACHE")
    from mingle_bench.encoders.cache import default_cache_root

    assert default_cache_root() == tmp_path / "xdg" / "mingle-bench" / "embeddings"


def test_the_cache_lock_is_a_bottom_module():
    """docs/architecture.md: cachelock.py imports nothing of the package but io.py."""
    from test_architecture import import_graph

    graph = import_graph()
    assert graph["mingle_bench.cachelock"] == {"mingle_bench.io"}
