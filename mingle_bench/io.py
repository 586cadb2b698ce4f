"""Files and the host: atomic writes, the cache root, the machine description.

Atomic writes. Every file the package writes (results, cached cohorts, embeddings, DeepWalk
features, profiles) goes through a temporary file in the target's own folder, is flushed to
disk (``fsync``) and then renamed over the target with ``os.replace``, so a killed process
leaves either the old file or the new one, never a torn one; on an error the temporary file
is removed. The temporary file is created by :func:`tempfile.mkstemp` (a new, unpredictable
name, opened exclusively) and a staged folder by :func:`tempfile.mkdtemp`; both then get the
mode a plain ``open``/``mkdir`` would give (0666/0777 less the umask), so a lab's shared results
or cache folder stays readable to colleagues.

- :func:`atomic_write_bytes`, :func:`atomic_write_text`, :func:`atomic_write_json`: the data
  is in memory;
- :func:`atomic_path`: for writers that take a path (pandas/pyarrow, DuckDB ``COPY``,
  safetensors, a streaming loop): yields the temporary path, renamed over the target when the
  ``with`` block ends without an error;
- :func:`staged_dir`: the same for a whole folder (a generated data set, a parsed cohort); a
  folder that another process put in place first is kept (both built the same content).
  :func:`sweep_stale_staging` removes the staging folders a killed process left behind.
- :func:`file_sha256`: the checksum the caches record and verify on read.

The cache root, :func:`cache_root`: ``$MINGLE_CACHE``, else ``$XDG_CACHE_HOME/mingle-bench``, else
``~/.cache/mingle-bench``; data, cohorts, DeepWalk features and embeddings live under it
(:mod:`mingle_bench.cachelock` guards it while in use).

The machine, :func:`machine_info`: a structured record of what can change a result's low bits
(the CPU's vendor, family, model and model name, torch's CPU capability, the BLAS, our kernel's
ISA, the thread count and the math-library environment variables), kept with every result;
:func:`machine_description` is the same as one line and :func:`cpu_model` its CPU name.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


# -- JSON --------------------------------------------------------------------------------
def json_default(o: Any):
    """``json.dumps(default=...)``: numpy scalars and arrays to Python, paths to strings."""
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def clean_nan(o: Any):
    """Replace float nan/inf by None so the JSON is standard (readable by any tool)."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: clean_nan(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean_nan(v) for v in o]
    return o


def to_json(obj: Any, *, indent: int | None = 2) -> str:
    """Standard JSON (nan -> null, numpy scalars to Python), keys in insertion order."""
    return json.dumps(clean_nan(obj), indent=indent, default=json_default, allow_nan=False)


