"""``mingle-bench run | tune | reproduce | table``: the benchmark commands users type.

Heavy modules (torch, the pipeline, Optuna, matplotlib) are imported inside the handlers.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Iterator

from mingle_bench import runspec as RS

DEFAULT_DATA = RS.default("data")
_NOT_IN_COMMAND = {"func", "command", "debug", "quiet", "json", "_defaults", "_name"}


def _remember_defaults(p: argparse.ArgumentParser, name: str) -> None:
    """Store the parser's defaults so a handler can rebuild the command the user typed."""
    defaults = {a.dest: a.default for a in p._actions if a.dest != "help"}
    p.set_defaults(_defaults=defaults, _name=name)


def command_of(args) -> str:
    """``mingle-bench <cmd> ...`` with the options that differ from their defaults (plus --task)."""
    import shlex

    parts = ["mingle-bench", args._name]
    positional = [a for a in ("path",) if hasattr(args, a)]
    parts += [shlex.quote(str(getattr(args, a))) for a in positional]
    for key, value in vars(args).items():
        if key in _NOT_IN_COMMAND or key in positional:
            continue
        if value == args._defaults.get(key) and key != "task":
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts += [flag] if value else []
        elif isinstance(value, list):
            for v in value:
                parts += [flag, shlex.quote(str(v))]
        elif value is not None:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def _apply_meds_config(args) -> None:
    """Fold ``--meds-config FILE`` into ``--data`` (``meds:DIR;config=FILE``); an error unless the data is MEDS."""
    from mingle_bench.data.meds_mapping import with_meds_config

    if getattr(args, "meds_config", None):
        args.data = with_meds_config(args.data, args.meds_config)


def _check_budget_args(args) -> None:
    """The argument checks argparse cannot do; a bad value is one line naming the flag."""
    if getattr(args, "epochs", None) is not None:
        raise ValueError("--epochs was replaced by --max-steps: budgets are counted in optimiser steps, the same "
                         "for every model (see `mingle-bench run --help`)")
    RS.check_minimums(args, args._name)  # each field's minimum, from the run specification
    timeout = getattr(args, "timeout", None)
    if timeout is not None and not timeout > 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {timeout}")


def register(sub) -> None:
    from mingle_bench.tracking import TRACKERS

    p = sub.add_parser("run", help="train and evaluate models x seeds on one task; write tables and plots",
                       description="Train every model x seed on one seeded patient-level split with the same "
                                   "budget in optimiser steps and early stopping on validation; write "
                                   "<out>/<task>/<data-id>/ and check every cell against the committed reference. "
                                   "A rerun resumes: finished cells with the same inputs are skipped.")
    groups = RS.add_arguments(p, "run")  # every option, grouped by stage: mingle_bench/runspec.py
    groups["output"].add_argument("--tracker", default="none", choices=TRACKERS,
                                  help="log every cell's parameters, live validation curve and test metrics to mlflow "
                                       "(<folder>/mlruns/mlflow.db) or tensorboard (<folder>/tensorboard/); default "
                                       "none (docs/runner.md)")
    p.set_defaults(func=_run)
    _remember_defaults(p, "run")

    t = sub.add_parser("tune", help="Optuna hyperparameter search for one model on one task (validation only)",
                       description="TPE (seeded, multivariate, constant liar) with MedianPruner on the per-evaluation "
                                   "validation metric. Several processes or machines can share one study through "
                                   "--storage; a killed study resumes. Every option that shapes the inputs is a "
                                   "study attribute: a worker with other inputs is refused.")
    RS.add_arguments(t, "tune")
    t.set_defaults(func=_tune)
    _remember_defaults(t, "tune")

    r = sub.add_parser("reproduce", help="regenerate the paper's tables (main, ablation, relative improvement)",
                       description="Main table (MINGLE vs baselines on phenotype and cvd), ablation table and the "
                                   "relative-improvement figure, beside the paper's published numbers; written "
                                   "under <out>/paper/<data-id>/ (default runs/paper/...; --out results regenerates "
                                   "the committed reference).")
    RS.add_arguments(r, "reproduce")
    r.set_defaults(func=_reproduce)
    _remember_defaults(r, "reproduce")

    tb = sub.add_parser("table", help="re-render a results folder as markdown, LaTeX or CSV")
    tb.add_argument("path", help="a results/<task>/<data-id>/ folder (or results/paper/<data-id>/)")
    tb.add_argument("--format", default="md", choices=("md", "latex", "csv"))
    tb.add_argument("--write", action="store_true",
                    help="also rewrite the folder's files from its finished cells (tables, comparison, curves)")
    tb.add_argument("--json", action="store_true",
                    help="print the folder's rows (mean, std per metric and model) and comparison as JSON")
    tb.set_defaults(func=_table)


