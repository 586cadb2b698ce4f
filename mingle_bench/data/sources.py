"""Source specs -> cached :class:`Cohort`.

``spec`` is one of:

- ``synthetic`` or ``synthetic:SIZE`` (SIZE in small, default, large, mimic), optionally
  ``synthetic:SIZE:SEED``: a MIMIC-III-shaped folder generated into the cache on first use
  (:mod:`mingle_bench.data.synthetic`) and read through the MIMIC-III loader;
- ``mimic3:DIR``: a MIMIC-III v1.4 folder (:mod:`mingle_bench.data.mimic3`);
- ``mimic4:DIR``: a MIMIC-IV v2.x folder with ``hosp/`` and optionally ``note/``
  (:mod:`mingle_bench.data.mimic4`);
- ``meds:DIR`` or ``meds:DIR;config=FILE``: a MEDS folder (``data/**/*.parquet`` and
  ``metadata/``) read with the default MIMIC-IV MEDS ETL conventions or those of a mapping file
  (:mod:`mingle_bench.data.meds`, :mod:`mingle_bench.data.meds_mapping`); its cohort key also
  covers the mapping's settings, so an edited mapping rebuilds the cohort;
- ``KIND:ARG`` of a plugin that called :func:`register_source` (entry-point group
  ``mingle_bench.sources`` or ``--plugin``; docs/extending.md).

The kinds are one registry (:class:`SourceKind`, :func:`register_source`, :func:`list_sources`).

Caches live under the cache root, ``$MINGLE_CACHE`` (else ``$XDG_CACHE_HOME/mingle-bench``, else
``~/.cache/mingle-bench``: :func:`mingle_bench.io.cache_root`)::

    synthetic/<size>-seed<seed>-g<version>-<source hash>/ generated CSV files
    cohorts/<kind>-<content hash>-l<loader fingerprint>/  tables *.parquet, meta.json,
                                                          note_texts.parquet, load_report.json
    file_hashes.json                                      (path, size, mtime) -> content hash memo

A cohort is keyed by the *content* of its source files (BLAKE2b of every table file), so an
edited file is re-parsed and an unchanged one is not; the memo only avoids re-hashing a
multi-GB file whose size and modification time are unchanged. Every cache write is atomic
(written under a temporary name, then renamed).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mingle_bench.data.cohort import Cohort, CorruptCache
from mingle_bench.io import atomic_write_text, cache_root, staged_dir, sweep_stale_staging
from mingle_bench.plugins import load_group

#: patients per synthetic preset; ``large`` is sized by a power calculation for the paper tables
#: (docs/data.md "synthetic:large": cvd needs ~2,300 test samples for a ±2-point 95% CI of an AUROC
#: difference, :func:`mingle_bench.report.power.required_test_samples`)
SIZES = {"small": 200, "default": 2000, "large": 25000, "mimic": 46000}
DEFAULT_SEED = 0
LOADER_VERSION = 2
_LOADER_MODULES = ("cohort.py", "csvio.py", "build.py", "mimic3.py", "mimic4.py", "report.py", "meds.py",
                   "meds_mapping.py")


def loader_fingerprint() -> str:
    """Loader version plus a hash of the loader's source: part of every cohort cache key, so a
    changed cleaning rule never serves a cohort built by the old one."""
    h = hashlib.blake2b(digest_size=4)
    here = Path(__file__).parent
    for name in _LOADER_MODULES:
        h.update((here / name).read_bytes())
    return f"{LOADER_VERSION}-{h.hexdigest()}"
@dataclass(frozen=True)
class SourceKind:
    """One kind of ``--data`` spec (``KIND:ARG``), the one registry of sources.

    ``parse(arg, spec) -> (arg, seed)`` checks the argument (a ``ValueError`` naming ``spec``);
    ``data_id(arg, seed, cache_root) -> str`` names the results folder; ``load(arg, seed,
    cache_root, progress) -> Cohort`` reads it. The built-in kinds (``load`` ``None``) are read
    by :func:`load_source` itself, with the content-addressed cohort cache; a plugin's kind
    brings its own ``load`` (and caching, if it wants one)."""

    name: str
    usage: str
    parse: Callable[[str, str], tuple[str, int]]
    data_id: Callable[[str, int, Path], str] | None = None
    load: Callable[[str, int, Path, bool], Cohort] | None = None


_SOURCES: dict[str, SourceKind] = {}


def register_source(name: str, *, usage: str | None = None, parse: Callable[[str, str], tuple[str, int]] | None = None,
                    data_id: Callable[[str, int, Path], str] | None = None,
                    load: Callable[[str, int, Path, bool], Cohort] | None = None,
                    builtin: bool = False) -> SourceKind:
    """Register a source kind: ``--data NAME:ARG`` then reaches ``load(arg, seed, cache_root,
    progress)``, which returns a :class:`~mingle_bench.data.cohort.Cohort`. ``parse`` defaults to
    "the argument is required"; ``data_id`` to ``NAME-<sha256 of ARG, 8 hex digits>``. A name is
    registered once (``ValueError`` otherwise)."""
    if not name or name != name.strip().lower() or ":" in name:
        raise ValueError(f"source kind must be a non-empty lower-case name without ':', got {name!r}")
    if name in _SOURCES:
        raise ValueError(f"source kind {name!r} is already registered")
    if load is None and not builtin:
        raise ValueError(f"source kind {name!r}: register_source needs load(arg, seed, cache_root, progress)")

    def needs_arg(arg: str, spec: str) -> tuple[str, int]:
        if not arg:
            raise ValueError(f"--data {spec!r}: {name} needs an argument ({usage or name + ':ARG'})")
        return arg, 0

    def default_id(arg: str, seed: int, root: Path) -> str:  # noqa: ARG001
        return f"{name}-{hashlib.sha256(arg.encode()).hexdigest()[:8]}"

    kind = SourceKind(name, usage or f"{name}:ARG", parse or needs_arg, data_id or default_id, load)
    _SOURCES[name] = kind
    return kind


def list_sources() -> list[str]:
    """The registered source kinds (plugins' included), built-in ones first."""
    load_group("mingle_bench.sources")
    return list(_SOURCES)


def expected() -> str:
    """The usage of every source kind, for error messages and ``--help``."""
    return ", ".join(_SOURCES[k].usage for k in list_sources())


def _parse_synthetic(arg: str, spec: str) -> tuple[str, int]:
    size, _, seed_s = arg.partition(":")
    size = size or "default"
    if size not in SIZES:
        raise ValueError(f"--data {spec!r}: unknown synthetic size {size!r}; choose one of {sorted(SIZES)}")
    try:
        seed = int(seed_s) if seed_s else DEFAULT_SEED
    except ValueError:
        raise ValueError(f"--data {spec!r}: synthetic seed {seed_s!r} is not an integer") from None
    return size, seed


def _parse_folder(kind: str) -> Callable[[str, str], tuple[str, int]]:
    def parse(arg: str, spec: str) -> tuple[str, int]:
        if not arg:
            raise ValueError(f"--data {spec!r}: {kind} needs a folder, e.g. {kind}:/path/to/{kind}")
        return arg, 0
    return parse


def _parse_meds(arg: str, spec: str) -> tuple[str, int]:
    from mingle_bench.data.meds_mapping import split_meds_arg

    directory, _config = split_meds_arg(arg)
    if not directory:
        raise ValueError(f"--data {spec!r}: meds needs a folder, e.g. meds:/path/to/meds "
                         "(or meds:DIR;config=FILE with a mapping file)")
    return arg, 0


def _synthetic_id(arg: str, seed: int, root: Path) -> str:  # noqa: ARG001
    return f"synthetic-{arg}" + ("" if seed == DEFAULT_SEED else f"-s{seed}")


def _folder_id(kind: str) -> Callable[[str, int, Path], str]:
    def data_id_(arg: str, seed: int, root: Path) -> str:  # noqa: ARG001
        return f"{kind}-{content_hash(source_files(kind, Path(arg).expanduser()), root)[:8]}"
    return data_id_


def _meds_id(arg: str, seed: int, root: Path) -> str:  # noqa: ARG001
    return f"meds-{_meds_source(arg, root)[2][:8]}"


register_source("synthetic", usage="synthetic[:SIZE]", parse=_parse_synthetic, data_id=_synthetic_id, builtin=True)
register_source("mimic3", usage="mimic3:DIR", parse=_parse_folder("mimic3"), data_id=_folder_id("mimic3"), builtin=True)
register_source("mimic4", usage="mimic4:DIR", parse=_parse_folder("mimic4"), data_id=_folder_id("mimic4"), builtin=True)
register_source("meds", usage="meds:DIR[;config=FILE]", parse=_parse_meds, data_id=_meds_id, builtin=True)


def parse_spec(spec: str) -> tuple[str, str, int]:
    """Split a source spec into (kind, argument, seed). Raises ValueError naming the spec."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"--data: empty source spec; expected one of {expected()}")
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    if kind not in list_sources():
        raise ValueError(f"--data {spec!r}: unknown source kind {kind!r}; expected one of {expected()}")
    arg, seed = _SOURCES[kind].parse(arg, spec)
    return kind, arg, seed


def source_files(kind: str, directory: Path) -> dict[str, Path]:
    """The table files a source reads (raises FileNotFoundError naming the expected files)."""
    if kind == "meds":
        from mingle_bench.data.meds import locate_meds

        return locate_meds(directory)
    if kind == "mimic4":
        from mingle_bench.data.mimic4 import locate_mimic4

        return locate_mimic4(directory)
    from mingle_bench.data.csvio import locate_tables
    from mingle_bench.data.mimic3 import MIMIC3_TABLES

    return locate_tables(directory, list(MIMIC3_TABLES), "MIMIC-III")


def file_digest(path: Path, memo: dict | None = None) -> str:
    """BLAKE2b-128 of a file's bytes (streamed); ``memo`` caches it by (size, mtime_ns)."""
    st = path.stat()
    key = str(path.resolve())
    if memo is not None:
        hit = memo.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    digest = h.hexdigest()
    if memo is not None:
        memo[key] = [st.st_size, st.st_mtime_ns, digest]
    return digest


def content_hash(files: dict[str, Path], root: Path) -> str:
    """One hash over the named table files' contents (order-independent of discovery)."""
    memo_path = root / "file_hashes.json"
    try:
        memo = json.loads(memo_path.read_text()) if memo_path.exists() else {}
    except (OSError, json.JSONDecodeError):
        memo = {}
    h = hashlib.blake2b(digest_size=16)
    for table in sorted(files):
        h.update(f"{table}\0{file_digest(files[table], memo)}\0".encode())
    try:
        atomic_write_text(memo_path, json.dumps(memo, indent=1, sort_keys=True))
    except OSError:
        pass  # a read-only cache still works, it only re-hashes next time
    return h.hexdigest()


def data_id(spec: str, cache_dir: str | os.PathLike | None = None) -> str:
    """A short filesystem-safe id naming results folders: ``synthetic-default``,
    ``synthetic-small-s7`` (non-default seed), ``mimic3-<hash8>``, ``mimic4-<hash8>``, ``meds-<hash8>``
    (the MEDS hash covers the mapping too)."""
    kind, arg, seed = parse_spec(spec)
    return _SOURCES[kind].data_id(arg, seed, cache_root(cache_dir))


def _meds_source(arg: str, root: Path):
    """(folder, mapping, content hash) of a ``meds:`` argument: the hash covers the shards, the
    metadata files and the mapping's settings (:meth:`MedsMapping.fingerprint`)."""
    from mingle_bench.data.meds_mapping import load_mapping, split_meds_arg

    directory, config = split_meds_arg(arg)
    folder = Path(directory).expanduser()
    mapping = load_mapping(config)
    files = source_files("meds", folder)
    h = hashlib.blake2b(digest_size=16)
    h.update(content_hash(files, root).encode())
    h.update(b"\0mapping\0" + mapping.fingerprint().encode())
    return folder, mapping, h.hexdigest()


def synthetic_dir(size: str, seed: int, cache_dir: str | os.PathLike | None = None, progress: bool = False) -> Path:
    """The generated MIMIC-III-shaped folder for a synthetic size and seed (generated on first use)."""
    from mingle_bench.data.synthetic import generate, generator_fingerprint

    root = cache_root(cache_dir) / "synthetic"
    final = root / f"{size}-seed{seed}-g{generator_fingerprint()}"
    if (final / "ADMISSIONS.csv").exists():
        return final
    _sweep_staging(root)
    with staged_dir(final) as tmp:
        if progress:
            print(f"[synthetic:{size}] generating {SIZES[size]:,} patients (seed {seed}) into {final}",
                  file=sys.stderr, flush=True)
        generate(tmp, patients=SIZES[size], seed=seed)
    return final


def _sweep_staging(folder: Path) -> None:
    """Remove what killed loads left in ``folder`` (staging folders untouched for 30 minutes)."""
    n, size = sweep_stale_staging(folder)
    if n:
        warnings.warn(f"removed {n} staging folder(s) left by killed loads in {folder} ({size / 2**20:.1f} MiB)",
                      stacklevel=3)


def _quarantine(final: Path, exc: Exception) -> None:
    """Move a cached cohort that fails its checks out of the way (a hidden name, swept later)."""
    warnings.warn(f"cached cohort {final} failed its check ({exc}); rebuilding it from the source files",
                  stacklevel=3)
    try:
        os.replace(final, final.with_name(f".{final.name}.corrupt-{os.getpid()}"))
    except OSError:
        shutil.rmtree(final, ignore_errors=True)


def load_source(spec: str = "synthetic", cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Cohort:
    """Load a source into a Cohort, parsing its files once and then reading the parquet cache."""
    kind, arg, seed = parse_spec(spec)
    root = cache_root(cache_dir)
    if _SOURCES[kind].load is not None:  # a plugin's source reads (and caches) itself
        cohort = _SOURCES[kind].load(arg, seed, root, progress)
        if not isinstance(cohort, Cohort):
            raise ValueError(f"--data {spec!r}: the {kind} source returned a {type(cohort).__name__}, not a Cohort")
        return cohort
    mapping = None
    if kind == "synthetic":
        directory = synthetic_dir(arg, seed, root, progress)
        label = f"synthetic:{arg}" + ("" if seed == DEFAULT_SEED else f":{seed}")
        reader_kind = "mimic3"
    elif kind == "meds":
        directory, mapping, digest = _meds_source(arg, root)
        label = f"{kind}:{arg}"
        reader_kind = kind
    else:
        directory = Path(arg).expanduser()
        label = f"{kind}:{arg}"
        reader_kind = kind
    if kind != "meds":
        digest = content_hash(source_files(reader_kind, directory), root)
    _sweep_staging(root / "cohorts")
    final = root / "cohorts" / f"{kind}-{digest[:16]}-l{loader_fingerprint()}"
    if (final / "meta.json").exists():
        try:
            cohort = Cohort.load(final)
        except CorruptCache as exc:
            _quarantine(final, exc)
        else:
            cohort.source = label
            if progress:
                print(f"[{label}] cohort loaded from cache {final}", file=sys.stderr, flush=True)
            return cohort
    with staged_dir(final) as tmp:  # another process may build the same cohort first; theirs is identical
        if reader_kind == "meds":
            from functools import partial

            from mingle_bench.data.meds import load_meds

            loader = partial(load_meds, mapping=mapping)
        elif reader_kind == "mimic4":
            from mingle_bench.data.mimic4 import load_mimic4 as loader
        else:
            from mingle_bench.data.mimic3 import load_mimic3 as loader
        from mingle_bench.data.csvio import interruptible

        cohort = interruptible(loader, directory, tmp, source=label, source_id=digest, progress=False)
        cohort.save(tmp)
        if progress:
            from mingle_bench.data.report import LoadReport

            print(LoadReport.from_dict(cohort.report).render(), file=sys.stderr, flush=True)
    cohort = Cohort.load(final)
    cohort.source = label
    return cohort
