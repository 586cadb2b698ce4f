"""``mingle-bench task show|list``: see a task's samples exactly as models receive them."""
from __future__ import annotations

import argparse
import json
import sys

from mingle_bench.commands import CACHE_DIR_HELP


def register(sub) -> None:
    task = sub.add_parser("task", help="inspect prediction tasks (list, show samples)")
    task_sub = task.add_subparsers(dest="task_command", metavar="SUBCOMMAND")
    task.set_defaults(func=lambda args: (task.print_help(), 2)[1])

    lst = task_sub.add_parser("list", help="list the registered tasks with their labels and definition source")
    lst.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    lst.set_defaults(func=_list)

    show = task_sub.add_parser(
        "show", help="print a task's samples as models receive them (one JSON object per sample)",
        description="Print the samples of TASK on SOURCE exactly as models receive them: one JSON object per "
                    "sample with sample_id, patient_id, hadm_id, split, prediction_time, labels, codes (input "
                    "codes kept by the train-only vocabulary), dropped_unseen_codes, note_ids, note_texts "
                    "(input notes after time and category filtering) and history (admission ids of the "
                    "sequence view).")
    show.add_argument("--task", required=True, help="task name (see `mingle-bench task list`)")
    show.add_argument("--data", default="synthetic:small",
                      help="source spec: synthetic[:SIZE], mimic3:DIR, mimic4:DIR, meds:DIR[;config=FILE] "
                           "(default: synthetic:small)")
    show.add_argument("--meds-config", default=None, metavar="FILE",
                      help="with --data meds:DIR: a JSON or YAML file overriding the MEDS code mapping")
    show.add_argument("--split", choices=("random", "meds"), default="random",
                      help="random (default): the seeded 7:1:2 patient split; meds: the MEDS subject splits")
    show.add_argument("--limit", type=int, default=None,
                      help="print at most N samples (default: all with --jsonl, 5 otherwise)")
    out = show.add_mutually_exclusive_group()
    out.add_argument("--jsonl", action="store_true",
                     help="machine-readable output: only JSON lines on stdout (one per sample), no summary")
    out.add_argument("--json", action="store_true",
                     help="one JSON object on stdout: the summary (samples, exclusions, positives, split, "
                          "vocabulary) and the samples")
    show.add_argument("--split-seed", type=int, default=0, help="seed of the patient-level split (default 0)")
    show.add_argument("--code-types", default=None,
                      help="comma-separated input code types (diagnosis,procedure,medication,service)")
    show.add_argument("--graph-scope", choices=("all", "samples"), default="all",
                      help="admissions in the visit table; the vocabulary is fitted on its train visits")
    show.add_argument("--notes", choices=("default", "in-stay"), default="default",
                      help="note policy (default: the task's; in-stay: never a discharge summary)")
    show.add_argument("--no-texts", action="store_true", help="omit note texts (ids only)")
    show.add_argument("--cache-dir", default=None, help=CACHE_DIR_HELP)
    show.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    show.set_defaults(func=_show)