# -- atomic writes -----------------------------------------------------------------------
def _with_path(exc: BaseException, path: Path) -> BaseException:
    """``exc`` naming ``path`` when it is an ``OSError`` without a file name (a full disk raises
    ``[Errno 28] No space left on device`` from a write or flush, naming nothing); else ``exc``."""
    if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
        new = OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))  # the errno's subclass
        new.__cause__ = exc
        return new
    return exc


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``.

    The temporary file already exists (empty; given the mode a plain ``open`` would give, 0666
    less the umask, so a shared results folder stays readable); writers open it for writing and
    truncate it (``open(tmp, "w")``, ``DataFrame.to_parquet``, DuckDB ``COPY ... TO``,
    ``safetensors.save_file``). The parent folder is created. On an exception the temporary
    file is removed and the target is left as it was; an ``OSError`` that names no file (a full
    disk) is raised again naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        named = _with_path(exc, path)
        if named is not exc:
            raise named from exc
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, os.replace)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` as UTF-8, atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """``obj`` as :func:`to_json` (indent 2, nan -> null) plus a newline, atomically."""
    return atomic_write_text(path, to_json(obj) + "\n")


def stored_json_equals(path: str | os.PathLike, obj: dict, ignore: tuple[str, ...] = ()) -> bool:
    """Whether the JSON object at ``path`` is ``obj`` as :func:`atomic_write_json` would store it
    (nan -> null, numpy scalars as Python), apart from the top-level keys ``ignore``; ``False`` when
    the file is missing, unreadable or not an object. Lets a writer leave an unchanged file alone."""
    try:
        old = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(old, dict):
        return False
    strip = lambda d: {k: v for k, v in d.items() if k not in ignore}  # noqa: E731
    return strip(old) == json.loads(to_json(strip(obj)))


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty folder beside ``final``; on success it is renamed to ``final``.

    If ``final`` was put in place by another process meanwhile, the rename fails and that
    folder is kept (callers stage content determined by ``final``'s name, so both are the
    same). The staging folder is always removed at the end, also on an exception; an ``OSError``
    that names no file (a full disk) is raised again naming ``final``.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        try:
            yield tmp
        except OSError as exc:
            named = _with_path(exc, final)
            if named is not exc:
                raise named from exc
            raise
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def array_bytes_sha256(a) -> str:
    """sha256 of an array's (or CPU tensor's) C-order bytes: the checksum the caches record."""
    if hasattr(a, "numpy"):
        a = a.contiguous().numpy()
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


#: a staging folder nothing has written to for this long was left by a killed process
STALE_STAGING_MINUTES = 30.0


def tree_bytes_and_mtime(path: str | os.PathLike) -> tuple[int, float]:
    """Total size of a folder's files and the newest modification time in it (itself included)."""
    size, newest = 0, os.lstat(path).st_mtime
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            newest = max(newest, st.st_mtime)
            if name in filenames:
                size += st.st_size
    return size, newest


def sweep_stale_staging(folder: str | os.PathLike, stale_minutes: float = STALE_STAGING_MINUTES) -> tuple[int, int]:
    """Remove the staging folders (hidden names, from :func:`staged_dir`) in ``folder`` that nothing
    has written to for ``stale_minutes``: a killed load leaves them behind. Younger ones may belong
    to a process working now and are kept. Returns (folders removed, bytes freed)."""
    import time

    folder = Path(folder)
    if not folder.is_dir():
        return 0, 0
    cutoff = time.time() - stale_minutes * 60
    removed = freed = 0
    for entry in sorted(folder.iterdir()):
        if not entry.name.startswith(".") or not entry.is_dir() or entry.is_symlink():
            continue
        try:
            size, newest = tree_bytes_and_mtime(entry)
        except FileNotFoundError:  # finished or removed meanwhile
            continue
        if newest > cutoff:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed += 1
        freed += size
    return removed, freed


# -- the cache root ------------------------------------------------------------------------
def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$MINGLE_CACHE``, else ``$XDG_CACHE_HOME/mingle-bench``,
    else ``~/.cache/mingle-bench``. An empty or relative ``$XDG_CACHE_HOME`` is ignored, as the XDG
    Base Directory specification says."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("MINGLE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "mingle-bench"


# -- the machine ---------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` reports."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process and of its waited-for children, in MiB (None where
    the platform does not report it)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    kib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return round(kib / 1024, 1)  # Linux reports KiB


#: environment variables that change which CPU code paths torch, MKL, oneDNN and our op take
MATH_ENV_VARS: tuple[str, ...] = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA",
                                  "DNNL_MAX_CPU_ISA", "MINGLE_CPU_ISA", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_CPUINFO_KEYS = {"vendor_id": "vendor", "cpu family": "family", "model": "model", "model name": "model_name",
                 "stepping": "stepping"}
_LSCPU_KEYS = {"Vendor ID": "vendor", "CPU family": "family", "Model": "model", "Model name": "model_name",
               "Stepping": "stepping"}


def _parse_cpu_fields(text: str, keys: dict[str, str], sep: str = ":") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:  # /proc/cpuinfo: the first processor's block is enough
                break
            continue
        key, _, value = line.partition(sep)
        name = keys.get(key.strip())
        if name and name not in out:
            value = value.strip()
            out[name] = int(value) if name in ("family", "model", "stepping") and value.isdigit() else value
    return out


def cpu_info() -> dict[str, Any]:
    """The CPU: ``{"vendor", "family", "model", "stepping", "model_name"}`` from ``/proc/cpuinfo``,
    else from ``lscpu``, else the model name :mod:`platform` reports (the other keys absent).
    Family and model are the decimal numbers ``/proc/cpuinfo`` prints (e.g. AMD EPYC Milan: 25, 1)."""
    info: dict[str, Any] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            info = _parse_cpu_fields(fh.read(), _CPUINFO_KEYS)
    except OSError:
        pass
    if not info.get("family"):
        import subprocess

        try:
            text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5, check=False).stdout
            info = {**_parse_cpu_fields(text, _LSCPU_KEYS), **info}
        except (OSError, subprocess.SubprocessError):
            pass
    info.setdefault("model_name", platform.processor() or platform.machine())
    return info


