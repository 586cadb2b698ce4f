"""``mingle-bench profile-kernel``: time the fused segment-attention op against the unfused chains."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "profile-kernel",
        help="time the fused hyperedge-attention op vs the reference scatter chain and torch.sparse",
        description="Time segment_softmax_aggregate (forward, and forward+backward) with three arms: the fused "
                    "extension op, the pure-PyTorch scatter chain and a torch.sparse softmax+mm path, side by side "
                    "in one run. Reports median time, effective GB/s, %% of the copy bandwidth measured in the same "
                    "run and the speed-up over the reference; writes markdown, CSV, JSON and a PNG plot.",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--sizes", default="small,mimic",
                   help="comma-separated: tiny, small, mimic (50k segments, 7k sources, ~2M incidences), "
                        "mimic10x (default small,mimic)")
    p.add_argument("--out", default="results/kernel", help="output folder (default results/kernel)")
    p.add_argument("--name", default=None, help="file stem (default kernel-<device>)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU; default: torch's)")
    p.add_argument("--repeats", type=int, default=5, help="timed repetitions per arm, interleaved (default 5)")
    p.add_argument("--arms", default="fused,reference,sparse", help="comma-separated subset of fused,reference,sparse")
    p.add_argument("--passes", default="fwd,fwdbwd", help="comma-separated subset of fwd,fwdbwd")
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
    from mingle_bench.profiling.kernel import profile, render, write_outputs

    if args.threads is not None:
        if args.threads < 1:
            raise CLIError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.repeats < 1:
        raise CLIError(f"--repeats must be >= 1, got {args.repeats}")
    from pathlib import Path

    Path(args.out).mkdir(parents=True, exist_ok=True)  # a bad --out fails before the timing, not after
    rows, header = profile(_split(args.sizes, "--sizes"), device=args.device, arms=_split(args.arms, "--arms"),
                           passes=_split(args.passes, "--passes"), repeats=args.repeats,
                           progress=lambda m: print(m, flush=True))
    print()
    print(render(rows, header))
    stem = args.name or f"kernel-{args.device}"
    for path in write_outputs(rows, header, args.out, stem):
        print(f"wrote {path}")
    return 0
