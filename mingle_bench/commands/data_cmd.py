"""``mingle-bench data synth`` and ``mingle-bench data info``."""
from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("data", help="generate synthetic data, inspect a data source")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    s = dsub.add_parser("synth", help="write a synthetic MIMIC-III-shaped folder (same seed -> identical files)")
    s.add_argument("--out", required=True, help="output folder (created; existing table files are overwritten)")
    s.add_argument("--patients", type=int, default=2000, help="number of patients (default 2000)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.set_defaults(func=_synth)

    i = dsub.add_parser("info", help="load a source (cached) and print its load report")
    i.add_argument("--data", default="synthetic",
                   help="source: synthetic[:small|default|mimic], mimic3:DIR, mimic4:DIR (default synthetic)")
    i.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    i.add_argument("--cache-dir", default=None, help="cache folder (default $MINGLE_CACHE or ~/.cache/mingle-bench)")
    i.set_defaults(func=_info)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _synth(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mingle_bench.data.synthetic import generate

    if args.patients < 1:
        raise ValueError(f"--patients must be at least 1, got {args.patients}")
    if args.seed < 0:
        raise ValueError(f"--seed must be non-negative, got {args.seed}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    counts = generate(out, patients=args.patients, seed=args.seed, progress=True)
    from tabulate import tabulate

    print(tabulate(sorted(counts.items()), headers=["file", "rows"], intfmt=","))
    print(f"wrote {out}  (read it with --data mimic3:{out})")
    return 0


def summary(cohort) -> dict:
    """The ``data info --json`` object: counts kept, distinct codes per type, skipped reasons."""
    codes = cohort.codes
    by_type = codes.groupby("code_type")["code_id"]
    rep = cohort.report or {}
    return {
        "source": cohort.source,
        "source_id": cohort.source_id,
        "patients": int(len(cohort.patients)),
        "admissions": int(len(cohort.admissions)),
        "in_hospital_deaths": int(cohort.admissions["hospital_expire_flag"].astype(int).sum()),
        "diagnoses": int((codes["code_type"] == "diagnosis").sum()),
        "procedures": int((codes["code_type"] == "procedure").sum()),
        "prescriptions": int((codes["code_type"] == "medication").sum()),
        "services": int((codes["code_type"] == "service").sum()),
        "notes": int(len(cohort.notes)),
        "notes_without_admission": int(cohort.notes["hadm_id"].isna().sum()),
        "distinct_codes": {t: int(n) for t, n in by_type.nunique().sort_index().items()},
        "ages_capped": int(cohort.admissions["age_capped"].sum()),
        "read": rep.get("read", {}),
        "skipped": rep.get("skipped", {}),
        "repaired": rep.get("repaired", {}),
    }


def _info(args: argparse.Namespace) -> int:
    from mingle_bench.data.sources import load_source

    if not args.json:
        import sys

        print(f"loading {args.data} (parsed once, then read from the cache) ...", file=sys.stderr, flush=True)
    # the report is printed below (or returned as JSON), so load quietly
    cohort = load_source(args.data, cache_dir=args.cache_dir, progress=False)
    info = summary(cohort)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    from tabulate import tabulate

    from mingle_bench.data.report import LoadReport

    print(LoadReport.from_dict(cohort.report).render())
    rows = [(k, info[k]) for k in ("patients", "admissions", "in_hospital_deaths", "diagnoses", "procedures",
                                   "prescriptions", "services", "notes", "notes_without_admission", "ages_capped")]
    rows += [(f"distinct {t} codes", n) for t, n in info["distinct_codes"].items()]
    print()
    print(tabulate(rows, headers=[f"cohort {info['source']}", "count"], intfmt=","))
    return 0
