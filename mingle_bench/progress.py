"""Progress display (rich): a bar with an items/s column, and the model x seed cells of a run.

- :func:`progress_bar`: one bar with a rate column, on stderr (embedding texts and notes);
  :func:`short_name` labels it with an encoder's short name;
- :class:`CellProgress`: an overall ``model x seed`` bar plus one line for the current cell
  (step and validation metric), on the console (the benchmark runner).

Both show nothing (and cost nothing) when disabled. When the console is not a terminal (a
Slurm or Ray job log, ``> run.log``), rich draws no live bars, so both print plain lines instead:
a bar every :data:`LOG_EVERY_S` seconds and when it ends, a cell when it starts, at most every
:data:`LOG_EVERY_S` seconds while it trains, and when it ends.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text


def _progress(description: str, info: ProgressColumn, console=None) -> Progress:  # noqa: ANN001 - rich Console
    """``description | bar | n/total | info | elapsed``, kept on screen when finished."""
    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), info, TimeElapsedColumn(),
                    console=console, transient=False)


class RateColumn(ProgressColumn):
    """Items per second, with the task's ``unit`` field as the label."""

    def render(self, task) -> Text:  # noqa: ANN001 - rich's Task
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "texts")
        if speed is None:
            return Text(f"- {unit}/s", style="progress.data.speed")
        return Text(f"{speed:,.1f} {unit}/s", style="progress.data.speed")


#: seconds between plain progress lines when the console is not a terminal
LOG_EVERY_S = 60.0


def _duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class _LogBar:
    """A bar for a non-terminal console: one plain line every ``every`` seconds and at the end."""

    def __init__(self, console, description: str, total: int, unit: str, every: float):  # noqa: ANN001
        self._c, self._d, self._total, self._unit, self._every = console, description, total, unit, every
        self._n, self._t0 = 0, time.monotonic()
        self._last = self._t0

    def advance(self, n: int = 1) -> None:
        self._n += n
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self.line()

    def line(self, end: bool = False) -> None:
        el = time.monotonic() - self._t0
        rate = self._n / el if el > 0 else 0.0
        eta = f", about {_duration((self._total - self._n) / rate)} left" if rate > 0 and not end else ""
        self._c.print(f"{self._d}: {self._n:,.0f}/{self._total:,} {self._unit} ({100 * self._n / self._total:.1f}%), "
                      f"{rate:,.1f} {self._unit}/s, {_duration(el)} elapsed{eta}", highlight=False, markup=False,
                      soft_wrap=True)


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

    console = Console(stderr=True)
    if not console.is_terminal:
        bar = _LogBar(console, description, total, unit, LOG_EVERY_S)
        try:
            yield bar
        finally:
            bar.line(end=True)
        return
    progress = _progress("[bold]{task.description}", RateColumn(), console)
    with progress:
        task_id = progress.add_task(description, total=total, unit=unit)
        yield _Bar(progress, task_id)


def short_name(encoder) -> str:  # noqa: ANN001 - any Encoder
    """A short label for progress bars: ``all-MiniLM-L6-v2``, ``text-embedding-ada-002``."""
    return encoder.identity.split("@")[0].split(":", 1)[-1].rsplit("/", 1)[-1]


class CellProgress:
    """rich progress: overall cells bar + one line for the current cell (step, val metric).

    ``with CellProgress(enabled, total_cells, monitor) as prog``: :meth:`start_cell` returns the
    ``on_eval(step, val_metrics)`` callback for the trainer, :meth:`end_cell` advances the
    overall bar with a summary, :meth:`skip` counts cells finished earlier, :meth:`log` prints
    a line above the bars (plain ``print`` when disabled).

    An executor that trains several cells at once (``mingle_bench.distributed.cells``) passes
    ``concurrent=True`` to :meth:`start_cell`, so each running cell keeps its own line, removes
    it with :meth:`finish_cell`, and shows how many run with :meth:`running`.
    """

    def __init__(self, enabled: bool, total: int, monitor: str):
        self.enabled = enabled
        self.monitor = monitor
        self._p = None
        if enabled:
            self._p = _progress("{task.description}", TextColumn("{task.fields[info]}"))
            self._plain = not self._p.console.is_terminal  # a log file: plain lines (module docstring)
            self._total, self._done = total, 0
            self._overall = self._p.add_task("model x seed", total=total, info="")
            self._cell = None
            self._cells: dict = {}  # (model, seed) -> line, for cells running at once

    def __enter__(self):
        if self._p:
            self._p.start()
        return self

    def __exit__(self, *exc):
        if self._p:
            self._p.stop()

    def log(self, msg: str) -> None:
        if self._p:
            self._p.console.print(msg, highlight=False, soft_wrap=self._plain)
        else:
            print(msg, flush=True)

    def start_cell(self, model: str, seed: int, max_steps: int, concurrent: bool = False
                   ) -> Callable[[int, dict], None]:
        """A line for the cell; ``concurrent``: keep the other cells' lines (until :meth:`finish_cell`)."""
        if not self._p:
            return lambda step, vm: None
        if not concurrent and self._cell is not None:
            self._p.remove_task(self._cell)
        line = self._p.add_task(f"  {model} seed {seed}", total=max_steps, info="")
        if concurrent:
            self._cells[(model, seed)] = line
        else:
            self._cell = line
        if self._plain:
            self.log(f"cell {model} seed {seed}: started")
        last = [time.monotonic()]

        def on_eval(step: int, val_metrics: dict) -> None:
            v = val_metrics.get(self.monitor, math.nan)
            info = f"step {step} val {self.monitor} {v:.4f}" if v == v else f"step {step}"
            self._p.update(line, completed=min(step, max_steps), info=info)
            if self._plain and time.monotonic() - last[0] >= LOG_EVERY_S:
                last[0] = time.monotonic()
                self.log(f"cell {model} seed {seed}: {info} (budget {max_steps})")
        return on_eval

    def finish_cell(self, model: str, seed: int) -> None:
        """Drop the line of a cell started with ``concurrent=True``."""
        line = self._cells.pop((model, seed), None) if self._p else None
        if line is not None:
            self._p.remove_task(line)

    def running(self, n: int) -> None:
        """Show how many cells run at once (a parallel executor); 0 hides the count."""
        if self._p:
            self._p.update(self._overall, description=f"model x seed ({n} running)" if n else "model x seed")

    def end_cell(self, info: str) -> None:
        if self._p:
            self._p.update(self._overall, advance=1, info=info)
            self._done += 1
            if self._plain:
                self.log(f"cell {self._done}/{self._total} done: {info}")

    def skip(self, n: int) -> None:
        if self._p and n:
            self._p.update(self._overall, advance=n)
            self._done += n
