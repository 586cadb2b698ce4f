"""The cache lock: commands that read the cache share it, ``cache clear`` takes it alone.

One advisory lock (``fcntl.flock``) on ``<cache root>/.cache.lock`` guards everything under the
cache root (generated data, parsed cohorts, embeddings, DeepWalk features):

- :func:`shared`: held by every command that may read cache entries (``run``, ``tune``,
  ``reproduce``, ``task show``, ``data info|export|signal``) for as long as it may read them.
  Any number of processes hold it at once. If a clear holds the lock, the command says so on
  stderr and waits for it (a clear takes seconds).
- :func:`exclusive`: held by ``cache clear``. While any process holds the shared lock it raises
  :class:`CacheInUse`, naming each process using the cache (pid and command line), or with
  ``wait=True`` reports them and waits until they have finished.

Who holds it. Each holder also writes a record ``<cache root>/.in-use/<pid>-<random>.json``
(pid, command line, mode, start time) and keeps an exclusive ``flock`` on that file while it
holds (or waits for) the cache lock, so a refusal can name the processes. Record files are
created under a temporary name, locked, then renamed into place, so a record that can be locked
by someone else belongs to a dead process: :func:`users` removes it and never reports it.

Locks die with their process: a killed run never blocks a clear, and its record is swept.
Re-entrant within a process (a ``reproduce`` that runs ``run_benchmark`` holds one lock); taking
the exclusive lock while this process holds the shared one is a programming error. Linux
``flock`` does not queue: while a ``clear --wait`` waits, new runs may still start, and it waits
for them too. A cache root this user may not write (a read-only shared cache) is read without a
record: the shared lock is taken on a read-only descriptor when the lock file exists, else not at
all; such a cache cannot be cleared by this user either.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from mingle_bench.io import cache_root

LOCK_FILE = ".cache.lock"
USERS_DIR = ".in-use"
SHARED, EXCLUSIVE = "shared", "exclusive"
_COMMAND_CHARS = 300
#: a record's temporary file older than this was left by a process killed while creating it
_STALE_TMP_S = 600.0


class CacheInUse(ValueError):
    """``cache clear`` found the cache in use by other processes (listed in ``users``)."""

    def __init__(self, message: str, users: Sequence["CacheUser"] = ()):
        super().__init__(message)
        self.users = list(users)


@dataclass(frozen=True)
class CacheUser:
    """One process holding (or waiting for) the cache lock, as its record says."""

    pid: int
    command: str
    mode: str      # "shared" (a reader) or "exclusive" (a clear)
    since: str     # UTC, ISO 8601 to the second

    def describe(self) -> str:
        """``pid 123 (mingle-bench run --task mortality, since 2026-12-05 21:30:05 UTC)``."""
        return f"pid {self.pid} ({self.command}, since {self.since.replace('T', ' ')} UTC)"


#: realpath of a cache root -> [mode, depth] of the cache lock this process holds there
_HELD: dict[str, list] = {}
_GUARD = threading.RLock()


def command_line(argv: Sequence[str] | None = None) -> str:
    """``mingle-bench <argv>`` (default ``sys.argv[1:]``) as one shell-quoted line, at most 300 characters."""
    args = list(sys.argv[1:] if argv is None else argv)
    text = " ".join(["mingle-bench", *(shlex.quote(str(a)) for a in args)])
    text = " ".join(text.split())  # one line
    return text if len(text) <= _COMMAND_CHARS else text[:_COMMAND_CHARS - 3] + "..."


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _is_lockable(path: Path) -> bool:
    """True when nobody holds ``path``'s flock (its holder is gone); False when held or unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing releases the probe's lock


