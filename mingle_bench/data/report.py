"""The load report: what a source read, kept, repaired and skipped, with reasons.

Every row a loader does not carry into the cohort is counted under a reason, so nothing
is lost silently. The report is stored in ``Cohort.report`` (and thus in the cohort's
``meta.json``), written as ``load_report.json`` next to the cached cohort, and printed.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mingle_bench.io import atomic_write_text


@dataclass
class LoadReport:
    source: str
    read: dict[str, int] = field(default_factory=dict)       # table -> rows read from the file
    kept: dict[str, int] = field(default_factory=dict)       # cohort table -> rows kept
    skipped: dict[str, int] = field(default_factory=dict)    # reason -> rows skipped
    repaired: dict[str, int] = field(default_factory=dict)   # reason -> values repaired and kept
    info: dict[str, Any] = field(default_factory=dict)       # other facts (age capping, files)

    def skip(self, reason: str, n: int) -> None:
        if n:
            self.skipped[reason] = self.skipped.get(reason, 0) + int(n)

    def repair(self, reason: str, n: int) -> None:
        if n:
            self.repaired[reason] = self.repaired.get(reason, 0) + int(n)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LoadReport":
        return cls(**{k: d.get(k, {}) if k != "source" else d.get(k, "") for k in
                      ("source", "read", "kept", "skipped", "repaired", "info")})

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str))

    def render(self) -> str:
        """Plain-text report (tabulate) for the terminal."""
        from tabulate import tabulate

        parts = [f"Load report: {self.source}"]
        if self.read:
            parts.append(tabulate(sorted(self.read.items()), headers=["table read", "rows"], intfmt=","))
        if self.kept:
            parts.append(tabulate(sorted(self.kept.items()), headers=["cohort table", "rows kept"], intfmt=","))
        if self.skipped:
            parts.append(tabulate(sorted(self.skipped.items()), headers=["skipped (reason)", "rows"], intfmt=","))
        else:
            parts.append("skipped: nothing")
        if self.repaired:
            parts.append(tabulate(sorted(self.repaired.items()), headers=["repaired and kept", "count"], intfmt=","))
        for k, v in sorted(self.info.items()):
            if k not in ("files", "repaired_files"):
                parts.append(f"{k}: {v}")
        return "\n\n".join(parts)
