"""``mingle-bench run | tune | reproduce | table``: the benchmark commands users type.

Heavy modules (torch, the pipeline, Optuna, matplotlib) are imported inside the handlers.
"""
from __future__ import annotations

import argparse

from mingle_bench.encoders.precision import DEFAULT_PRECISION, PRECISIONS

DEFAULT_DATA = "synthetic"
_NOT_IN_COMMAND = {"func", "command", "debug", "quiet", "_defaults", "_name"}


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


def _add_common(p: argparse.ArgumentParser, *, task: bool = True) -> None:
    if task:
        p.add_argument("--task", default="mortality", help="task name (mortality, phenotype, readmission, los, cvd)")
    p.add_argument("--data", default=DEFAULT_DATA,
                   help="data source: synthetic[:small|default|mimic] (default: synthetic, generated on first use), "
                        "mimic3:DIR, mimic4:DIR or meds:DIR (a MEDS folder; meds:DIR;config=FILE or --meds-config "
                        "for a mapping file)")
    p.add_argument("--meds-config", default=None, metavar="FILE",
                   help="with --data meds:DIR: a JSON or YAML file overriding the MEDS code mapping "
                        "(mingle_bench/data/meds_mapping.py lists the keys)")
    p.add_argument("--device", default="auto", help="auto (cuda when visible), cpu or cuda[:N]")
    p.add_argument("--encoder", default="default",
                   help="text encoder for concept/note embeddings: default (local MiniLM), hf:PATH, openai:MODEL, "
                        "or none")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the patient-level 7:1:2 split (default 0)")
    p.add_argument("--split", default="random", choices=("random", "meds"),
                   help="random (default): the seeded patient-level 7:1:2 split; meds: the MEDS subject splits of "
                        "a meds:DIR cohort (train -> train, tuning -> validation, held_out -> test; results go to "
                        "<data-id>-meds-split)")
    p.add_argument("--max-notes-per-visit", type=int, default=None, help="cap on notes embedded per visit")
    p.add_argument("--max-tokens", type=int, default=None, help="cap on tokens embedded per note")
    p.add_argument("--out", default="runs",
                   help="results root (default: runs/; the committed reference results live in results/)")
    p.add_argument("--notes", default="default", choices=("default", "in-stay"),
                   help="note policy: default = the task's (discharge-time tasks read the index admission's own "
                        "discharge summary, as the paper); in-stay = never a discharge summary (see docs/tasks.md)")
    p.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS,
                   help="encoder arithmetic: fp32 (default, bit-reproducible across machines), bf16 (autocast on "
                        "CPUs with AMX/AVX512-BF16 and on GPUs) or auto (bf16 where supported, else fp32); part of "
                        "the embedding cache key")
    p.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="where cells, trials and embedding shards run: local (this process; default) or ray")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to join with --executor ray (default: $RAY_ADDRESS, else start a local Ray)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")


def _add_budget(p: argparse.ArgumentParser) -> None:
    from mingle_bench import pipeline as R

    p.add_argument("--max-steps", type=int, default=R.DEFAULT_MAX_STEPS,
                   help=f"budget in optimiser steps, the same for every model (default {R.DEFAULT_MAX_STEPS}); "
                        "a full-graph step and a minibatch step count alike")
    p.add_argument("--eval-every", type=int, default=R.DEFAULT_EVAL_EVERY,
                   help=f"validate every N optimiser steps (default {R.DEFAULT_EVAL_EVERY})")
    p.add_argument("--patience", type=int, default=R.DEFAULT_PATIENCE,
                   help=f"stop after N evaluations without a better validation value (default {R.DEFAULT_PATIENCE})")
    p.add_argument("--epochs", type=int, default=None, help=argparse.SUPPRESS)


