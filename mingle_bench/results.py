"""The results folder: atomic writes, ``runs.jsonl``, per-cell predictions and resume.

A run writes ``results/<task>/<data-id>/``::

    config.json          run-level configuration (task, data, split seed, budget, encoder, ...)
    splits.json          the split manifest (patient ids per split, seed, sha256)
    runs.jsonl           one JSON object per finished model x seed cell
    preds/labels.safetensors            test labels  float32 [n_test, n_labels] + test sample index
    preds/<model>__seed<k>.safetensors  test probabilities of one cell, float32 [n_test, n_labels]
    comparison.json      paired comparison of MINGLE vs the best baseline
    table.md, table.tex, table.csv, curves.png

Every file is written through a temporary file in the same folder and ``os.replace``, so a
killed run leaves either the old or the new file, never a torn one. ``runs.jsonl`` is small
(one line per cell) and is rewritten whole on every append for the same reason; the
read-modify-write of :func:`add_run` holds an exclusive ``flock`` on the folder's lock file
``.lock``, so two processes appending to one folder never lose each other's records.

Concurrency: a run holds :func:`folder_lock` on its folder for its whole duration (the same
``.lock`` file, taken without waiting); a second run on the same folder fails at once with
:class:`FolderInUse` ("... is in use by another run (pid N)"). :func:`add_run` inside a process
that holds the folder lock reuses it; elsewhere it waits for the lock.

Resume: a cell is *finished* when ``runs.jsonl`` holds a record with the same ``input_hash``
(a sha256 over everything that shapes its training: cohort content, task samples and labels,
split, note selection, encoder identity, vocabulary, hyperparameters, budget and pipeline
version; :func:`mingle_bench.runner.input_hash`) and its prediction file exists. Each record
also carries ``preds_sha256``, the digest of its test probabilities, so two runs can be
compared cell by cell (:mod:`mingle_bench.report.reference`). Nothing uses pickle.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from mingle_bench.io import atomic_write_bytes, atomic_write_text, clean_nan, json_default, to_json

RUNS_FILE = "runs.jsonl"
CONFIG_FILE = "config.json"
SPLITS_FILE = "splits.json"
COMPARISON_FILE = "comparison.json"
#: each model's own patient-level bootstrap CI (:func:`mingle_bench.report.finalize.model_cis`)
MODEL_CI_FILE = "model_ci.json"
PREDS_DIR = "preds"
LOCK_FILE = ".lock"


class FolderInUse(ValueError):
    """Another process holds the results folder's lock (a concurrent run)."""


#: realpath of a folder -> lock file descriptor, for the folder locks this process holds
_HELD: dict[str, int] = {}
_HELD_GUARD = threading.RLock()


def _lock_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / LOCK_FILE


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, *, wait: bool = False, what: str = "run"):
    """Hold an exclusive advisory lock (``flock``) on ``folder/.lock`` for the ``with`` block.

    ``wait=False`` (a run): if another process holds it, raise :class:`FolderInUse` at once,
    naming the folder and the holder's pid. ``wait=True`` (one append): wait for it. Re-entrant
    within a process. The lock file stays (an empty file holding the last holder's pid); removing
    it would race with a process that has just opened it. Locks die with their process, so a
    killed run never leaves the folder locked.
    """
    folder = Path(folder)
    key = os.path.realpath(folder)
    with _HELD_GUARD:
        held = key in _HELD
    if held:  # this process already holds it (an append inside a run)
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = _lock_path(folder)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            raise FolderInUse(f"{folder} is in use by another {what}" + (f" (pid {holder})" if holder.isdigit() else "")
                              + "; wait for it to finish or pick another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        with _HELD_GUARD:
            _HELD[key] = fd
        try:
            yield
        finally:
            with _HELD_GUARD:
                _HELD.pop(key, None)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start}); not a JSON file") from None


def read_json_object(path: str | os.PathLike) -> dict:
    """:func:`read_json` of a file that must hold one JSON object (config.json, splits.json)."""
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    return obj


def stable_hash(obj: Any, n: int = 16) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys), first ``n`` hex digits."""
    blob = json.dumps(clean_nan(obj), sort_keys=True, default=json_default, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:n]


def array_sha256(a: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes (C order)."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def load_runs(folder: str | os.PathLike) -> list[dict]:
    """Records of ``folder/runs.jsonl`` (empty when absent).

    A malformed line (e.g. edited by hand) raises ``ValueError`` naming the file and line.
    """
    path = Path(folder) / RUNS_FILE
    if not path.exists():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}, line {i}: not valid JSON ({exc})") from None
        if not isinstance(rec, dict) or "model" not in rec or "seed" not in rec or "metrics" not in rec:
            raise ValueError(f"{path}, line {i}: a run record needs 'model', 'seed' and 'metrics'")
        out.append(rec)
    return out


def write_runs(folder: str | os.PathLike, records: Iterable[dict]) -> Path:
    lines = [to_json(r, indent=None) for r in records]
    return atomic_write_text(Path(folder) / RUNS_FILE, "".join(line + "\n" for line in lines))


def add_run(folder: str | os.PathLike, record: dict) -> Path:
    """Append ``record``, replacing any earlier record of the same model x seed (atomic rewrite).

    The read-modify-write holds the folder lock (:func:`folder_lock`, waiting for it), so
    concurrent appenders never drop each other's records.
    """
    with folder_lock(folder, wait=True):
        records = [r for r in load_runs(folder) if (r["model"], r["seed"]) != (record["model"], record["seed"])]
        records.append(record)
        return write_runs(folder, records)


def preds_path(folder: str | os.PathLike, model: str, seed: int) -> Path:
    return Path(folder) / PREDS_DIR / f"{model}__seed{int(seed)}.safetensors"


def labels_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / PREDS_DIR / "labels.safetensors"


def save_array(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Save named arrays as safetensors, atomically."""
    from safetensors.numpy import save

    blob = save({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, blob)


def load_array(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The named arrays of a safetensors file; a torn or foreign file raises ``ValueError`` naming it."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except SafetensorError as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({exc}); delete it (rerun the command to "
                         "recompute its cell) or rerun with --fresh") from None


def finished_cells(folder: str | os.PathLike) -> dict[str, dict]:
    """``input_hash -> record`` for the cells whose record and prediction file both exist."""
    out = {}
    for rec in load_runs(folder):
        key = rec.get("input_hash")
        if key and preds_path(folder, rec["model"], rec["seed"]).exists():
            out[key] = rec
    return out
