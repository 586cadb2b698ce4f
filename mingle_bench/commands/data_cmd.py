"""``mingle-bench data synth``, ``data info``, ``data signal`` and ``data export``."""
from __future__ import annotations

import argparse
import json
import sys

from mingle_bench.commands import CACHE_DIR_HELP

MEDS_CONFIG_HELP = "MEDS mapping file (JSON or YAML) for --data meds:DIR (default: the MIMIC-IV MEDS ETL conventions)"


def register(sub) -> None:
    p = sub.add_parser("data", help="generate synthetic data, inspect a data source")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    s = dsub.add_parser("synth", help="write a synthetic MIMIC-III-shaped folder (same seed -> identical files)")
    s.add_argument("--out", required=True, help="output folder (created; existing table files are overwritten)")
    s.add_argument("--patients", type=int, default=2000, help="number of patients (default 2000)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--json", action="store_true", help="print one JSON object (rows per file) instead of a table")
    s.set_defaults(func=_synth)

    i = dsub.add_parser("info", help="load a source (cached) and print its load report")
    i.add_argument("--data", default="synthetic",
                   help="source: synthetic[:small|default|mimic], mimic3:DIR, mimic4:DIR, meds:DIR (default synthetic)")
    i.add_argument("--meds-config", default=None, metavar="FILE", help=MEDS_CONFIG_HELP)
    i.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    i.add_argument("--cache-dir", default=None, help=CACHE_DIR_HELP)
    i.set_defaults(func=_info)

    g = dsub.add_parser("signal", help="per task: samples, positives and the oracle AUROC on the synthetic "
                                       "generator's latent variables (synthetic sources only)")
    g.add_argument("--data", default="synthetic", help="source: synthetic[:small|default|mimic][:SEED] "
                                                       "(default synthetic; mimic3:DIR, mimic4:DIR and meds:DIR "
                                                       "have no latent variables)")
    g.add_argument("--meds-config", default=None, metavar="FILE", help=MEDS_CONFIG_HELP)
    g.add_argument("--tasks", default=None, help="comma-separated tasks (default: all five)")
    g.add_argument("--split-seed", type=int, default=0, help="seed of the patient-level split (default 0, "
                                                              "as in training)")
    g.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    g.add_argument("--cache-dir", default=None, help=CACHE_DIR_HELP)
    g.set_defaults(func=_signal)

    e = dsub.add_parser("export", help="write a source as a MEDS 0.4 dataset (same source -> identical files)")
    e.add_argument("--data", required=True,
                   help="source: synthetic[:small|default|mimic], mimic3:DIR, mimic4:DIR, meds:DIR")
    e.add_argument("--format", default="meds", choices=("meds",), help="output format (only meds for now)")
    e.add_argument("--out", required=True, help="output folder: absent or empty (or an earlier export, with --force)")
    e.add_argument("--force", action="store_true", help="replace an earlier export in --out")
    e.add_argument("--shard-size", type=int, default=None, metavar="N",
                   help="subjects per data shard (default 2000)")
    e.add_argument("--meds-config", default=None, metavar="FILE", help=MEDS_CONFIG_HELP)
    e.add_argument("--cache-dir", default=None, help=CACHE_DIR_HELP)
    e.add_argument("--json", action="store_true", help="print one JSON object (counts, bytes, seconds) instead of a table")
    e.set_defaults(func=_export)
    m = dsub.add_parser("meds-mapping", help="print the MEDS mapping (the default, or FILE merged over it) as "
                                             "a template for --meds-config")
    m.add_argument("--meds-config", default=None, help="a mapping file to check and show merged over the default")
    m.add_argument("--json", action="store_true", help="JSON instead of YAML")
    m.set_defaults(func=_meds_mapping)
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
    if args.json:
        print(json.dumps({"out": str(out), "patients": args.patients, "seed": args.seed, "rows": counts},
                         indent=2, sort_keys=True))
        return 0
    from tabulate import tabulate

    print(tabulate(sorted(counts.items()), headers=["file", "rows"], intfmt=","))
    print(f"wrote {out}  (read it with --data mimic3:{out})")
    return 0


def _data_spec(args: argparse.Namespace) -> str:
    """``--data`` with ``--meds-config`` applied (an error unless the source is ``meds:``)."""
    from mingle_bench.data.meds_mapping import with_meds_config

    return with_meds_config(args.data, getattr(args, "meds_config", None))


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
        "ages_unknown": int(cohort.admissions["age"].isna().sum()),
        "read": rep.get("read", {}),
        "skipped": rep.get("skipped", {}),
        "repaired": rep.get("repaired", {}),
        "info": rep.get("info", {}),
    }