@contextlib.contextmanager
def _stdout_for(args) -> Iterator[None]:
    """Under ``--json`` stdout carries the one JSON document: anything else the command prints
    (tables, reference lines, a library's chatter) goes to stderr meanwhile."""
    if getattr(args, "json", False):
        with contextlib.redirect_stdout(sys.stderr):
            yield
    else:
        yield


def _print_json(obj) -> None:
    from mingle_bench.results import clean_nan, json_default

    print(json.dumps(clean_nan(obj), indent=2, default=json_default))


def _check(args, command: str) -> None:
    """The argument checks argparse cannot do, before any data, folder or bar exists."""
    _check_budget_args(args)
    RS.check_choices(args, command)
    _apply_meds_config(args)


def run_summary(s) -> dict:
    """The ``run --json`` document of one results folder: cells, rows, comparison, reference check."""
    ref = s.reference or {}
    return {"folder": str(s.folder), "trained": [list(c) for c in s.trained], "resumed": [list(c) for c in s.skipped],
            "failed": [{k: f.get(k) for k in ("model", "seed", "kind", "error")} for f in s.failed],
            "rows": s.rows, "comparison": s.comparison,
            "reference": {k: v for k, v in ref.items() if k != "cells"} if ref else None,
            "files": [str(f) for f in s.files]}


def _run(args) -> int:
    from mingle_bench import runner
    from mingle_bench.report.reference import reference_lines
    from mingle_bench.report.finalize import comparison_sentence

    _check(args, "run")
    kw = RS.values(args, "run")
    kw["seeds"] = runner.parse_seeds(kw["seeds"])
    if kw["split_seeds"] is not None:
        kw["split_seeds"] = runner.parse_seeds(kw["split_seeds"], flag="--split-seeds")
    cfg = runner.RunConfig(**kw, progress=not args.quiet, command=command_of(args), tracker=args.tracker)
    if cfg.split_seeds is not None:
        return _run_splits(cfg, args)
    with _stdout_for(args):
        s = runner.run_benchmark(cfg)
    if args.json:
        _print_json(run_summary(s))
        return 1 if s.failed else 0
    print((s.folder / "table.md").read_text(encoding="utf-8") if (s.folder / "table.md").exists() else "")
    sentence = comparison_sentence(s.comparison)
    if sentence:
        print(sentence)
    print(runner.summary_line(s))
    for line in reference_lines(s.reference):
        print(line)
    return 1 if s.failed else 0


def _run_splits(cfg, args) -> int:
    from mingle_bench import runner
    from mingle_bench.report.reference import reference_lines

    with _stdout_for(args):
        res = runner.run_split_seeds(cfg)
    if args.json:
        _print_json({"pooled_folder": str(res.pooled_folder), "pooled": res.pooled,
                     "runs": [run_summary(s) for s in res.runs]})
        return 1 if any(s.failed for s in res.runs) else 0
    print((res.pooled_folder / "table.md").read_text(encoding="utf-8"))
    for s in res.runs:
        print(runner.summary_line(s))
        for line in reference_lines(s.reference):
            print(line)
    print(f"Pooled over {len(res.runs)} splits in {res.pooled_folder}/ (table.md, pooled.json)")
    return 1 if any(s.failed for s in res.runs) else 0