#: integer flags -> the smallest value each accepts (None: the flag may be left out)
_MINIMUMS = {"split_seed": 0, "bootstrap": 0, "max_notes_per_visit": 1, "max_tokens": 1, "trials": 1, "seed": 0,
             "worker_id": 0, "workers": 1}


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
    for name, low in _MINIMUMS.items():
        value = getattr(args, name, None)
        if value is not None and value < low:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    timeout = getattr(args, "timeout", None)
    if timeout is not None and not timeout > 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {timeout}")


def register(sub) -> None:
    from mingle_bench import pipeline as P
    from mingle_bench import runner as R

    p = sub.add_parser("run", help="train and evaluate models x seeds on one task; write tables and plots",
                       description="Train every model x seed on one seeded patient-level split with the same "
                                   "budget in optimiser steps and early stopping on validation; write "
                                   "<out>/<task>/<data-id>/ and check every cell against the committed reference. "
                                   "A rerun resumes: finished cells with the same inputs are skipped.")
    _add_common(p)
    p.add_argument("--models", default=",".join(R.DEFAULT_MODELS),
                   help=f"comma list of registered models, or 'all' (default: {','.join(R.DEFAULT_MODELS)})")
    p.add_argument("--seeds", default=str(R.DEFAULT_SEEDS),
                   help=f"number of training seeds (0..N-1) or a comma list (default {R.DEFAULT_SEEDS})")
    _add_budget(p)
    p.add_argument("--monitor", default=P.DEFAULT_MONITOR, help="validation metric for early stopping (default aupr)")
    p.add_argument("--tuned", action="append", default=[], metavar="STUDY",
                   help="use the best hyperparameters of a `mingle-bench tune` study (name or JSON path); repeatable. "
                        "A study tuned on another task or data is refused")
    p.add_argument("--tuned-anyway", action="store_true",
                   help="use --tuned files although they were tuned on another task or data (with a warning)")
    p.add_argument("--bootstrap", type=int, default=R.DEFAULT_BOOTSTRAP,
                   help=f"bootstrap resamples for the paired comparison (default {R.DEFAULT_BOOTSTRAP}; 0 disables)")
    p.add_argument("--fresh", action="store_true", help="discard earlier results in the output folder")
    p.add_argument("--reference", default="auto",
                   help="committed reference results to check every trained cell against (default: the checkout's "
                        "results/; 'none' disables the check)")
    p.add_argument("--graph-scope", choices=("all", "samples"), default="all",
                   help="admissions that become hyperedges: all (HypEHR/MINGLE, transductive; default) or only "
                        "the task's samples (see docs/tasks.md)")
    p.add_argument("--code-types", default=None,
                   help="comma list of input code types (diagnosis,procedure,medication,service; default: the task's)")
    p.add_argument("--split-seeds", default=None, metavar="N|LIST",
                   help="repeated splits: a count (3 -> split seeds 0..2) or a comma list; each split is a full "
                        "results folder (split seed 0 in <data-id>/, seed s in <data-id>-split<s>/) and the pooled "
                        "report (hierarchical bootstrap CIs, corrected resampled t-test) goes to <data-id>-splits/")
    p.add_argument("--save-checkpoints", action="store_true",
                   help="write each cell's best weights and config to <folder>/checkpoints/<model>-<seed>/ "
                        "(for `mingle-bench predict`; docs/extending.md)")
    p.set_defaults(func=_run)
    _remember_defaults(p, "run")

    t = sub.add_parser("tune", help="Optuna hyperparameter search for one model on one task (validation only)",
                       description="TPE (seeded, multivariate, constant liar) with MedianPruner on the per-evaluation "
                                   "validation metric. Several processes or machines can share one study through "
                                   "--storage; a killed study resumes.")
    _add_common(t)
    t.add_argument("--model", required=True, help="registered model name")
    t.add_argument("--trials", type=int, default=50, help="total trials of the study (capped across all workers)")
    t.add_argument("--storage", default=None,
                   help="Optuna RDB URL; default sqlite:///<out>/optuna.db. Use postgresql://... for many machines")
    t.add_argument("--study-name", default=None, help="default: <task>-<model>-<data-id>")
    t.add_argument("--timeout", type=float, default=None, help="stop this worker after this many seconds")
    _add_budget(t)
    t.add_argument("--monitor", default=P.DEFAULT_MONITOR, help="validation metric to maximise (default aupr)")
    t.add_argument("--seed", type=int, default=0, help="sampler and training seed (default 0)")
    t.add_argument("--worker-id", type=int, default=0,
                   help="index of this worker when several share a study (offsets the sampler seed)")
    t.add_argument("--workers", type=int, default=1,
                   help="with --executor ray: Optuna workers started as Ray tasks on the study's storage (default 1)")
    t.add_argument("--fresh", action="store_true",
                   help="start the study anew when it is lost (its storage was emptied or holds no such study) "
                        "although <out>/tuning/<study>.json exists; that file is kept as <study>.lost-<time>.json")
    t.set_defaults(func=_tune)
    _remember_defaults(t, "tune")

    r = sub.add_parser("reproduce", help="regenerate the paper's tables (main, ablation, relative improvement)",
                       description="Main table (MINGLE vs baselines on phenotype and cvd), ablation table and the "
                                   "relative-improvement figure, beside the paper's published numbers; written "
                                   "under results/paper/<data-id>/.")
    _add_common(r, task=False)
    r.add_argument("--seeds", default=str(R.DEFAULT_SEEDS), help="training seeds (count or comma list; default 5)")
    r.add_argument("--tasks", default="phenotype,cvd", help="tasks of the main table (default phenotype,cvd)")
    r.add_argument("--models", default=None, help="override the model list (default: the paper's rows)")
    _add_budget(r)
    r.add_argument("--bootstrap", type=int, default=R.DEFAULT_BOOTSTRAP, help="bootstrap resamples per task")
    r.add_argument("--fresh", action="store_true", help="discard earlier per-task results")
    r.add_argument("--protocol", default="default", choices=("default", "tuned"),
                   help="default: every model with its paper's default hyperparameters; tuned: every model gets "
                        "--trials Optuna trials on validation (same budget), then its best parameters with every seed")
    r.add_argument("--trials", type=int, default=20, help="Optuna trials per model under --protocol tuned (default 20)")
    r.add_argument("--storage", default=None, help="Optuna RDB URL for --protocol tuned (default sqlite:///<out>/optuna.db)")
    r.add_argument("--reference", default="auto",
                   help="committed reference results to check every trained cell against (default: the checkout's "
                        "results/; 'none' disables the check)")
    r.add_argument("--tables-only", action="store_true",
                   help="train nothing: write the paper tables from the cells already finished in the task folders")
    r.set_defaults(func=_reproduce)
    _remember_defaults(r, "reproduce")

    tb = sub.add_parser("table", help="re-render a results folder as markdown, LaTeX or CSV")
    tb.add_argument("path", help="a results/<task>/<data-id>/ folder (or results/paper/<data-id>/)")
    tb.add_argument("--format", default="md", choices=("md", "latex", "csv"))
    tb.add_argument("--write", action="store_true",
                    help="also rewrite the folder's files from its finished cells (tables, comparison, curves)")
    tb.set_defaults(func=_table)


