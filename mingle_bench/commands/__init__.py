"""The CLI's subcommands, one module per group (``run_cmd``: run, tune, reproduce, table;
``data_cmd``, ``task_cmd``, ``model_cmd``, ``encoder_cmd``, ``kernel_cmd``), registered by
:mod:`mingle_bench.cli`. The top of the layering: a command may import anything, and nothing
imports a command. Heavy modules are imported inside the handlers, so ``--help`` stays quick.
"""


class CLIError(ValueError):
    """An error the user caused; printed without a traceback (``mingle-bench <cmd>: error: ...``).

    Defined here, not in :mod:`mingle_bench.cli`, so a command raises it without importing the
    CLI that imports the commands (no import cycle); ``mingle_bench.cli.CLIError`` is this class.
    """


#: the help of every command's ``--cache-dir`` (one name for the flag; :func:`mingle_bench.io.cache_root`)
CACHE_DIR_HELP = "cache root (default $MINGLE_CACHE, else $XDG_CACHE_HOME/mingle-bench, else ~/.cache/mingle-bench)"