def _tune(args) -> int:
    from mingle_bench import tuning

    _check(args, "tune")
    kw = RS.values(args, "tune")
    split_seeds = kw.pop("split_seeds")
    with _stdout_for(args):
        if split_seeds is None:
            results = [tuning.tune(**kw, progress=not args.quiet, command=command_of(args))]
        else:
            results = tuning.tune_split_seeds(split_seeds, **kw, progress=not args.quiet, command=command_of(args))
    if args.json:
        out = [{"study_name": res.study_name, "storage": res.storage, "monitor": res.monitor,
                "best_value": res.best_value, "best_params": res.best_params, "eval_every": res.eval_every,
                "hparams": res.hparams,
                "trials": res.counts, "path": None if res.path is None else str(res.path)} for res in results]
        _print_json(out[0] if split_seeds is None else {"studies": out})
        return 0
    for res in results:
        print(tuning.summary_line(res))
    return 0


def _reproduce(args) -> int:
    from mingle_bench import reproduce, runner

    _check(args, "reproduce")
    kw = RS.values(args, "reproduce")
    kw["seeds"] = runner.parse_seeds(kw["seeds"])
    kw["tasks"] = [t for t in kw["tasks"].split(",") if t]
    kw["models"] = kw["models"].split(",") if kw["models"] else None
    with _stdout_for(args):
        res = reproduce.reproduce(**kw, progress=not args.quiet, command=command_of(args))
    if args.json:
        _print_json({"folder": str(res.folder), "files": [str(f) for f in res.files],
                     "task_folders": {t: str(f) for t, f in res.task_folders.items()},
                     "failed": [{k: f.get(k) for k in ("task", "model", "seed", "kind", "error")} for f in res.failed],
                     "paper": _read_json(res.folder / "paper.json")})
        return 1 if res.failed else 0
    print(res.main_md)
    print(reproduce.summary_line(res))
    return 1 if res.failed else 0


def _read_json(path):
    from mingle_bench.results import read_json

    return read_json(path) if path.exists() else None


def _table(args) -> int:
    from pathlib import Path

    from mingle_bench.report import tables

    folder = Path(args.path)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such results folder")
    if (folder / "paper.json").exists():
        from mingle_bench.report.paper import render_paper

        text = render_paper(folder, args.format)
    else:
        text = tables.render_run(folder, args.format)
    if args.write and not (folder / "paper.json").exists():
        from mingle_bench import results
        from mingle_bench.pipeline import DEFAULT_MONITOR
        from mingle_bench.report.finalize import finalize

        cfg = results.read_json_object(folder / results.CONFIG_FILE)
        with results.folder_lock(folder):  # not while a run writes the folder
            finalize(folder, cfg.get("monitor", DEFAULT_MONITOR))
        text = tables.render_run(folder, args.format)
    elif args.write:
        from mingle_bench.report.paper import write_paper

        write_paper(folder)
    if args.json:
        _print_json(_table_document(folder))
        return 0
    print(text, end="")
    return 0


def _table_document(folder) -> dict:
    """``table --json``: a paper folder's paper.json, or a run folder's rows (mean and std per metric
    and model over its cells), its comparison and the keys of its configuration."""
    from mingle_bench import results
    from mingle_bench.report import tables

    if (folder / "paper.json").exists():
        return {"folder": str(folder), "paper": results.read_json(folder / "paper.json")}
    config = results.read_json_object(folder / results.CONFIG_FILE)
    rows = tables.aggregate(results.load_runs(folder), tables.METRIC_NAMES, order=config.get("models", ()),
                            folder=folder, split_seed=config.get("split_seed"))
    comp = folder / results.COMPARISON_FILE
    return {"folder": str(folder), "config": {k: config.get(k) for k in (*RS.FINGERPRINT_KEYS, "fingerprint")
                                              if k in config},
            "rows": rows, "comparison": results.read_json(comp) if comp.exists() else None}
