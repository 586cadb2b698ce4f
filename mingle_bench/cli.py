"""The ``mingle-bench`` command line.

Each command group lives in its own module under ``mingle_bench.commands`` and exposes
``register(subparsers)``; the module is imported only when the CLI starts, and the
heavy imports happen inside each command's handler, so ``mingle-bench --help`` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMAND_MODULES = (
    "mingle_bench.commands.run_cmd",       # run, tune, reproduce, table
    "mingle_bench.commands.data_cmd",      # data synth, data info
    "mingle_bench.commands.task_cmd",      # task show
    "mingle_bench.commands.encoder_cmd",   # cache info|clear, profile-encoder
    "mingle_bench.commands.kernel_cmd",    # profile-kernel
    "mingle_bench.commands.model_cmd",     # profile-model, models
)


class CLIError(ValueError):
    """An error the user caused; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mingle-bench",
        description="Benchmark MINGLE and baselines on multimodal EHR tasks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


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
        if exc.filename is None:  # raised with a message of its own (e.g. "...: no such results folder")
            return str(exc) or type(exc).__name__
        what = exc.strerror or type(exc).__name__
        paths = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 else "")
        hint = {PermissionError: " (check the folder's permissions, or pick another --out / $MINGLE_CACHE)",
                NotADirectoryError: " (a path component is a file, not a folder)"}.get(type(exc), "")
        return f"{paths}: {what}{hint}"
    if type(exc).__name__ == "SafetensorError":
        return f"a safetensors file is unreadable ({exc})"
    if type(exc).__name__ == "OutOfMemoryException" and type(exc).__module__.startswith(("duckdb", "_duckdb")):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "out of memory"
        return (f"loading the data ran out of DuckDB's memory limit ({first}); raise it with "
                "MINGLE_DUCKDB_MEMORY=4GB (the default is a quarter of this machine's memory, at most 8GB)")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        from mingle_bench.cachelock import for_command  # commands that read the cache share its lock
        with for_command(args, argv):
            rc = args.func(args)
    except Exception as exc:
        # User-facing errors carry (or are given) one line naming the file/row/argument; a
        # traceback would only hide it. --debug (or MINGLE_DEBUG=1) shows the traceback.
        message = error_message(exc)
        if message is None or getattr(args, "debug", False) or os.environ.get("MINGLE_DEBUG"):
            raise
        print(f"mingle-bench {args.command}: error: {message}", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    from mingle_bench.cli import main as _main  # one CLIError class under ``python -m`` too

    sys.exit(_main())