def users(root: str | os.PathLike | None = None, *, exclude: Path | None = None) -> list[CacheUser]:
    """The live processes holding or waiting for the cache lock of ``root`` (default the cache root),
    oldest first; records of dead processes are removed on the way (where this user may)."""
    folder = cache_root(root) / USERS_DIR
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    out = []
    for path in entries:
        if exclude is not None and path == exclude:
            continue
        if not path.name.endswith(".json"):
            # a record being created (locked a moment after its creation), or left by a process killed then
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > _STALE_TMP_S and _is_lockable(path):
                    path.unlink()
            continue
        if _is_lockable(path):  # a dead holder's record
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
            out.append(CacheUser(int(rec["pid"]), str(rec["command"]), str(rec["mode"]), str(rec["since"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written, or not ours: the lock itself still protects
    return sorted(out, key=lambda u: (u.since, u.pid))


def _write_record(root: Path, mode: str, command: str) -> tuple[int, Path]:
    """Create this process's record under ``root/.in-use`` and hold an exclusive flock on it."""
    folder = root / USERS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = folder / f".{name}.tmp"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        rec = {"pid": os.getpid(), "command": command, "mode": mode,
               "since": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())}
        os.write(fd, (json.dumps(rec) + "\n").encode("utf-8"))
        final = folder / f"{name}.json"
        os.replace(tmp, final)  # the flock follows the inode: the record is never seen unlocked
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        os.close(fd)
        raise
    return fd, final


def _drop_record(fd: int | None, path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()
    if fd is not None:
        os.close(fd)


def _listing(found: Sequence[CacheUser]) -> str:
    return "; ".join(u.describe() for u in found)


@contextlib.contextmanager
def _hold(root: str | os.PathLike | None, mode: str, *, command: str | None, wait: bool,
          on_wait: Callable[[str], None] | None) -> Iterator[None]:
    root = cache_root(root)
    on_wait = on_wait or _say
    key = os.path.realpath(root)
    with _GUARD:
        held = _HELD.get(key)
        if held is not None:
            if mode == EXCLUSIVE and held[0] != EXCLUSIVE:
                raise RuntimeError(f"this process holds the shared cache lock of {root}; it cannot clear it")
            held[1] += 1
    if held is not None:
        try:
            yield
        finally:
            with _GUARD:
                held[1] -= 1
        return

    command = command or command_line()
    op = fcntl.LOCK_SH if mode == SHARED else fcntl.LOCK_EX
    rec_fd = rec_path = lock_fd = None
    try:
        try:
            root.mkdir(parents=True, exist_ok=True)
            rec_fd, rec_path = _write_record(root, mode, command)
            lock_fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            if mode == EXCLUSIVE or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            # a cache this user may not write: lock it read-only if the lock file exists, else read it as it is
            with contextlib.suppress(OSError):
                lock_fd = os.open(root / LOCK_FILE, os.O_RDONLY)
        if lock_fd is not None:
            try:
                fcntl.flock(lock_fd, op | fcntl.LOCK_NB)
            except BlockingIOError:
                found = users(root, exclude=rec_path)
                if mode == SHARED:
                    clears = [u for u in found if u.mode == EXCLUSIVE]
                    on_wait(f"waiting for the cache {root} to be released by "
                            + (_listing(clears) if clears else "a cache clear") + " ...")
                elif not wait:
                    raise CacheInUse(f"the cache {root} is in use by "
                                     + (_listing(found) if found else "another process"), found) from None
                else:
                    on_wait(f"waiting for the cache {root} to be free; in use by "
                            + (_listing(found) if found else "another process") + " ...")
                fcntl.flock(lock_fd, op)
        with _GUARD:
            _HELD[key] = [mode, 1]
        try:
            yield
        finally:
            with _GUARD:
                _HELD.pop(key, None)
    finally:
        if lock_fd is not None:
            os.close(lock_fd)  # releases the flock
        _drop_record(rec_fd, rec_path)


def shared(root: str | os.PathLike | None = None, *, command: str | None = None,
           on_wait: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager[None]:
    """Hold the shared cache lock of ``root`` (default :func:`~mingle_bench.io.cache_root`) for a
    ``with`` block: the cache entries under it may be read, and no ``cache clear`` runs meanwhile.
    Waits (saying so through ``on_wait``, default stderr) while a clear holds it. ``command`` is the
    line recorded for a refusal to name (default: this process's ``mingle-bench ...`` argv)."""
    return _hold(root, SHARED, command=command, wait=True, on_wait=on_wait)


def exclusive(root: str | os.PathLike | None = None, *, wait: bool = False, command: str | None = None,
              on_wait: Callable[[str], None] | None = None) -> contextlib.AbstractContextManager[None]:
    """Hold the cache lock of ``root`` alone (``cache clear``). Raises :class:`CacheInUse` naming
    the processes using the cache, or with ``wait=True`` names them through ``on_wait`` and waits."""
    return _hold(root, EXCLUSIVE, command=command, wait=wait, on_wait=on_wait)


#: the commands that read cache entries, with the subcommands that do (``None``: all of them)
READING_COMMANDS: dict[str, frozenset[str] | None] = {
    "run": None, "tune": None, "reproduce": None,
    "task": frozenset({"show"}), "data": frozenset({"info", "export", "signal"}),
}


def for_command(args, argv: Sequence[str] | None = None) -> contextlib.AbstractContextManager[None]:
    """The lock a parsed CLI command holds while it runs: :func:`shared` on its cache root
    (``--cache-dir`` where the command has one) for the :data:`READING_COMMANDS`, else nothing."""
    command = getattr(args, "command", None)
    if command not in READING_COMMANDS:
        return contextlib.nullcontext()
    subcommands = READING_COMMANDS[command]
    if subcommands is not None and getattr(args, f"{command}_command", None) not in subcommands:
        return contextlib.nullcontext()
    return shared(getattr(args, "cache_dir", None), command=command_line(argv))
