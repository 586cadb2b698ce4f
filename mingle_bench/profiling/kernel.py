"""Kernel profiler: the fused segment-attention op against the unfused chains, side by side.

Arms (all compute ``segment_softmax_aggregate`` over the same V→E incidence, H heads, D dims):

* ``fused``     — the compiled ``mingle::segment_softmax_aggregate`` (this package's csrc/);
* ``reference`` — the pure-PyTorch scatter chain (gather, scatter_reduce amax, exp, index_add,
  divide, gather, index_add), i.e. what PyG-style message passing does;
* ``sparse``    — ``torch.sparse.softmax`` over a block-diagonal [S·H, N·H] COO matrix, then
  ``torch.sparse.mm`` with the values viewed as [N·H, D].

Passes: ``fwd`` (forward only, no autograd) and ``fwdbwd`` (forward + backward to the source logits,
destination logits and values). Repetitions interleave the arms so that a noisy, shared machine
slows all of them alike; the median is reported.

Effective bandwidth uses one traffic model for every arm (bytes an ideal single-pass kernel
must move; every incidence reads its source's logits and value row once)::

    fwd    = 8(S+1) + 8·nnz + 4·nnz·H + 4·nnz·H·D + 4·S·H·D + 4·S·H
    fwdbwd = fwd + 8(N+1) + 8·nnz + 4·nnz·H·D (gradient rows per incidence) + 4·S·H·D
             + 4·N·H·D (values again) + 4·N·H·D + 4·N·H (written gradients)

(byte widths shown for float32). The device's copy bandwidth is measured in the same run
(``dst.copy_(src)`` over a buffer much larger than the caches, read + write counted) and each
arm's effective GB/s is reported as a percentage of it.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from mingle_bench.io import atomic_write_bytes, cpu_model

# name -> (segments S, sources N, min members, max members, heads H, dim D)
SIZES: dict[str, tuple[int, int, int, int, int, int]] = {
    "tiny": (200, 100, 1, 10, 4, 32),
    "small": (5_000, 1_000, 5, 75, 4, 32),
    "mimic": (50_000, 7_000, 5, 75, 4, 32),        # MIMIC-III scale: ~2M incidences
    "mimic10x": (500_000, 70_000, 5, 75, 4, 32),   # the GPU goal's scale
}
ARMS = ("fused", "reference", "sparse")
PASSES = ("fwd", "fwdbwd")


@dataclass
class Row:
    size: str
    S: int
    N: int
    nnz: int
    H: int
    D: int
    arm: str
    passes: str
    median_ms: float | None
    runs: int
    gbps: float | None
    pct_copy_bw: float | None
    speedup_vs_reference: float | None
    note: str = ""


def machine_info(device: str) -> dict:
    """CPU model, threads, torch version, ISA, GPU name, load: printed with every result."""
    info = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["mingle-bench"] + sys.argv[1:]) if sys.argv and "mingle" in sys.argv[0] else " ".join(sys.argv),
    }
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    from mingle_bench import ops

    info["fused_available"] = ops.fused_available(device)
    if ops.fused_available():
        info["cpu_isa"] = str(torch.ops.mingle.cpu_isa())
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


def make_case(size: str, device: str, seed: int = 0, dtype: torch.dtype = torch.float32):
    """Random incidence (duplicates removed) and inputs for one size."""
    from mingle_bench.incidence import Incidence

    S, N, lo, hi, H, D = SIZES[size]
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(lo, hi + 1, (S,), generator=g)
    seg = torch.repeat_interleave(torch.arange(S), counts)
    src_ids = torch.randint(0, N, (seg.numel(),), generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate pairs are dropped, as in real visits
        inc = Incidence.from_pairs(src_ids, seg, num_nodes=N, num_edges=S)
    csr = inc.v2e.to(device)
    src = torch.randn(N, H, generator=g).to(device=device, dtype=dtype)
    dst = torch.randn(S, H, generator=g).to(device=device, dtype=dtype)
    val = torch.randn(N, H, D, generator=g).to(device=device, dtype=dtype)
    return csr, src, dst, val


def traffic_bytes(S: int, N: int, nnz: int, H: int, D: int, passes: str, elt: int = 4) -> int:
    fwd = 8 * (S + 1) + 8 * nnz + elt * nnz * H + elt * nnz * H * D + elt * S * H * D + elt * S * H
    if passes == "fwd":
        return fwd
    return fwd + 8 * (N + 1) + 8 * nnz + elt * nnz * H * D + elt * S * H * D + 2 * elt * N * H * D + elt * N * H


def sparse_softmax_aggregate(src, val, dst, csr, slope: float):
    """The torch.sparse arm: block-diagonal [S·H, N·H] softmax, then sparse @ dense."""
    S, N, H, D = csr.num_segments, csr.num_sources, src.shape[1], val.shape[2]
    seg, idx = csr.segment_ids, csr.indices
    z = src.index_select(0, idx) + dst.index_select(0, seg)                   # [nnz, H]
    z = torch.nn.functional.leaky_relu(z, slope)
    heads = torch.arange(H, device=src.device)
    rows = (seg[:, None] * H + heads).reshape(-1)
    cols = (idx[:, None] * H + heads).reshape(-1)
    # rows ascend with (segment, head) and, within a row, columns with source: already coalesced
    order = torch.argsort(rows * (N * H) + cols)
    A = torch.sparse_coo_tensor(torch.stack([rows[order], cols[order]]), z.reshape(-1)[order], (S * H, N * H),
                                is_coalesced=True, check_invariants=False)
    P = torch.sparse.softmax(A, dim=1)
    return torch.sparse.mm(P, val.reshape(N * H, D)).reshape(S, H, D)


def sync(device: str) -> None:
    """Wait for the device's queued kernels (CUDA); a no-op on the CPU."""
    if device == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth(device: str, mib: int = 512, reps: int = 5) -> float:
    """GB/s of ``dst.copy_(src)`` (bytes read + written) on ``device``."""
    n = mib * (1 << 20) // 4
    a = torch.empty(n, dtype=torch.float32, device=device).fill_(1.0)
    b = torch.empty_like(a)
    b.copy_(a)
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        b.copy_(a)
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * a.numel() * 4 / statistics.median(times) / 1e9


