"""Progress display (rich): a bar with an items/s column, and the model x seed cells of a run.

- :func:`progress_bar`: one bar with a rate column, on stderr (embedding texts and notes);
  :func:`short_name` labels it with an encoder's short name;
- :class:`CellProgress`: the stage a run is in (load data, features and embeddings, training),
  then an overall ``model x seed`` bar plus one line for the current cell (step and validation
  metric; no step bar for a solver-fitted model), on stderr (the benchmark runner).

Everything goes to **stderr**: stdout is for results (``mingle-bench run ... > table.md`` holds
only the table and the summary lines). Both show nothing (and cost nothing) when disabled
(``--quiet``). When stderr is not a terminal (a Slurm or Ray job log, ``2> run.log``), no live
display is drawn; both print plain lines instead: a bar every :data:`LOG_EVERY_S` seconds and
when it ends, a stage when it starts, a cell when it starts, at most every :data:`LOG_EVERY_S`
seconds while it trains, and when it ends.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, Collection, Iterator

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
        self._n, self._skipped, self._t0 = 0, 0, time.monotonic()
        self._last = self._t0

    def advance(self, n: int = 1) -> None:
        self._n += n
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self.line()

    def skip(self, n: int = 1) -> None:
        """Items done without work (cache hits): counted, but not in the rate or the time left."""
        self._skipped += n
        self.advance(n)

    def line(self, end: bool = False) -> None:
        el = time.monotonic() - self._t0
        rate = (self._n - self._skipped) / el if el > 0 else 0.0
        eta = f", about {_duration((self._total - self._n) / rate)} left" if rate > 0 and not end else ""
        cached = f", {self._skipped:,.0f} from the cache" if self._skipped else ""
        self._c.print(f"{self._d}: {self._n:,.0f}/{self._total:,} {self._unit} ({100 * self._n / self._total:.1f}%){cached}, "
                      f"{rate:,.1f} {self._unit}/s, {_duration(el)} elapsed{eta}", highlight=False, markup=False,
                      soft_wrap=True)


class _NullBar:
    def advance(self, n: int = 1) -> None:
        pass

    def skip(self, n: int = 1) -> None:
        pass


class _Bar:
    def __init__(self, progress: Progress, task_id):
        self._p, self._t = progress, task_id

    def advance(self, n: int = 1) -> None:
        self._p.advance(self._t, n)

    def skip(self, n: int = 1) -> None:  # rich's speed is over its last 30 s: early cache hits leave it soon
        self._p.advance(self._t, n)


class _SharedBar:
    """A bar drawn as one more line of the run's live display (:class:`CellProgress`), so two live
    displays never fight over the terminal; its info column shows the rate."""

    def __init__(self, progress: Progress, task_id, unit: str):
        self._p, self._t, self._unit = progress, task_id, unit
        self._n, self._skipped, self._t0 = 0, 0, time.monotonic()

    def advance(self, n: int = 1) -> None:
        self._n += n
        el = time.monotonic() - self._t0
        done = self._n - self._skipped
        self._p.update(self._t, advance=n, info=f"{done / el:,.1f} {self._unit}/s" if el > 0 else "")

    def skip(self, n: int = 1) -> None:
        """Items done without work (cache hits): counted, not in the rate."""
        self._skipped += n
        self.advance(n)


#: the live display of the :class:`CellProgress` now on screen (at most one), which bars join
_LIVE: list[Progress] = []


@contextlib.contextmanager
def progress_bar(description: str, total: int, unit: str = "texts", enabled: bool = True) -> Iterator:
    """Context manager yielding an object with ``advance(n)`` and ``skip(n)`` (items done without
    work, such as cache hits: counted, kept out of the rate and the time left); a no-op when
    disabled or total is 0.
    Inside a run's live display the bar is one more line of it (removed when done)."""
    if not enabled or total <= 0:
        yield _NullBar()
        return
    if _LIVE:
        live = _LIVE[-1]
        task_id = live.add_task(f"  {description}", total=total, info="", nobar=False)
        try:
            yield _SharedBar(live, task_id, unit)
        finally:
            live.remove_task(task_id)
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


class _MaybeBar(BarColumn):
    """The bar, left blank for a line without steps (a stage label, a solver-fitted model)."""

    def render(self, task):  # noqa: ANN001, ANN201 - rich's Task and renderable
        return Text("") if task.fields.get("nobar") else super().render(task)


class _MaybeCount(MofNCompleteColumn):
    """``n/total``, left blank like :class:`_MaybeBar`."""

    def render(self, task) -> Text:  # noqa: ANN001 - rich's Task
        return Text("") if task.fields.get("nobar") else super().render(task)


#: the overall line's label while cells train
TRAINING = "training model x seed"


