"""Timing one MINGLE training epoch, full-graph, with the fused op and with the reference op.

Used by ``mingle-bench profile-model`` and ``benchmarks/bench_models.py``. The hypergraph is
built directly with MIMIC-III's size statistics
(:func:`~mingle_bench.profiling.random_task_data.make_random_task_data`):
timing depends on the incidence structure and widths, not on feature values.
"""
from __future__ import annotations

import platform
import resource
import statistics
import time
from typing import Any, Callable

import torch

# visits, codes, raw code draws per visit (~94 distinct per visit after de-duplication at "mimic")
SIZES: dict[str, dict[str, float]] = {
    "small": {"visits": 2000, "codes": 500, "draws": 22},
    "default": {"visits": 10000, "codes": 2000, "draws": 55},
    "mimic": {"visits": 36875, "codes": 7423, "draws": 105},
}
PAPER_HPARAMS = {"hidden": 48, "heads": 4, "layers": 2}


def model_hparams(model_name: str) -> dict[str, Any]:
    """The widths a model is profiled at: its own defaults for the keys of :data:`PAPER_HPARAMS`
    that it declares (MINGLE and HypEHR: the paper's 48 / 4 heads / 2 layers; HyperGAT: its 100
    hidden and 2 layers, no heads)."""
    from mingle_bench.pipeline import model_defaults

    declared = model_defaults(model_name)
    return {k: declared[k] for k in PAPER_HPARAMS if k in declared}


def build_profile_data(size: str, n_labels: int = 25, d_llm: int = 384, d_struct: int = 64, seed: int = 0):
    """A ``TaskData`` of the named size: one visit per sample, MINGLE-style self-loops."""
    from mingle_bench.profiling.random_task_data import make_random_task_data

    if size not in SIZES:
        raise ValueError(f"--size must be one of {', '.join(SIZES)}, got {size!r}")
    s = SIZES[size]
    return make_random_task_data(n_samples=int(s["visits"]), n_labels=n_labels, n_nodes=int(s["codes"]),
                                 codes_per_visit=float(s["draws"]), max_visits=1, d_struct=d_struct, d_llm=d_llm,
                                 note_fraction=0.8, seed=seed)


def epoch_step(model, data) -> Callable[[], None]:
    """One full-graph training epoch as a callable: the trainer's
    :func:`~mingle_bench.training.train_step` (forward, backward, clipping, an Adam step) on all
    train samples (the model is put in training mode)."""
    from mingle_bench.training import train_step

    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-3)
    idx = data.split_idx["train"]
    batch = {"idx": idx, "labels": data.labels[idx]}
    model.train()

    def step() -> None:
        train_step(model, batch, opt)
    return step


def time_epochs(model, data, epochs: int, warmup: int = 1, cpu_times: list[float] | None = None) -> list[float]:
    """Seconds per training epoch (:func:`epoch_step`).

    ``cpu_times``, when given, receives the process CPU seconds of each timed epoch (all threads),
    a measure that stays meaningful on a machine shared with other jobs.
    """
    step = epoch_step(model, data)
    times = []
    for i in range(warmup + epochs):
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        t, c = time.perf_counter(), time.process_time()
        step()
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
            if cpu_times is not None:
                cpu_times.append(time.process_time() - c)
    return times


def profile_mingle(size: str = "mimic", threads: int = 2, epochs: int = 3, impls: tuple[str, ...] = ("fused", "reference"),
                   device: str = "cpu", model_name: str = "mingle", data=None) -> dict[str, Any]:
    """Median epoch time per op implementation, with the graph's statistics."""
    from mingle_bench import ops
    from mingle_bench.devices import resolve_device
    from mingle_bench.zoo import get_model

    dev = resolve_device(device)
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    if data is None:
        data = build_profile_data(size)
    inc = data.graph.incidence
    out: dict[str, Any] = {
        "model": model_name, "size": size, "visits": data.n_visits, "codes": data.n_nodes,
        "hyperedges": int(data.graph.num_edges), "incidences": int(inc.nnz),
        "mean_codes_per_visit": round((inc.nnz - data.n_nodes) / max(data.n_visits, 1), 1),
        **model_hparams(model_name), "threads": torch.get_num_threads(), "device": str(dev), "epochs_timed": epochs,
        "fused_available": bool(ops.fused_available(dev)), "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    for impl in impls:
        key = f"{impl}_epoch_s"
        if impl == "fused" and not ops.fused_available(dev):
            out[key] = None
            out["fused_note"] = f"extension not built: {ops.extension_error() or 'unavailable on ' + str(dev)}"
            continue
        torch.manual_seed(0)
        model = get_model(model_name)(data, impl=impl, **model_hparams(model_name)).to(dev)
        cpu: list[float] = []
        times = time_epochs(model, data, epochs, cpu_times=cpu)
        out[key] = round(statistics.median(times), 4)
        out[f"{impl}_epoch_cpu_s"] = round(statistics.median(cpu), 4)
        out[f"{impl}_epoch_s_all"] = [round(t, 4) for t in times]
        out[f"{impl}_impl_ran"] = model.impl_used
        out["n_params"] = model.n_params()
        del model
    f, r = out.get("fused_epoch_s"), out.get("reference_epoch_s")
    if f and r:
        out["speedup"] = round(r / f, 2)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out