def arm_fn(arm: str, passes: str, csr, src, dst, val, slope: float) -> Callable[[], None]:
    """One timed call of ``arm`` (``fused``, ``reference``, ``sparse``) for ``passes`` (``fwd``, ``fwdbwd``)."""
    from mingle_bench import ops

    def forward(s, v, d):
        if arm == "sparse":
            return sparse_softmax_aggregate(s, v, d, csr, slope)
        return ops.segment_softmax_aggregate(s, v, csr.indptr, csr.indices, d, slope, impl=arm, csr=csr)

    if passes == "fwd":
        def run():
            with torch.no_grad():
                forward(src, val, dst)
        return run

    s_, v_, d_ = (t.detach().clone().requires_grad_() for t in (src, val, dst))

    def run_bwd():
        out = forward(s_, v_, d_)
        out.backward(torch.ones_like(out))
        s_.grad = v_.grad = d_.grad = None
    return run_bwd


def _mem_available() -> int:
    """Bytes of memory available to a new allocation (MemAvailable, page cache included)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 8 << 30


def _fits(arm: str, passes: str, S: int, N: int, nnz: int, H: int, D: int, device: str) -> str:
    """Empty string when the arm's temporaries fit in memory, else the reason to skip it."""
    if arm == "fused":
        return ""
    need = 3 * nnz * H * D * 4  # [nnz,H,D] gathered values, messages and their gradients
    if arm == "sparse" and passes == "fwdbwd":
        # torch.sparse.mm's backward to the sparse operand builds a dense [S*H, N*H] gradient
        need = max(need, S * H * N * H * 4)
    if device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        avail = free
    else:
        avail = _mem_available()
    if need > 0.5 * avail:
        return f"skipped: needs ~{need / 2**30:.1f} GiB of temporaries, {avail / 2**30:.1f} GiB free"
    return ""


def check_choices(sizes: list[str], arms: list[str], passes: list[str]) -> None:
    """One line naming the flag for an unknown size, arm or pass (before any folder or timing)."""
    for s in sizes:
        if s not in SIZES:
            raise ValueError(f"--sizes: unknown size {s!r}; choose from {', '.join(SIZES)}")
    for a in arms:
        if a not in ARMS:
            raise ValueError(f"--arms: unknown arm {a!r}; choose from {', '.join(ARMS)}")
    for p in passes:
        if p not in PASSES:
            raise ValueError(f"--passes: unknown pass {p!r}; choose from {', '.join(PASSES)}")