def _meds_mapping(args: argparse.Namespace) -> int:
    from mingle_bench.data.meds_mapping import load_mapping

    mapping = load_mapping(args.meds_config).to_dict()
    if args.json:
        print(json.dumps(mapping, indent=2))
    else:
        import yaml

        print(f"# MEDS mapping ({args.meds_config or 'default'}); keys and meaning: docs/meds.md")
        print(yaml.safe_dump(mapping, sort_keys=False, width=120), end="")
    return 0


def _info(args: argparse.Namespace) -> int:
    from mingle_bench.data.sources import load_source

    spec = _data_spec(args)
    if not args.json:
        print(f"loading {spec} (parsed once, then read from the cache) ...", file=sys.stderr, flush=True)
    # the report is printed below (or returned as JSON), so load quietly
    cohort = load_source(spec, cache_dir=args.cache_dir, progress=False)
    info = summary(cohort)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    from tabulate import tabulate

    from mingle_bench.data.report import LoadReport

    print(LoadReport.from_dict(cohort.report).render())
    rows = [(k, info[k]) for k in ("patients", "admissions", "in_hospital_deaths", "diagnoses", "procedures",
                                   "prescriptions", "services", "notes", "notes_without_admission", "ages_capped", "ages_unknown")]
    rows += [(f"distinct {t} codes", n) for t, n in info["distinct_codes"].items()]
    print()
    print(tabulate(rows, headers=[f"cohort {info['source']}", "count"], intfmt=","))
    return 0


def _signal(args: argparse.Namespace) -> int:
    from mingle_bench.oracle import SIGNAL_TASKS, task_signal
    from mingle_bench.data.sources import parse_spec

    args.data = _data_spec(args)
    if parse_spec(args.data)[0] != "synthetic":
        raise ValueError(f"--data {args.data!r}: data signal needs the generator's latent variables, which only "
                         "synthetic sources have (use synthetic[:small|default|mimic])")
    tasks = SIGNAL_TASKS if not args.tasks else tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    if not args.json:
        print(f"fitting the oracle on {args.data} ...", file=sys.stderr, flush=True)
    report = task_signal(args.data, tasks=tasks, split_seed=args.split_seed, cache_dir=args.cache_dir)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    from tabulate import tabulate

    rows = [(t, r["samples"], r["positives"], r["test_samples"], r["test_positives"], r["oracle_auroc"])
            for t, r in report["tasks"].items()]
    print(tabulate(rows, headers=["task", "samples", "positives", "test samples", "test positives", "oracle AUROC"],
                   intfmt=",", floatfmt=".3f"))
    footnotes = [f"{t}: positives are label cells (mean prevalence {r['mean_prevalence']:.3f}); AUROC on the flattened "
                 f"labels, macro AUROC {r['oracle_macro_auroc']:.3f}"
                 for t, r in report["tasks"].items() if r.get("oracle_macro_auroc") is not None]
    print(f"\nsource {report['source']}, split seed {report['split_seed']}: logistic regression on the latents "
          "of each index admission, trained on train, scored on test")
    for line in footnotes:
        print(line)
    return 0


def _export(args: argparse.Namespace) -> int:
    import time

    from mingle_bench.data.meds_export import DEFAULT_SHARD_SIZE, FAMILIES, check_out_dir, export_meds
    from mingle_bench.data.sources import load_source

    shard_size = DEFAULT_SHARD_SIZE if args.shard_size is None else args.shard_size
    if shard_size < 1:
        raise ValueError(f"--shard-size must be at least 1, got {shard_size}")
    spec = _data_spec(args)
    out = check_out_dir(args.out, args.force)  # before the (maybe long) load
    cohort = load_source(spec, cache_dir=args.cache_dir, progress=True)
    print(f"exporting {cohort.source} as MEDS to {out} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    counts = export_meds(cohort, out, shard_size=shard_size, force=args.force, progress=True)
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps({"out": str(out), "source": cohort.source, "seconds": round(seconds, 3), "counts": counts},
                         indent=2, sort_keys=True, default=int))
        return 0
    from tabulate import tabulate

    rows = [(f"{k} events", counts[k]) for k in FAMILIES]
    rows += [(k, counts[k]) for k in ("events", "subjects", "shards", "codes")]
    rows += [(k.replace("_", " "), v) for k, v in counts.items() if k.startswith("split_")]
    rows += [(k.replace("_", " "), counts[k]) for k in ("codes_time_from_discharge", "notes_time_from_chartdate",
                                                        "deaths_time_from_discharge", "notes_without_text",
                                                        "skipped_no_time") if counts[k]]
    print(tabulate(rows, headers=[f"MEDS {out.name}", "count"], intfmt=","))
    print(f"wrote {out} ({counts['bytes'] / 1e6:,.1f} MB in {seconds:.1f} s)  (read it back with --data meds:{out})")
    return 0
