"""``mingle-bench encoder probe``: how much label signal an encoder's note vectors keep."""
from __future__ import annotations

import argparse
import json
import sys

PROBE_DESCRIPTION = (
    "Embed each sample's index-visit notes with ENCODER (the features stage's settings and embedding cache; "
    "tfidf is fitted on the train split's texts only), fit an L2 logistic regression from the note vector plus a "
    "has-notes flag to the label on the train split (C chosen on validation) and report the test AUROC with a "
    "patient-level bootstrap 95% CI, per label (multi-label tasks: micro and macro too), beside the same probe "
    "on TF-IDF of the raw texts (the reference ceiling). On synthetic data it also probes the generator's "
    "note-only latents (DNR, smoking, poor HbA1c control: AUROC; frailty, HbA1c value: R^2). Run this first with a new clinical encoder.")


def register(sub) -> None:
    p = sub.add_parser("encoder", help="inspect what a text encoder keeps (encoder probe)")
    esub = p.add_subparsers(dest="encoder_command", metavar="SUBCOMMAND")
    pr = esub.add_parser("probe", help="linear probe from an encoder's note vectors to the labels (and latents)",
                         description=PROBE_DESCRIPTION)
    pr.add_argument("--task", required=True, help="task name (mortality, los, phenotype, readmission, cvd)")
    pr.add_argument("--encoder", default="default",
                    help="encoder spec: default[?pooling=mean|max|cls&chunking=sentence] | hf:PATH[?...] | "
                         "openai:MODEL | tfidf[?dim=N&min_df=K&ngram=1|2] (default: default)")
    pr.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"),
                    help="encoder arithmetic, as in run (default fp32; bf16 reads a bf16 run's embedding cache)")
    pr.add_argument("--data", default="synthetic",
                    help="source: synthetic[:small|default|mimic], mimic3:DIR, mimic4:DIR, meds:DIR (default synthetic)")
    pr.add_argument("--split-seed", type=int, default=0, help="seed of the patient-level split (default 0, as in run)")
    pr.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                    help="patient-level bootstrap resamples of the test split for the CIs (default 1000)")
    pr.add_argument("--no-reference", action="store_true", help="skip the TF-IDF reference probe")
    pr.add_argument("--no-latents", action="store_true", help="skip the synthetic latents' probes")
    pr.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    pr.add_argument("--cache-dir", default=None, help="cache folder (default $MINGLE_CACHE or ~/.cache/mingle-bench)")
    pr.set_defaults(func=_probe)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _probe(args: argparse.Namespace) -> int:
    from mingle_bench.cachelock import shared
    from mingle_bench.encoders.registry import parse_spec
    from mingle_bench.probe import probe_encoder
    from mingle_bench.tasks import list_tasks

    if args.task not in list_tasks():
        raise ValueError(f"--task {args.task!r} is not a task (choose from {', '.join(list_tasks())})")
    parse_spec(args.encoder)  # a bad spec fails here, before any data loads
    if args.bootstrap < 1:
        raise ValueError(f"--bootstrap must be >= 1, got {args.bootstrap}")
    if not args.json:
        print(f"probing {args.encoder} on {args.data} / {args.task} ...", file=sys.stderr, flush=True)
    with shared(args.cache_dir):  # reads the cohort and embedding caches: no cache clear meanwhile
        report = probe_encoder(args.data, args.task, args.encoder, split_seed=args.split_seed,
                               n_boot=args.bootstrap, cache_dir=args.cache_dir, progress=not args.json,
                               reference=not args.no_reference, latents=not args.no_latents,
                               precision=args.precision)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    print(render(report))
    return 0


def _fmt(r: dict | None) -> str:
    if not r or r.get("value") is None:
        return "—"
    ci = r.get("ci")
    return f"{r['value']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{r['value']:.3f}"


def render(report: dict) -> str:
    """The probe report as plain-text tables."""
    from tabulate import tabulate

    enc, ref = report["probe"], report.get("reference_tfidf")
    rows = [(name, _fmt(r), _fmt(ref["labels"][name]) if ref else "—") for name, r in enc["labels"].items()]
    for key in ("micro_auroc", "macro_auroc"):
        if key in enc:
            rows.append((key.replace("_auroc", " AUROC"), _fmt(enc[key]), _fmt(ref.get(key)) if ref else "—"))
    s = report["splits"]
    lines = [f"encoder {report['encoder']['identity']} ({report['encoder_spec']}), {report['source']} / "
             f"{report['task']}, split seed {report['split_seed']}: test {s['test']['samples']} samples, "
             f"{s['test']['positives']} positive labels; {report['index_visits_with_notes']} index visits with notes",
             "",
             tabulate(rows, headers=["label (test AUROC, 95% patient-bootstrap CI)", "encoder probe",
                                     "TF-IDF reference"])]
    if report.get("latents"):
        lrows = []
        for name, e in report["latents"].items():
            r = e["encoder"]
            lrows.append((name, f"{r['metric']}", r.get("test_n"), _fmt(r), _fmt(e.get("reference_tfidf"))))
        lines += ["", tabulate(lrows, headers=["latent (note-only)", "metric", "test n", "encoder probe",
                                               "TF-IDF reference"])]
    lines += ["", f"linear probe: L2 logistic regression (ridge for continuous latents) on [note vector, has-notes] "
                  f"(the encoder's vectors standardised, TF-IDF rows as they are), fitted on train, penalty chosen "
                  f"on validation; "
                  f"{report['n_boot']} bootstrap resamples of the test patients"]
    return "\n".join(lines)