def profile(sizes: list[str], device: str = "cpu", arms: list[str] = list(ARMS), passes: list[str] = list(PASSES),
            repeats: int = 5, slope: float = 0.2, progress: Callable[[str], None] | None = None) -> tuple[list[Row], dict]:
    """Run every (size, pass, arm); returns the rows and the machine/bandwidth header."""
    from mingle_bench import ops

    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible")
    check_choices(sizes, arms, passes)
    if "fused" in arms and not ops.fused_available(device):
        raise ValueError(f"the fused arm needs the compiled extension for {device} "
                         f"(build it with `pip install --no-build-isolation -e .`); or pass --arms reference,sparse")
    say = progress or (lambda _m: None)
    header = machine_info(device)
    header["copy_gbps"] = round(copy_bandwidth(device), 2)
    say(f"copy bandwidth on {device}: {header['copy_gbps']} GB/s")
    rows: list[Row] = []
    for size in sizes:
        csr, src, dst, val = make_case(size, device)
        S, N, H, D = csr.num_segments, csr.num_sources, src.shape[1], val.shape[2]
        nnz = csr.nnz
        say(f"{size}: S={S} N={N} nnz={nnz} H={H} D={D}")
        for p in passes:
            fns, skip = {}, {}
            for arm in arms:
                why = _fits(arm, p, S, N, nnz, H, D, device)
                if why:
                    skip[arm] = why
                else:
                    fns[arm] = arm_fn(arm, p, csr, src, dst, val, slope)
            times: dict[str, list[float]] = {a: [] for a in fns}
            for fn in fns.values():  # warm-up (allocator, first-call costs)
                fn()
            sync(device)
            for _ in range(repeats):
                for arm, fn in fns.items():
                    t0 = time.perf_counter()
                    fn()
                    sync(device)
                    times[arm].append(time.perf_counter() - t0)
            ref = statistics.median(times["reference"]) if "reference" in times else None
            nbytes = traffic_bytes(S, N, nnz, H, D, p, elt=src.element_size())
            for arm in arms:
                if arm in skip:
                    rows.append(Row(size, S, N, nnz, H, D, arm, p, None, 0, None, None, None, skip[arm]))
                    continue
                med = statistics.median(times[arm])
                gbps = nbytes / med / 1e9
                rows.append(Row(size, S, N, nnz, H, D, arm, p, round(med * 1e3, 3), len(times[arm]), round(gbps, 2),
                                round(100 * gbps / header["copy_gbps"], 1),
                                round(ref / med, 2) if ref else None))
                say(f"  {p:7s} {arm:9s} {med * 1e3:10.2f} ms")
        del csr, src, dst, val
    return rows, header


def _table(rows: list[Row], fmt: str) -> str:
    from tabulate import tabulate

    head = ["size", "nnz", "arm", "pass", "median ms", "GB/s", "% copy BW", "x vs reference", "note"]
    body = [[r.size, r.nnz, r.arm, r.passes, r.median_ms, r.gbps, r.pct_copy_bw, r.speedup_vs_reference, r.note]
            for r in rows]
    return tabulate(body, head, tablefmt=fmt, floatfmt=".2f", missingval="-")


def _header_lines(header: dict) -> list[str]:
    host = f"{header['cpu']}, {header['cpu_count']} cores, torch threads {header['torch_threads']}"
    lines = [
        f"- machine: GPU {header['gpu']}; host {host}" if header.get("gpu") else f"- machine: CPU {host}",
        f"- torch {header['torch']}" + (f", CUDA {header['cuda']}" if header.get("cuda") else "")
        + (f", CPU kernels: {header['cpu_isa']}" if header.get("cpu_isa") else ""),
        f"- copy bandwidth measured in this run: {header['copy_gbps']} GB/s",
        f"- command: `{header['command']}`",
        f"- date: {header['date_utc']}" + (f"; load average at start {header['load_average']}"
                                            if header.get("load_average") else ""),
    ]
    return lines


def write_outputs(rows: list[Row], header: dict, out_dir: str | Path, stem: str) -> list[Path]:
    """Markdown, CSV, JSON and a PNG plot under ``out_dir`` (atomic writes)."""
    import csv
    import io

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def atomic(path: Path, data: bytes) -> None:
        written.append(atomic_write_bytes(path, data))

    md = [f"# Kernel profile: {stem}", "", *_header_lines(header), "", _table(rows, "github"), ""]
    atomic(out / f"{stem}.md", "\n".join(md).encode())
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(asdict(rows[0]).keys()) if rows else ["size"])
    w.writeheader()
    for r in rows:
        w.writerow(asdict(r))
    atomic(out / f"{stem}.csv", buf.getvalue().encode())
    atomic(out / f"{stem}.json", json.dumps({"header": header, "rows": [asdict(r) for r in rows]}, indent=2).encode())
    png = _plot(rows, header, stem)
    if png is not None:
        atomic(out / f"{stem}.png", png)
    return written


def _plot(rows: list[Row], header: dict, stem: str) -> bytes | None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in rows if r.median_ms is not None]
    if not timed:
        return None
    groups = sorted({(r.size, r.passes) for r in timed}, key=lambda k: (list(SIZES).index(k[0]), k[1]))
    arms = [a for a in ARMS if any(r.arm == a for r in timed)]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups)), 4))
    width = 0.8 / max(1, len(arms))
    for i, arm in enumerate(arms):
        xs, ys = [], []
        for j, key in enumerate(groups):
            hit = [r for r in timed if (r.size, r.passes) == key and r.arm == arm]
            if hit:
                xs.append(j + i * width)
                ys.append(hit[0].median_ms)
        ax.bar(xs, ys, width, label=arm)
    ax.set_xticks([j + width * (len(arms) - 1) / 2 for j in range(len(groups))])
    ax.set_xticklabels([f"{s}\n{p}" for s, p in groups])
    ax.set_yscale("log")
    ax.set_ylabel("median time (ms, log scale)")
    where = header.get("gpu") or f"{header['cpu']}, {header['torch_threads']} threads"
    ax.set_title(f"segment_softmax_aggregate — {where}\ntorch {header['torch']}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def render(rows: list[Row], header: dict) -> str:
    return "\n".join(_header_lines(header) + ["", _table(rows, "simple")])
