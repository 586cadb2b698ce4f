"""Patient-level train/validation/test splits with a verifiable manifest.

:func:`split_patients` shuffles the unique patient ids with ``numpy.random.default_rng(seed)``
and cuts them 7:1:2 (by default). Every patient lands in exactly one split; that is asserted
when the manifest is built (and again when one is loaded). The manifest records the seed, the
ratios, the sorted patient ids of each split and a SHA-256 over that content, so a result can
be tied to the exact patients it was trained and tested on.

:func:`manifest_from_assignment` builds a manifest from splits a data source defines itself
(``--split meds``: a MEDS ``metadata/subject_splits.parquet``); such a manifest has
``method="meds"``, ``seed=-1`` (no seed) and the observed ratios. The method is part of the
hash only when it is not ``"random"``, so the manifests (and input hashes) of seeded random
splits are unchanged.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mingle_bench.io import atomic_write_text

SPLITS = ("train", "val", "test")


#: how patients are split: the seeded 7:1:2 shuffle (the default), or the splits a source
#: defines itself (MEDS ``metadata/subject_splits.parquet``)
SPLIT_MODES = ("random", "meds")
DEFAULT_SPLIT = "random"


def _content_hash(seed: int, ratios: Sequence[float], parts: dict[str, Sequence[int]],
                  method: str = DEFAULT_SPLIT) -> str:
    extra = {} if method == DEFAULT_SPLIT else {"method": method}
    body = json.dumps({"seed": int(seed), "ratios": [float(r) for r in ratios],
                       **{k: [int(x) for x in parts[k]] for k in SPLITS}, **extra}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class SplitManifest:
    """Patient ids per split (sorted), the seed and ratios that produced them, and a SHA-256."""

    seed: int
    ratios: tuple[float, float, float]
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    sha256: str = ""
    method: str = DEFAULT_SPLIT  # "random" (seeded shuffle) or the source that defined the split ("meds")

    def __post_init__(self) -> None:
        self.assert_disjoint()
        digest = _content_hash(self.seed, self.ratios, self.parts(), self.method)
        if self.sha256 and self.sha256 != digest:
            raise ValueError("split manifest hash does not match its content (edited or corrupted manifest)")
        object.__setattr__(self, "sha256", digest)

    def parts(self) -> dict[str, tuple[int, ...]]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def assert_disjoint(self) -> None:
        """Raise if a patient is in two splits (or twice in one)."""
        seen: dict[int, str] = {}
        for name, ids in self.parts().items():
            for pid in ids:
                if pid in seen:
                    raise AssertionError(f"patient {pid} is in both the {seen[pid]} and the {name} split")
                seen[pid] = name

    def assignment(self) -> dict[int, str]:
        """Patient id -> split name."""
        return {pid: name for name, ids in self.parts().items() for pid in ids}

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.parts().items()}

    def to_json(self) -> dict:
        """A JSON-serialisable dict (ids as ints)."""
        return {"seed": self.seed, "ratios": list(self.ratios), "sha256": self.sha256,
                **({} if self.method == DEFAULT_SPLIT else {"method": self.method}),
                "sizes": self.sizes(), **{k: list(v) for k, v in self.parts().items()}}

    @classmethod
    def from_json(cls, obj: dict) -> "SplitManifest":
        try:
            return cls(seed=int(obj["seed"]), ratios=tuple(float(r) for r in obj["ratios"]),
                       train=tuple(int(x) for x in obj["train"]), val=tuple(int(x) for x in obj["val"]),
                       test=tuple(int(x) for x in obj["test"]), sha256=str(obj.get("sha256", "")),
                       method=str(obj.get("method", DEFAULT_SPLIT)))
        except KeyError as exc:
            raise ValueError(f"split manifest lacks the field {exc}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the manifest as JSON, atomically."""
        return atomic_write_text(path, json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SplitManifest":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: split manifest not found")
        try:
            obj = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a JSON split manifest ({exc})") from None
        return cls.from_json(obj)


def split_patients(patient_ids: Iterable[int], seed: int, ratios: Sequence[float] = (0.7, 0.1, 0.2)) -> SplitManifest:
    """Shuffle the unique patient ids with ``seed`` and cut them by ``ratios`` (train, val, test).

    Split sizes are ``round(n * ratio)`` for train and validation, the rest for test. The result
    does not depend on the order of ``patient_ids`` (they are sorted before shuffling).
    """
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or any(r < 0 for r in ratios) or not np.isclose(sum(ratios), 1.0):
        raise ValueError(f"ratios must be three non-negative numbers summing to 1, got {ratios}")
    ids = np.unique(np.asarray(list(patient_ids), dtype=np.int64))
    n = len(ids)
    perm = np.random.default_rng(int(seed)).permutation(n)
    n_train = int(round(n * ratios[0]))
    n_val = min(int(round(n * ratios[1])), n - n_train)
    shuffled = ids[perm]
    parts = (shuffled[:n_train], shuffled[n_train:n_train + n_val], shuffled[n_train + n_val:])
    train, val, test = (tuple(int(x) for x in np.sort(p)) for p in parts)
    return SplitManifest(seed=int(seed), ratios=ratios, train=train, val=val, test=test)  # asserts disjointness


def manifest_from_assignment(assignment: dict[int, str], method: str) -> SplitManifest:
    """A manifest of splits a source defines (patient id -> ``train``/``val``/``test``), e.g. the
    MEDS subject splits; ``seed`` is -1 (none) and ``ratios`` are the observed fractions."""
    bad = sorted({s for s in assignment.values() if s not in SPLITS})
    if bad:
        raise ValueError(f"split names must be {', '.join(SPLITS)}; got {bad}")
    parts = {k: tuple(sorted(int(p) for p, s in assignment.items() if s == k)) for k in SPLITS}
    n = max(len(assignment), 1)
    ratios = tuple(round(len(parts[k]) / n, 6) for k in SPLITS)
    return SplitManifest(seed=-1, ratios=ratios, method=method, **parts)  # asserts disjointness
