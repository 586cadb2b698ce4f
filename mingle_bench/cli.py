"""The ``mingle-bench`` command line.

Each command group lives in its own module under ``mingle_bench.commands`` and exposes
``register(subparsers)``; the module is imported only when the CLI starts, and the
heavy imports happen inside each command's handler, so ``mingle-bench --help`` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "mingle_bench.commands.run_cmd",       # run, tune, reproduce, table
    "mingle_bench.commands.data_cmd",      # data synth, data info
    "mingle_bench.commands.task_cmd",      # task show
    "mingle_bench.commands.encoder_cmd",   # cache info|clear, profile-encoder
    "mingle_bench.commands.kernel_cmd",    # profile-kernel
    "mingle_bench.commands.model_cmd",     # profile-model, models
)


class CLIError(Exception):
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except (CLIError, FileNotFoundError, ValueError) as exc:
        # User-facing errors (bad paths, bad arguments, malformed data) carry their own
        # message naming the file/row/argument; a traceback would only hide it.
        if getattr(args, "debug", False):
            raise
        print(f"mingle-bench {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