def _list(args: argparse.Namespace) -> int:
    from mingle_bench.tasks import get_task, list_tasks

    tasks = [get_task(name) for name in list_tasks()]
    if args.json:
        print(json.dumps({"tasks": [{"name": t.name, "labels": list(t.label_names), "code_types": list(t.code_types),
                                     "reference": t.reference} for t in tasks]}, indent=2))
        return 0
    for t in tasks:
        labels = t.label_names[0] if len(t.label_names) == 1 else f"{len(t.label_names)} labels"
        print(f"{t.name:12s} {labels:28s} {t.reference}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from mingle_bench.commands import CLIError
    from mingle_bench.data.cohort import CODE_TYPES
    from mingle_bench.tasks import list_tasks

    if args.task not in list_tasks():
        raise CLIError(f"--task {args.task!r}: unknown task; choose one of {', '.join(list_tasks())}")
    if args.limit is not None and args.limit < 0:
        raise CLIError(f"--limit must be >= 0, got {args.limit}")
    if args.split_seed < 0:
        raise CLIError(f"--split-seed must be >= 0, got {args.split_seed}")
    code_types = None
    if args.code_types:
        code_types = [t.strip() for t in args.code_types.split(",") if t.strip()]
        bad = [t for t in code_types if t not in CODE_TYPES]
        if bad or not code_types:
            raise CLIError(f"--code-types {args.code_types!r}: unknown type(s) {bad}; choose from {','.join(CODE_TYPES)}")

    from mingle_bench.data.meds_mapping import with_meds_config

    args.data = with_meds_config(args.data, args.meds_config)

    from mingle_bench.data.sources import load_source
    from mingle_bench.features import prepare_visits, sample_view
    from mingle_bench.tasks import get_task

    task = get_task(args.task, notes=args.notes, **({"code_types": tuple(code_types)} if code_types else {}))
    machine = args.jsonl or args.json
    cohort = load_source(args.data, cache_dir=args.cache_dir, progress=not machine)
    vt = prepare_visits(cohort, task, split_seed=args.split_seed, graph_scope=args.graph_scope, split=args.split)
    limit = args.limit if args.limit is not None else (None if machine else 5)
    out = sys.stdout
    if args.json:
        rows = list(sample_view(vt, cohort, limit=limit, with_texts=not args.no_texts))
        print(json.dumps({"task": args.task, "data": args.data, "summary": summary(vt), "samples": rows},
                         indent=2, ensure_ascii=False, default=str))
        return 0
    if not args.jsonl:
        _print_summary(vt, args)
    for row in sample_view(vt, cohort, limit=limit, with_texts=not args.no_texts):
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    out.flush()
    return 0


def summary(vt) -> dict:
    """The ``task show --json`` summary: samples, patients, exclusions, positives, split sizes,
    the split manifest's sha256, the train-only vocabulary size and the unseen codes dropped."""
    rep = vt.task_samples.report
    return {
        "samples": rep["samples"], "patients": rep["patients"], "excluded": dict(rep["excluded"]),
        "label_info": dict(rep.get("label_info", {})), "positives": dict(rep["positives"]),
        "split_patients": dict(vt.manifest.sizes()), "split_sha256": vt.manifest.sha256,
        "vocabulary": len(vt.vocab), "unseen_codes": vt.report["unseen_codes"],
        "inputs_dropped": {k: v for k, v in rep["inputs"].items() if v},
    }


def _print_summary(vt, args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    rep = vt.task_samples.report
    console = Console(stderr=True)
    table = Table(title=f"task {args.task} on {args.data}", show_header=False)
    table.add_row("samples / patients", f"{rep['samples']} / {rep['patients']}")
    for reason, n in rep["excluded"].items():
        table.add_row(f"excluded: {reason}", str(n))
    for name, n in rep.get("label_info", {}).items():
        table.add_row(name, str(n))
    pos = rep["positives"]
    if len(pos) <= 3:
        for name, n in pos.items():
            table.add_row(f"positives: {name}", f"{n} ({n / max(rep['samples'], 1):.1%})")
    else:
        table.add_row("positives per label", ", ".join(str(v) for v in pos.values()))
    sizes = vt.manifest.sizes()
    table.add_row("split patients (train/val/test)", "/".join(str(sizes[k]) for k in ("train", "val", "test")))
    table.add_row("split manifest sha256", vt.manifest.sha256[:16] + "…")
    table.add_row("vocabulary (train-only)", str(len(vt.vocab)))
    for split, r in vt.report["unseen_codes"].items():
        if split != "train" and r["visits"]:
            table.add_row(f"unseen codes dropped ({split})", f"{r['unseen_code_events_dropped']} of {r['input_code_events']}")
    for reason, n in rep["inputs"].items():
        if n:
            table.add_row(f"inputs dropped: {reason.replace('_', ' ')}", str(n))
    console.print(table)
