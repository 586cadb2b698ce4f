"""``mingle-bench profile-kernel``: time the fused segment-attention op against the unfused chains."""
from __future__ import annotations

import argparse
import json
import sys

#: where profile-kernel writes by default: runs/, never the committed results/kernel
DEFAULT_OUT = "runs/kernel"


def register(sub) -> None:
    p = sub.add_parser(
        "profile-kernel",
        help="time the fused hyperedge-attention op vs the reference scatter chain and torch.sparse",
        description="Time segment_softmax_aggregate (forward, and forward+backward) with three arms: the fused "
                    "extension op, the pure-PyTorch scatter chain and a torch.sparse softmax+mm path, side by side "
                    "in one run. Reports median time, effective GB/s, % of the copy bandwidth measured in the same "
                    "run and the speed-up over the reference; writes markdown, CSV, JSON and a PNG plot to --out "
                    "(default runs/kernel; the committed reference is results/kernel).",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--sizes", default="small,mimic",
                   help="comma-separated: tiny, small, mimic (50k segments, 7k sources, ~2M incidences), "
                        "mimic10x (default small,mimic)")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"output folder (default {DEFAULT_OUT}; `--out results/kernel` regenerates the committed reference)")
    p.add_argument("--name", default=None, help="file stem (default kernel-<device>)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU; default: the math "
                   "mode's: 2 under --math reproducible, torch's under native)")
    p.add_argument("--repeats", type=int, default=5, help="timed repetitions per arm, interleaved (default 5)")
    p.add_argument("--arms", default="fused,reference,sparse", help="comma-separated subset of fused,reference,sparse")
    p.add_argument("--passes", default="fwd,fwdbwd", help="comma-separated subset of fwd,fwdbwd")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (header and rows) on stdout instead of the table; the files are "
                        "written to --out as well")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=_profile_kernel)


def _split(value: str, flag: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        from mingle_bench.commands import CLIError

        raise CLIError(f"{flag}: expected a comma-separated list, got {value!r}")
    return items


def _profile_kernel(args: argparse.Namespace) -> int:
    import torch

    from mingle_bench.commands import CLIError
    from mingle_bench.profiling.kernel import check_choices, profile, render, write_outputs

    if args.threads is not None:
        if args.threads < 1:
            raise CLIError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.repeats < 1:
        raise CLIError(f"--repeats must be >= 1, got {args.repeats}")
    from pathlib import Path

    sizes, arms, passes = _split(args.sizes, "--sizes"), _split(args.arms, "--arms"), _split(args.passes, "--passes")
    check_choices(sizes, arms, passes)
    Path(args.out).mkdir(parents=True, exist_ok=True)  # a bad --out fails before the timing, not after
    rows, header = profile(sizes, device=args.device, arms=arms, passes=passes, repeats=args.repeats,
                           progress=lambda m: print(m, file=sys.stderr, flush=True))
    stem = args.name or f"kernel-{args.device}"
    written = write_outputs(rows, header, args.out, stem)
    if args.json:
        from dataclasses import asdict

        print(json.dumps({"header": header, "rows": [asdict(r) for r in rows],
                          "files": [str(p) for p in written]}, indent=2, default=str))
        return 0
    print(render(rows, header))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0