def torch_blas(config_text: str | None = None) -> dict[str, str]:
    """The BLAS torch was built with, parsed from ``torch.__config__.show()`` (or ``config_text``):
    ``{"blas": "mkl", "blas_version": "Intel(R) oneAPI Math Kernel Library Version ...", "onednn": "v3.12.0"}``
    (keys absent where the build does not say)."""
    import re

    if config_text is None:
        import torch

        config_text = torch.__config__.show()
    out: dict[str, str] = {}
    m = re.search(r"BLAS_INFO=([^,\s]+)", config_text)
    if m:
        out["blas"] = m.group(1)
    for line in config_text.splitlines():
        line = line.strip().lstrip("- ").strip()
        if "Math Kernel Library" in line or "OpenBLAS" in line or "BLIS" in line:
            out.setdefault("blas_version", line)
        m = re.match(r"Intel\(R\) MKL-DNN (v[\d.]+)|oneDNN (v[\d.]+)", line)
        if m:
            out.setdefault("onednn", m.group(1) or m.group(2))
    return out


def kernel_isa() -> str:
    """The ISA the fused CPU op (``csrc/cpu``) dispatches to in this process: ``"avx2"`` (AVX2+FMA)
    or ``"base"`` (the op's ``cpu_isa()``: the CPU's support, unless ``MINGLE_CPU_ISA=base``);
    ``"reference"`` when the compiled extension does not load (the pure-PyTorch path runs);
    ``"unknown"`` for an extension built before the op reported it."""
    import torch

    try:
        from mingle_bench import _C  # noqa: F401  (the op's binary: registers torch.ops.mingle)
    except (ImportError, OSError):
        return "reference"
    if not hasattr(torch.ops.mingle, "segment_softmax_aggregate"):
        return "reference"
    try:
        return str(torch.ops.mingle.cpu_isa())
    except (AttributeError, RuntimeError):
        return "unknown"


def machine_info(device: str | None = None) -> dict[str, Any]:
    """What can change a result's low bits, as a dict recorded in ``config.json`` and every cell:
    ``os``, ``cpu`` (:func:`cpu_info`), ``cpu_cores``, ``torch``, ``torch_threads``,
    ``torch_cpu_capability`` (``torch.backends.cpu.get_cpu_capability()``: the ATen kernels' ISA,
    e.g. ``AVX2``/``AVX512``), the BLAS (:func:`torch_blas`), ``kernel_isa`` (:func:`kernel_isa`),
    ``env`` (those of :data:`MATH_ENV_VARS` that are set), ``math`` (the math mode in effect,
    :func:`mingle_bench.mathmode.status`), ``device`` and ``gpu`` (CUDA only)."""
    info: dict[str, Any] = {"os": f"{platform.system()} {platform.machine()}", "cpu": cpu_info(),
                            "cpu_cores": os.cpu_count()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
        info.update(torch_blas())
        info["kernel_isa"] = kernel_isa()
        from mingle_bench.mathmode import status as math_status

        info["math"] = math_status()
        if device and device.startswith("cuda") and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    info["env"] = {k: os.environ[k] for k in MATH_ENV_VARS if os.environ.get(k)}
    if device:
        info["device"] = device
    return info


def cpu_label(info: dict[str, Any] | None) -> str:
    """A CPU as one phrase: ``AMD EPYC (AuthenticAMD family 25 model 17; torch AVX512; kernel avx2)``."""
    if not info:
        return "unknown CPU"
    cpu = info.get("cpu") or {}
    ident = " ".join(str(x) for x in (cpu.get("vendor"), cpu.get("family") is not None and f"family {cpu['family']}",
                                      cpu.get("model") is not None and f"model {cpu['model']}") if x)
    inner = "; ".join(x for x in (ident, info.get("torch_cpu_capability") and f"torch {info['torch_cpu_capability']}",
                                  info.get("kernel_isa") and f"kernel {info['kernel_isa']}") if x)
    return f"{cpu.get('model_name') or 'unknown CPU'}" + (f" ({inner})" if inner else "")


def machine_description(device: str | None = None, info: dict[str, Any] | None = None) -> str:
    """:func:`machine_info` (or ``info``) as one line: OS, CPU (model name, vendor, family, model),
    core count, torch version and threads, torch's CPU capability, BLAS, kernel ISA, GPU, device."""
    info = info or machine_info(device)
    parts = [info["os"], cpu_label({"cpu": info.get("cpu")}), f"{info.get('cpu_cores')} CPU cores"]
    if info.get("torch"):
        parts.append(f"torch {info['torch']}, {info.get('torch_threads')} threads, CPU capability "
                     f"{info.get('torch_cpu_capability')}, BLAS {info.get('blas', 'unknown')}")
        parts.append(f"kernel ISA {info.get('kernel_isa')}")
    if info.get("math"):
        parts.append(f"math {info['math'].get('mode')}")
    if info.get("gpu"):
        parts.append(f"GPU {info['gpu']}")
    if info.get("env"):
        parts.append(" ".join(f"{k}={v}" for k, v in sorted(info["env"].items())))
    if device or info.get("device"):
        parts.append(f"device {device or info['device']}")
    return "; ".join(parts)