def _code_types(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    from mingle_bench.data.cohort import CODE_TYPES

    types = tuple(t.strip() for t in value.split(",") if t.strip())
    bad = [t for t in types if t not in CODE_TYPES]
    if not types or bad:
        raise ValueError(f"--code-types {value!r}: expected a comma list of {', '.join(CODE_TYPES)}")
    return types


def _run(args) -> int:
    from mingle_bench import runner as R
    from mingle_bench.report.reference import reference_lines
    from mingle_bench.report.finalize import comparison_sentence

    _check_budget_args(args)
    _apply_meds_config(args)
    cfg = R.RunConfig(
        task=args.task, data=args.data, models=args.models, seeds=R.parse_seeds(args.seeds),
        split_seed=args.split_seed, device=args.device, encoder=args.encoder, tuned=args.tuned,
        tuned_anyway=args.tuned_anyway, out=args.out,
        max_steps=args.max_steps, eval_every=args.eval_every, patience=args.patience, monitor=args.monitor,
        notes=args.notes, reference=None if args.reference == "none" else args.reference,
        max_notes_per_visit=args.max_notes_per_visit, max_tokens=args.max_tokens, n_boot=args.bootstrap,
        fresh=args.fresh, progress=not args.quiet, command=command_of(args),
        graph_scope=args.graph_scope, code_types=_code_types(args.code_types),
        precision=args.precision, executor=args.executor, ray_address=args.ray_address, split=args.split,
        split_seeds=None if args.split_seeds is None else R.parse_seeds(args.split_seeds, flag="--split-seeds"),
        save_checkpoints=args.save_checkpoints,
    )
    if cfg.split_seeds is not None:
        return _run_splits(cfg)
    s = R.run_benchmark(cfg)
    print((s.folder / "table.md").read_text(encoding="utf-8") if (s.folder / "table.md").exists() else "")
    sentence = comparison_sentence(s.comparison)
    if sentence:
        print(sentence)
    print(R.summary_line(s))
    for line in reference_lines(s.reference):
        print(line)
    return 1 if s.failed else 0


def _run_splits(cfg) -> int:
    from mingle_bench import runner as R
    from mingle_bench.report.reference import reference_lines

    res = R.run_split_seeds(cfg)
    print((res.pooled_folder / "table.md").read_text(encoding="utf-8"))
    for s in res.runs:
        print(R.summary_line(s))
        for line in reference_lines(s.reference):
            print(line)
    print(f"Pooled over {len(res.runs)} splits in {res.pooled_folder}/ (table.md, pooled.json)")
    return 1 if any(s.failed for s in res.runs) else 0


def _tune(args) -> int:
    from mingle_bench import tuning

    _check_budget_args(args)
    _apply_meds_config(args)
    res = tuning.tune(
        task=args.task, model=args.model, trials=args.trials, storage=args.storage, study_name=args.study_name,
        timeout=args.timeout, data=args.data, device=args.device, encoder=args.encoder, split_seed=args.split_seed,
        max_steps=args.max_steps, eval_every=args.eval_every, patience=args.patience, notes=args.notes, monitor=args.monitor, seed=args.seed, worker_id=args.worker_id,
        out=args.out, max_notes_per_visit=args.max_notes_per_visit, max_tokens=args.max_tokens,
        progress=not args.quiet, command=command_of(args),
        precision=args.precision, executor=args.executor, ray_address=args.ray_address, workers=args.workers,
        split=args.split, fresh=args.fresh,
    )
    print(tuning.summary_line(res))
    return 0


def _reproduce(args) -> int:
    from mingle_bench import reproduce, runner as R

    _check_budget_args(args)
    _apply_meds_config(args)
    res = reproduce.reproduce(
        data=args.data, seeds=R.parse_seeds(args.seeds), tasks=[t for t in args.tasks.split(",") if t],
        models=args.models.split(",") if args.models else None, device=args.device, encoder=args.encoder,
        split_seed=args.split_seed, max_steps=args.max_steps, eval_every=args.eval_every, patience=args.patience,
        notes=args.notes, out=args.out,
        n_boot=args.bootstrap, fresh=args.fresh, progress=not args.quiet,
        max_notes_per_visit=args.max_notes_per_visit, max_tokens=args.max_tokens, command=command_of(args),
        tables_only=args.tables_only, protocol=args.protocol, trials=args.trials, storage=args.storage,
        reference=None if args.reference == "none" else args.reference,
        precision=args.precision, executor=args.executor, ray_address=args.ray_address, split=args.split,
    )
    print(res.main_md)
    print(reproduce.summary_line(res))
    return 1 if res.failed else 0


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
    print(text, end="")
    return 0
