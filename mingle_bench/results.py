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
(one line per cell) and is rewritten whole on every append for the same reason.

Resume: a cell is *finished* when ``runs.jsonl`` holds a record with the same ``input_hash``
(a sha256 over everything that shapes its training: cohort content, task samples and labels,
split, note selection, encoder identity, vocabulary, hyperparameters, budget and pipeline
version; :func:`mingle_bench.runner.input_hash`) and its prediction file exists. Each record
also carries ``preds_sha256``, the digest of its test probabilities, so two runs can be
compared cell by cell (:mod:`mingle_bench.report.reference`). Nothing uses pickle.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from mingle_bench.io import atomic_write_bytes, atomic_write_text, clean_nan, json_default, to_json

RUNS_FILE = "runs.jsonl"
CONFIG_FILE = "config.json"
SPLITS_FILE = "splits.json"
COMPARISON_FILE = "comparison.json"
PREDS_DIR = "preds"


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


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
    """Append ``record``, replacing any earlier record of the same model x seed (atomic rewrite)."""
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
    from safetensors.numpy import load_file

    return load_file(str(path))


def finished_cells(folder: str | os.PathLike) -> dict[str, dict]:
    """``input_hash -> record`` for the cells whose record and prediction file both exist."""
    out = {}
    for rec in load_runs(folder):
        key = rec.get("input_hash")
        if key and preds_path(folder, rec["model"], rec["seed"]).exists():
            out[key] = rec
    return out
