"""The ``mingle-bench`` command line.

Each command group lives in its own module under ``mingle_bench.commands`` and exposes
``register(subparsers)``; the module is imported only when the CLI starts, and the
heavy imports happen inside each command's handler, so ``mingle-bench --help`` is fast.

Exit paths (:func:`main`): a user-facing error is one line, ``mingle-bench <cmd>: error: ...``
(status 1, :func:`error_message`); Ctrl-C is one line, ``mingle-bench <cmd>: interrupted; ...``
(status 130, :func:`is_interrupt`; a second Ctrl-C stops at once); a stdout whose reader has gone
(``... | head -1``) ends quietly with status 141.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import signal
import sys
from typing import Iterator

from mingle_bench.commands import CLIError  # re-exported here: the commands raise it without importing the CLI

COMMAND_MODULES = (
    "mingle_bench.commands.run_cmd",       # run, tune, reproduce, table
    "mingle_bench.commands.data_cmd",      # data synth, data info
    "mingle_bench.commands.task_cmd",      # task show
    "mingle_bench.commands.encoder_cmd",   # cache info|clear, profile-encoder
    "mingle_bench.commands.kernel_cmd",    # profile-kernel
    "mingle_bench.commands.model_cmd",     # profile-model, models
    "mingle_bench.commands.predict_cmd",   # predict, evaluate
    "mingle_bench.commands.probe_cmd",     # encoder probe
)


def build_parser() -> argparse.ArgumentParser:
    from mingle_bench import __version__

    parser = argparse.ArgumentParser(
        prog="mingle-bench",
        description="Benchmark MINGLE and baselines on multimodal EHR tasks.",
    )
    parser.add_argument("--version", action="version", version=f"mingle-bench {__version__}")
    parser.add_argument("--plugin", action="append", default=[], metavar="PATH.py|MODULE",
                        help="import a module that registers models, tasks, data sources or encoders before the "
                             "command runs; repeatable, also after the command (docs/extending.md)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _add_completion(sub, parser)
    return parser


#: the shells ``mingle-bench completion`` writes a script for (shtab's)
COMPLETION_SHELLS = ("bash", "zsh", "tcsh")


def _add_completion(sub, parser: argparse.ArgumentParser) -> None:
    """``mingle-bench completion bash|zsh|tcsh``: print a shell completion script (shtab) for every
    command and flag, generated from this parser."""
    c = sub.add_parser("completion", help="print a shell completion script (bash, zsh or tcsh)",
                       description="Print a tab-completion script for every command and flag. Bash: "
                                   "`mingle-bench completion bash > ~/.local/share/bash-completion/completions/"
                                   "mingle-bench`; zsh: `mingle-bench completion zsh > ~/.zfunc/_mingle-bench` (with "
                                   "~/.zfunc in $fpath before compinit).")
    c.add_argument("shell", choices=COMPLETION_SHELLS, help="the shell to complete in")

    def _print_script(args: argparse.Namespace) -> int:
        import shtab

        print(shtab.complete(parser, shell=args.shell), end="")
        return 0

    c.set_defaults(func=_print_script)


def error_message(exc: BaseException) -> str | None:
    """The one-line message of a user-facing error, or ``None`` for a bug (shown with a traceback).

    The one place that maps exceptions to messages: ``CLIError``/``ValueError`` (bad arguments,
    malformed data, a busy results folder: they carry their own message naming the file, row or
    flag; every JSON file is read through a function that names it, e.g. ``results.read_json``),
    ``OSError`` subclasses (naming the path: a read-only folder, ``--out`` pointing at a file, a
    full disk) and safetensors errors.
    """
    if isinstance(exc, (CLIError, ValueError)):
        return str(exc)
    if isinstance(exc, OSError):
        if exc.filename is None and exc.errno == errno.ENOSPC:  # a write without a path (e.g. a flush)
            return f"{exc.strerror or 'No space left on device'} (free some space, or pick another --out / $MINGLE_CACHE)"
        if exc.filename is None:  # raised with a message of its own (e.g. "...: no such results folder")
            return str(exc) or type(exc).__name__
        what = exc.strerror or type(exc).__name__
        paths = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 else "")
        hint = {PermissionError: " (check the folder's permissions, or pick another --out / $MINGLE_CACHE)",
                NotADirectoryError: " (a path component is a file, not a folder)"}.get(type(exc), "")
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = " (free some space, or pick another --out / $MINGLE_CACHE)"
        return f"{paths}: {what}{hint}"
    if type(exc).__name__ == "SafetensorError":
        return f"a safetensors file is unreadable ({exc})"
    if type(exc).__name__ == "OutOfMemoryException" and type(exc).__module__.startswith(("duckdb", "_duckdb")):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "out of memory"
        return (f"loading the data ran out of DuckDB's memory limit ({first}); raise it with "
                "MINGLE_DUCKDB_MEMORY=4GB (the default is a quarter of this machine's memory, at most 8GB)")
    return None


#: what survives an interrupt, per command (the message after "interrupted; ")
_AFTER_INTERRUPT = {
    "run": "finished cells are saved, rerun the same command to resume",
    "reproduce": "finished cells are saved, rerun the same command to resume",
    "tune": "finished trials are in the study, rerun the same command to resume it",
    "data synth": "the tables written to --out so far are incomplete, rerun the same command to write them again",
}
_AFTER_INTERRUPT_DEFAULT = "nothing half-written is kept (caches and results are written atomically), rerun the same command"
#: the exit status of a command stopped by Ctrl-C (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = 130
#: the exit status when stdout was closed early (128 + SIGPIPE, as `git log | head -1` gives)
EXIT_BROKEN_PIPE = 141


def is_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was raised while handling, a Ctrl-C: ``KeyboardInterrupt``, or DuckDB's
    ``InterruptException`` / ``RuntimeError: Query interrupted`` (DuckDB turns the SIGINT it sees
    during a query into those). Wrapped errors count too (``raise ValueError(...) from None``
    keeps the interrupt as ``__context__``)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, KeyboardInterrupt):
            return True
        kind = type(cur)
        if kind.__name__ == "InterruptException" and kind.__module__.startswith(("duckdb", "_duckdb")):
            return True
        if isinstance(cur, RuntimeError) and str(cur).strip().startswith("Query interrupted"):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def interrupt_message(args: argparse.Namespace, exc: BaseException) -> str:
    """The one line printed after Ctrl-C: ``interrupted; <what is kept and how to resume>``. A
    ``KeyboardInterrupt`` raised with a message of its own (``tune`` names its saved file) keeps it."""
    own = str(exc).strip() if isinstance(exc, KeyboardInterrupt) else ""
    if own:
        return own
    sub = next((getattr(args, k) for k in ("data_command", "cache_command", "task_command")
                if getattr(args, k, None)), None)
    key = f"{args.command} {sub}" if sub else str(args.command)
    return "interrupted; " + _AFTER_INTERRUPT.get(key, _AFTER_INTERRUPT.get(str(args.command), _AFTER_INTERRUPT_DEFAULT))


@contextlib.contextmanager
def second_interrupt_aborts() -> Iterator[None]:
    """The first Ctrl-C raises ``KeyboardInterrupt`` as usual (the command unwinds, saves what it
    can, and :func:`main` prints one line); a second one while that runs exits at once with 130.
    A no-op off the main thread or where SIGINT is ignored (a background job); the previous
    handler is restored afterwards."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield
        return

    def again(signum, frame):  # noqa: ARG001
        os.write(2, b"\nmingle-bench: interrupted again; stopping now\n")
        os._exit(EXIT_INTERRUPTED)

    def first(signum, frame):  # noqa: ARG001
        signal.signal(signal.SIGINT, again)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stdout_is_broken() -> bool:
    """Whether stdout's reader has gone (``mingle-bench models --json | head -1``): a pipe without
    a reader polls as an error. If so, stdout is pointed at /dev/null so the interpreter's last
    flush stays quiet."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        broken = any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no real file descriptor (captured in tests)
        return False
    if broken:
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
    return broken


def main(argv: list[str] | None = None) -> int:
    """Run one ``mingle-bench`` command; returns its exit status (0 success, 1 failure, 2 usage,
    130 interrupted by Ctrl-C, 141 stdout closed early)."""
    from mingle_bench import mathmode
    from mingle_bench.plugins import PluginError, load_plugin, take_plugin_args

    try:  # before anything imports torch: the math mode pins the CPU kernels (mingle_bench/mathmode.py)
        mode, argv = mathmode.take_from_argv(list(sys.argv[1:] if argv is None else argv))
        mathmode.apply(mode)
    except mathmode.MathModeError as exc:
        print(f"mingle-bench: error: {exc}", file=sys.stderr)
        return 2
    try:  # --plugin modules register their names before the parsers list the registries' choices
        plugins, argv = take_plugin_args(argv)
        for spec in plugins:
            load_plugin(spec)
    except PluginError as exc:
        print(f"mingle-bench: error: {exc}", file=sys.stderr)
        return 1
    parser = build_parser()
    args = parser.parse_args(argv)
    args.plugin = plugins  # recorded in the command line of the results (run_cmd.command_of)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = getattr(args, "debug", False) or bool(os.environ.get("MINGLE_DEBUG"))
    try:
        from mingle_bench.cachelock import for_command  # commands that read the cache share its lock
        with second_interrupt_aborts(), for_command(args, argv):
            rc = args.func(args)
            sys.stdout.flush()  # a closed reader shows here, not in the interpreter's last flush
    except BrokenPipeError:
        if _stdout_is_broken():  # the reader of our output went away: nothing left to say
            return EXIT_BROKEN_PIPE
        raise
    except (KeyboardInterrupt, Exception) as exc:
        if is_interrupt(exc):
            if debug:
                raise
            print(f"mingle-bench {args.command}: {interrupt_message(args, exc)}", file=sys.stderr)
            return EXIT_INTERRUPTED
        if isinstance(exc, KeyboardInterrupt):
            raise
        # User-facing errors carry (or are given) one line naming the file/row/argument; a
        # traceback would only hide it. --debug (or MINGLE_DEBUG=1) shows the traceback.
        message = error_message(exc)
        if message is None or debug:
            raise
        print(f"mingle-bench {args.command}: error: {message}", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    from mingle_bench.cli import main as _main  # one CLIError class under ``python -m`` too

    sys.exit(_main())
