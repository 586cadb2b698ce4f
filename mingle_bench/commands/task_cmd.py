"""Placeholder: this command group is not implemented yet."""
from __future__ import annotations


def register(sub) -> None:  # noqa: D401 - filled in by its owner
    return None
