"""A rich progress bar that shows texts/s (or chunks/s), written to stderr."""
from __future__ import annotations

import contextlib
from typing import Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second, with the task's ``unit`` field as the label."""

    def render(self, task) -> Text:  # noqa: ANN001 - rich's Task
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "texts")
        if speed is None:
            return Text(f"- {unit}/s", style="progress.data.speed")
        return Text(f"{speed:,.1f} {unit}/s", style="progress.data.speed")


class _NullBar:
    def advance(self, n: int = 1) -> None:
        pass


class _Bar:
    def __init__(self, progress: Progress, task_id):
        self._p, self._t = progress, task_id

    def advance(self, n: int = 1) -> None:
        self._p.advance(self._t, n)


@contextlib.contextmanager
def progress_bar(description: str, total: int, unit: str = "texts", enabled: bool = True) -> Iterator:
    """Context manager yielding an object with ``advance(n)``; a no-op when disabled or total is 0."""
    if not enabled or total <= 0:
        yield _NullBar()
        return
    from rich.console import Console

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        RateColumn(), TimeElapsedColumn(), console=Console(stderr=True), transient=False)
    with progress:
        task_id = progress.add_task(description, total=total, unit=unit)
        yield _Bar(progress, task_id)


def short_name(encoder) -> str:  # noqa: ANN001 - any Encoder
    """A short label for progress bars: ``all-MiniLM-L6-v2``, ``text-embedding-ada-002``."""
    return encoder.identity.split("@")[0].split(":", 1)[-1].rsplit("/", 1)[-1]