class CellProgress:
    """The benchmark runner's display, on **stderr** (stdout carries only results).

    ``with CellProgress(enabled, total_cells, monitor, solver_models) as prog``: :meth:`stage`
    names the stage the run is in (``load data``, ``features and embeddings``; the overall line
    shows it instead of a cell count until :meth:`stage` ``(TRAINING)``), :meth:`start_cell`
    returns the ``on_eval(step, val_metrics)`` callback for the trainer, :meth:`end_cell`
    advances the overall bar with a summary, :meth:`skip` counts cells finished earlier, and
    :meth:`log` prints a line (a warning, a failure) above the bars. A model in
    ``solver_models`` (fitted by its solver, ``steps_run`` 0) gets a line without a step bar.

    Three modes: a live display when stderr is a terminal; plain lines when it is not (a Slurm
    or Ray job log, ``2> run.log``): a stage when it starts, a cell when it starts, at most every
    :data:`LOG_EVERY_S` seconds while it trains, and when it ends; with ``enabled=False``
    (``--quiet``) no progress at all, only :meth:`log` lines.

    An executor that trains several cells at once (``mingle_bench.distributed.cells``) passes
    ``concurrent=True`` to :meth:`start_cell`, so each running cell keeps its own line, removes
    it with :meth:`finish_cell`, and shows how many run with :meth:`running`.
    """

    def __init__(self, enabled: bool, total: int, monitor: str, solver_models: Collection[str] = ()):
        from rich.console import Console

        self.enabled = enabled
        self.monitor = monitor
        self._solver = frozenset(solver_models)
        self._console = Console(stderr=True)
        self._plain = enabled and not self._console.is_terminal  # a log file: plain lines (module docstring)
        self._p = None  # the live display (a terminal only)
        self._total, self._done = total, 0
        self._stage = ""
        self._cell = None
        self._cells: dict = {}  # (model, seed) -> line, for cells running at once
        if enabled and not self._plain:
            self._p = Progress(TextColumn("{task.description}"), _MaybeBar(), _MaybeCount(),
                               TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                               console=self._console, transient=False)
            self._overall = self._p.add_task(TRAINING, total=total, info="", nobar=False)

    def __enter__(self):
        if self._p:
            self._p.start()
            _LIVE.append(self._p)  # bars opened meanwhile (embedding) join this display
        return self

    def __exit__(self, *exc):
        if self._p:
            if self._p in _LIVE:
                _LIVE.remove(self._p)
            self._p.stop()

    def log(self, msg: str) -> None:
        """A line on stderr (rich markup; plain text off a terminal), shown even with ``enabled=False``."""
        self._console.print(msg, highlight=False, soft_wrap=not self._console.is_terminal)

    def stage(self, label: str) -> None:
        """Name the stage the run is in; :data:`TRAINING` shows the cell count from then on."""
        self._stage = label
        if self._p:
            training = label == TRAINING
            self._p.update(self._overall, description=label, nobar=not training, info="" if training else "...")
        elif self._plain:
            self.log(f"stage: {label}" + (f" ({self._total} cells)" if label == TRAINING else ""))

    def start_cell(self, model: str, seed: int, max_steps: int, concurrent: bool = False
                   ) -> Callable[[int, dict], None]:
        """A line for the cell; ``concurrent``: keep the other cells' lines (until :meth:`finish_cell`)."""
        if not self.enabled:
            return lambda step, vm: None
        if self._stage != TRAINING:
            self.stage(TRAINING)
        solver = model in self._solver
        if self._plain:
            self.log(f"cell {model} seed {seed}: started" + (" (fitted by its solver)" if solver else ""))
            last = [time.monotonic()]

            def log_eval(step: int, val_metrics: dict) -> None:
                if time.monotonic() - last[0] >= LOG_EVERY_S:
                    last[0] = time.monotonic()
                    self.log(f"cell {model} seed {seed}: {self._info(step, val_metrics)} (budget {max_steps})")
            return log_eval
        if not concurrent and self._cell is not None:
            self._p.remove_task(self._cell)
        line = self._p.add_task(f"  {model} seed {seed}", total=max_steps, nobar=solver,
                                info="fitting (solver)" if solver else "")
        if concurrent:
            self._cells[(model, seed)] = line
        else:
            self._cell = line

        def on_eval(step: int, val_metrics: dict) -> None:
            self._p.update(line, completed=min(step, max_steps), info=self._info(step, val_metrics))
        return on_eval

    def _info(self, step: int, val_metrics: dict) -> str:
        v = val_metrics.get(self.monitor, math.nan)
        return f"step {step} val {self.monitor} {v:.4f}" if v == v else f"step {step}"

    def finish_cell(self, model: str, seed: int) -> None:
        """Drop the line of a cell started with ``concurrent=True``."""
        line = self._cells.pop((model, seed), None) if self._p else None
        if line is not None:
            self._p.remove_task(line)

    def running(self, n: int) -> None:
        """Show how many cells run at once (a parallel executor); 0 hides the count."""
        if self._p:
            self._p.update(self._overall, description=f"{TRAINING} ({n} running)" if n else TRAINING)

    def end_cell(self, info: str) -> None:
        if not self.enabled:
            return
        self._done += 1
        if self._p:
            self._p.update(self._overall, advance=1, info=info)
        else:
            self.log(f"cell {self._done}/{self._total} done: {info}")

    def skip(self, n: int) -> None:
        if self.enabled and n:
            self._done += n
            if self._p:
                self._p.update(self._overall, advance=n)
