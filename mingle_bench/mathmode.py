"""The CPU math mode: bit-reproducible training on any x86-64 CPU with AVX2 (``reproducible``, the
default of every command) or the fastest kernels this CPU has (``native``).

Why (measured; docs/reproducibility.md gives the runs): on one machine training is deterministic,
but which kernels run depends on the CPU, and the hypergraph models' low bits depend on them.

* **torch's CPU-capability dispatch** (ATen picks ``DEFAULT``, ``AVX2`` or ``AVX512`` kernels for
  softmax, reductions, element-wise ops at run time from CPUID): on an AVX-512 EPYC, MINGLE, HypEHR
  and HyperGAT trained with ``ATEN_CPU_CAPABILITY=avx2`` give other test predictions (sha256) than
  with the default (``AVX512``), and ``default`` others again.
* **MKL's code branch** (its sgemm blocking and kernels are chosen per CPU): ``MKL_CBWR=AVX2``
  changes the same three models' predictions on that CPU. MKL's Conditional Numerical
  Reproducibility pins one branch, whose results MKL documents as the same on every CPU that
  supports it.
* **oneDNN's ISA** (``ONEDNN_MAX_CPU_ISA=AVX2``): no effect on these fp32 runs (oneDNN is not on
  their path).
* **Our op's kernels**: ``MINGLE_CPU_ISA=base`` (its scalar kernels) changes the predictions too,
  but the op dispatches its AVX2+FMA kernels on every CPU that has them, whatever else the CPU
  has, so on AVX2 machines they are already the same everywhere.

* **the thread count** (measured, docs/reproducibility.md): ATen splits a reduction over more
  than 32,768 elements into one chunk per intra-op thread, so a loss mean over a large batch,
  BatchNorm's statistics and the gradient-norm clip change their low bits with
  ``torch.get_num_threads()``; MINGLE, HypEHR and HyperGAT trained with 1 and with 2 threads give
  other predictions (RETAIN, GRAM and the references do not). MKL's strict CNR GEMMs, our op,
  index_add/scatter_add, softmax and layer norm gave the same bits with 1 and 2 threads.

``reproducible`` therefore pins ``ATEN_CPU_CAPABILITY=avx2`` and ``MKL_CBWR=AVX2,STRICT``
(:data:`PINNED_ENV`) and the intra-op thread count (``OMP_NUM_THREADS``: :data:`PINNED_THREADS`,
the count the committed references were trained with, or ``$MINGLE_THREADS``; more threads are
faster on a large cohort and give ``equivalent``, not ``identical``, cells) before torch is
imported, so the same inputs run the same kernels with the same work split on every x86-64 CPU
with AVX2 (Intel since Haswell, AMD since Zen). It cannot be switched on after torch has been
imported in the process (the settings are read once); :func:`status` says whether it is
in effect, and every results config and cell records it. A CPU without AVX2 falls back to ATen's
``DEFAULT`` kernels and is reported as such. ``native`` leaves torch and MKL to choose.

The mode is chosen by ``--math reproducible|native`` anywhere on the command line or by
``$MINGLE_MATH``. It is not part of any input hash: it changes floating-point rounding, not
inputs, and the reference check (:mod:`mingle_bench.report.reference`) tells bit-identical cells
from ones within floating-point variation.

Bottom module: the standard library only (torch is imported lazily by :func:`status`).
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator, Sequence

MODES: tuple[str, ...] = ("reproducible", "native")
DEFAULT_MODE = "reproducible"
ENV_VAR = "MINGLE_MATH"
FLAG = "--math"
#: what ``reproducible`` sets before torch is imported
PINNED_ENV: dict[str, str] = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT"}
#: the intra-op thread count ``reproducible`` runs torch with unless ``$MINGLE_THREADS`` says otherwise
PINNED_THREADS = 2
THREADS_VAR = "MINGLE_THREADS"

_applied: dict[str, Any] = {"mode": None, "applied": False, "reason": ""}


class MathModeError(ValueError):
    """A bad ``--math`` / ``$MINGLE_MATH`` value (one line)."""


def _check(mode: str, source: str) -> str:
    if mode not in MODES:
        raise MathModeError(f"{source} must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def take_from_argv(argv: list[str]) -> tuple[str, list[str]]:
    """The mode asked for by ``--math MODE`` / ``--math=MODE`` anywhere in ``argv`` (else
    ``$MINGLE_MATH``, else :data:`DEFAULT_MODE`), and ``argv`` without that option."""
    rest: list[str] = []
    mode = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == FLAG:
            if i + 1 >= len(argv):
                raise MathModeError(f"{FLAG} needs a value: {' or '.join(MODES)}")
            mode = _check(argv[i + 1], FLAG)
            i += 2
            continue
        if a.startswith(FLAG + "="):
            mode = _check(a.split("=", 1)[1], FLAG)
        else:
            rest.append(a)
        i += 1
    if mode is None:
        env = os.environ.get(ENV_VAR, "").strip()
        mode = _check(env, f"${ENV_VAR}") if env else DEFAULT_MODE
    return mode, rest


def pinned_threads() -> int:
    """The thread count ``reproducible`` pins: ``$MINGLE_THREADS`` (a positive integer) or
    :data:`PINNED_THREADS`."""
    raw = os.environ.get(THREADS_VAR, "").strip()
    if not raw:
        return PINNED_THREADS
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise MathModeError(f"${THREADS_VAR} must be a positive integer, got {raw!r}")
    return n


def apply(mode: str = DEFAULT_MODE) -> dict[str, Any]:
    """Put ``mode`` in effect for this process: for ``reproducible``, set :data:`PINNED_ENV` and
    ``OMP_NUM_THREADS`` (:func:`pinned_threads`; also inherited by worker processes started from
    here, local Ray workers included). It takes effect only if torch has not been imported yet;
    otherwise nothing is changed and the reason is kept. A bad ``$MINGLE_THREADS`` raises
    :class:`MathModeError`."""
    _check(mode, "math mode")
    threads = pinned_threads() if mode == "reproducible" else None
    _applied.update(mode=mode, applied=False, reason="")
    if mode == "native":
        _applied["applied"] = True
        return dict(_applied)
    if "torch" in sys.modules:
        _applied["reason"] = "torch was imported before the math mode could be set"
        return dict(_applied)
    os.environ.update(PINNED_ENV)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    _applied["applied"] = True
    return dict(_applied)


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover (not Linux)
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def encoding_threads() -> Iterator[int | None]:
    """Run the block (text encoding) with every available CPU while the reproducible mode's thread
    pin is in effect, then restore the pinned count; yields the count used (``None``: unchanged).

    The pin exists for training (large reductions change bits with the thread count). The text
    encoder's vectors did not: all-MiniLM-L6-v2's output in this mode was bit-identical with 1, 2
    and 3 threads (MKL's strict-CNR GEMMs, row-wise layer norm and softmax, per-text pooling), so
    encoding need not run on 2 threads on a machine with more cores. A vector that did move would
    show in the cells' ``computed_sha256`` and the reference check's cause line."""
    if _applied["mode"] != "reproducible" or not _applied["applied"] or "torch" not in sys.modules:
        yield None
        return
    import torch

    before = torch.get_num_threads()
    n = max(before, available_cpus())
    if n == before:
        yield None
        return
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def status() -> dict[str, Any]:
    """What is in effect: ``requested`` (the mode asked for, or ``None`` when :func:`apply` never
    ran, e.g. the library used from Python), ``mode`` (``reproducible`` when torch runs its AVX2
    kernels and MKL the pinned branch, ``native`` otherwise), ``torch_cpu_capability``,
    ``mkl_cbwr`` and, when the two differ, ``reason``."""
    import torch

    cap = str(torch.backends.cpu.get_cpu_capability())
    uses_mkl = bool(getattr(torch.backends, "mkl", None) and torch.backends.mkl.is_available())
    cbwr = os.environ.get("MKL_CBWR", "")
    pinned = cap == "AVX2" and (not uses_mkl or cbwr.split(",")[0].upper() == "AVX2")
    out: dict[str, Any] = {"requested": _applied["mode"], "mode": "reproducible" if pinned else "native",
                           "torch_cpu_capability": cap, "mkl_cbwr": cbwr or None,
                           "threads": int(torch.get_num_threads())}
    if _applied["mode"] == "reproducible" and not pinned:
        out["reason"] = _applied["reason"] or (
            "this CPU has no AVX2 (ATen runs its DEFAULT kernels)" if cap == "DEFAULT" else
            f"ATEN_CPU_CAPABILITY/MKL_CBWR were overridden (ATen {cap}, MKL_CBWR {cbwr or 'unset'})")
    return out


def describe(st: dict[str, Any] | None = None) -> str:
    """One line, e.g. ``math reproducible (ATen AVX2, MKL_CBWR AVX2,STRICT, 2 threads)``."""
    st = st or status()
    threads = f", {st['threads']} threads" if st.get("threads") else ""
    return (f"math {st['mode']} (ATen {st['torch_cpu_capability']}, MKL_CBWR {st['mkl_cbwr'] or 'unset'}{threads})"
            + (f"; {st['reason']}" if st.get("reason") else ""))

