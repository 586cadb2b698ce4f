"""``mingle-bench cache info|clear`` and ``mingle-bench profile-encoder``."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from mingle_bench.commands import CACHE_DIR_HELP
from mingle_bench.encoders.precision import PRECISIONS
from mingle_bench.io import STALE_STAGING_MINUTES

#: data cache folders under the cache root that ``cache clear --cohorts`` empties
DATA_CACHE_FOLDERS = ("cohorts", "synthetic")
CLEAR_DESCRIPTION = (
    "Delete cached embeddings (--embeddings, the default), parsed cohorts and generated synthetic data "
    "(--cohorts), or both (--all). Every clear also removes staging folders left by killed loads (names starting "
    "with '.' under cohorts/ and synthetic/) that nothing has written to for --stale-minutes; younger ones may "
    "belong to a load running now and are kept. While another command uses the cache (run, tune, reproduce, "
    "task show, data info|export|signal), the clear refuses, naming each such process, and clears nothing; "
    "--wait waits for them instead.")


def register(sub) -> None:
    cache = sub.add_parser("cache", help="inspect or clear the embedding cache",
                           description="Inspect or clear the caches under the cache root ($MINGLE_CACHE, else "
                                       "$XDG_CACHE_HOME/mingle-bench, else ~/.cache/mingle-bench): embeddings/, "
                                       "cohorts/, synthetic/.")
    cache_sub = cache.add_subparsers(dest="cache_command", metavar="ACTION")
    info = cache_sub.add_parser("info", help="namespaces, entries and sizes (plus other cache folders' sizes)")
    info.add_argument("--cache-dir", default=None, help=CACHE_DIR_HELP + "; the embeddings are in its embeddings/")
    info.add_argument("--root", help=argparse.SUPPRESS)  # the embedding folder itself (the old spelling; hidden)
    info.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    info.set_defaults(func=_cache_info)
    clear = cache_sub.add_parser("clear", help="delete cached embeddings (default), cohorts (--cohorts) or both (--all)",
                                 description=CLEAR_DESCRIPTION)
    what = clear.add_mutually_exclusive_group()
    what.add_argument("--embeddings", dest="what", action="store_const", const="embeddings",
                      help="the embedding cache (default)")
    what.add_argument("--cohorts", dest="what", action="store_const", const="cohorts",
                      help="parsed cohorts ($MINGLE_CACHE/cohorts) and generated synthetic data ($MINGLE_CACHE/synthetic)")
    what.add_argument("--all", dest="what", action="store_const", const="all", help="embeddings and cohorts")
    clear.set_defaults(what="embeddings")
    clear.add_argument("--cache-dir", default=None, help=CACHE_DIR_HELP + " (holding embeddings/, cohorts/, synthetic/)")
    clear.add_argument("--root", help=argparse.SUPPRESS)  # the embedding folder itself (the old spelling; hidden)
    clear.add_argument("--wait", action="store_true",
                       help="if other processes use the cache, wait for them to finish (default: refuse, naming them)")
    clear.add_argument("--stale-minutes", type=float, default=STALE_STAGING_MINUTES,
                       help=f"remove leftover staging folders untouched for this long (default {STALE_STAGING_MINUTES:g})")
    clear.add_argument("--json", action="store_true", help="print one JSON object (what was removed and freed)")
    clear.set_defaults(func=_cache_clear)
    cache.set_defaults(func=lambda args: (cache.print_help(), 2)[1])

    prof = sub.add_parser("profile-encoder", help="texts/s of an encoder for concept names and notes",
                          description="Measure encoder throughput on generated concept names and clinical "
                                      "notes: names/s, notes/s at one window, and chunked notes/s.")
    prof.add_argument("--encoder", default="default", help="default | hf:PATH[?pooling=cls] | openai:MODEL")
    prof.add_argument("--names", type=int, default=512, help="concept names to embed (default 512)")
    prof.add_argument("--notes", dest="n_notes", type=int, default=64, help="notes to embed (default 64)")
    prof.add_argument("--note-words", type=int, default=200, help="words per note (default 200)")
    prof.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (default 3)")
    prof.add_argument("--threads", type=int, help="torch intra-op threads (default: the math mode's: 2 under "
                      "--math reproducible, torch's choice under native)")
    prof.add_argument("--device", help="auto | cpu | cuda (local encoders)")
    prof.add_argument("--batch-tokens", type=int, help="padded tokens per forward batch")
    prof.add_argument("--precision", default="fp32", metavar="P[,P...]",
                      help="compute precisions to profile, comma-separated from fp32, bf16, auto (default fp32); "
                           "with fp32 in the list, the others report their speedup and min cosine vs fp32")
    prof.add_argument("--json", nargs="?", const=True, default=False, metavar="",
                      help="print the results as one JSON object on stdout instead of the table")
    prof.add_argument("--out", default=None, metavar="PATH", help="also write the results as JSON to PATH")
    prof.set_defaults(func=_profile)


def _root(args):
    """The embedding cache: ``--root`` (the folder itself; hidden, the old spelling), else
    ``<--cache-dir>/embeddings``, else the default cache root's."""
    from mingle_bench.encoders.cache import EmbeddingCache
    from mingle_bench.io import cache_root

    if getattr(args, "root", None):
        return EmbeddingCache(args.root)
    return EmbeddingCache(cache_root(args.cache_dir) / "embeddings" if getattr(args, "cache_dir", None) else None)


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _lock_roots(args) -> list[Path]:
    """The cache roots whose lock guards what ``args`` names: the cache root (``--cache-dir``), and
    the folder holding ``--root`` where that embedding cache lies elsewhere (runs use ``<root>/embeddings``)."""
    from mingle_bench.io import cache_root

    roots = {os.path.realpath(cache_root(getattr(args, "cache_dir", None))): cache_root(getattr(args, "cache_dir", None))}
    if getattr(args, "root", None):
        parent = Path(args.root).expanduser().parent
        roots.setdefault(os.path.realpath(parent), parent)
    return [roots[k] for k in sorted(roots)]  # one order in every process: no lock-order deadlock


def _cache_info(args) -> int:
    from dataclasses import asdict

    from mingle_bench.cachelock import users

    info = _root(args).info()
    info["in_use"] = [asdict(u) for root in _lock_roots(args) for u in users(root)]
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"embedding cache: {info['root']} ({_fmt_bytes(info['bytes'])})")
    if info["namespaces"]:
        table = Table("namespace", "encoder", "kind", "params", "entries", "shards", "size")
        table.columns[1].overflow = "fold"
        for ns in info["namespaces"]:
            params = dict(ns["params"])
            kind = params.pop("kind", "?")
            table.add_row(ns["namespace"][:12], ns["identity"], kind,
                          ", ".join(f"{k}={v}" for k, v in params.items()),
                          str(ns["entries"]), str(ns["shards"]) + (f" ({ns['unreadable_shards']} unreadable)"
                                                                  if ns["unreadable_shards"] else ""),
                          _fmt_bytes(ns["bytes"]))
        console.print(table)
    else:
        console.print("no cached embeddings")
    for name, size in info["other_cache_folders"].items():
        console.print(f"other cache folder beside it: {name}/ ({_fmt_bytes(size)})")
    for u in info["in_use"]:
        console.print(f"in use by pid {u['pid']} ({u['mode']}, since {u['since']} UTC): {u['command']}",
                      markup=False, highlight=False, soft_wrap=True)
    return 0


def _remove(path: Path) -> None:
    """Rename ``path`` to a hidden name (so it vanishes at once), then delete it."""
    doomed = path.with_name(f".{path.name}.deleting-{os.getpid()}")
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def clear_data_caches(root: Path, *, everything: bool, stale_minutes: float) -> tuple[int, int, int]:
    """Under ``root/cohorts`` and ``root/synthetic``: remove leftover staging folders (hidden names)
    untouched for ``stale_minutes``, and with ``everything`` every finished entry too.

    Returns (entries removed, stale staging folders removed, bytes freed). A staging folder that
    changed more recently may belong to a load running now and is kept.
    """
    from mingle_bench.io import sweep_stale_staging, tree_bytes_and_mtime

    removed = stale = freed = 0
    for name in DATA_CACHE_FOLDERS:
        folder = root / name
        if not folder.is_dir():
            continue
        n, size = sweep_stale_staging(folder, stale_minutes)
        stale += n
        freed += size
        if not everything:
            continue
        for entry in sorted(folder.iterdir()):
            if not entry.name.startswith(".") and entry.is_dir() and not entry.is_symlink():
                size, _ = tree_bytes_and_mtime(entry)
                _remove(entry)
                removed += 1
                freed += size
    return removed, stale, freed


def _cache_clear(args) -> int:
    """Clear under the exclusive cache lock of every root involved (:mod:`mingle_bench.cachelock`):
    refused, naming the processes using the cache, unless ``--wait``."""
    import contextlib

    from mingle_bench.cachelock import CacheInUse, exclusive
    from mingle_bench.commands import CLIError

    if not args.stale_minutes >= 0:
        raise CLIError(f"--stale-minutes must be >= 0, got {args.stale_minutes}")
    with contextlib.ExitStack() as stack:
        try:
            for lock_root in _lock_roots(args):
                stack.enter_context(exclusive(lock_root, wait=args.wait))
        except CacheInUse as exc:
            raise CLIError(f"{exc}; nothing was cleared (rerun when it has finished, or add --wait to wait "
                           "for it)") from None
        return _clear_locked(args)


def _clear_locked(args) -> int:
    from mingle_bench.io import cache_root

    root = cache_root(args.cache_dir)
    report: dict = {"cache_root": str(root), "cleared": args.what}
    say = (lambda _m: None) if getattr(args, "json", False) else print
    if args.what in ("embeddings", "all"):
        cache = _root(args)
        freed = cache.clear()
        report["embeddings"] = {"folder": str(cache.root), "bytes_freed": int(freed)}
        say(f"cleared {cache.root} ({_fmt_bytes(freed)} freed)")
    removed, stale, freed = clear_data_caches(root, everything=args.what in ("cohorts", "all"),
                                              stale_minutes=args.stale_minutes)
    if args.what in ("cohorts", "all"):
        report["cohorts"] = {"folders": [str(root / "cohorts"), str(root / "synthetic")], "entries_removed": removed,
                             "bytes_freed": int(freed)}
        say(f"cleared {root / 'cohorts'} and {root / 'synthetic'} ({removed} entries, {_fmt_bytes(freed)} freed)")
    report["stale_staging_removed"] = stale
    if stale:
        say(f"removed {stale} leftover staging folder(s) of killed loads under {root}")
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2))
    return 0




def parse_precisions(text: str) -> list[str]:
    """``"fp32,bf16"`` -> ``["fp32", "bf16"]``; unknown or repeated names raise ``CLIError``."""
    from mingle_bench.commands import CLIError

    out = [p.strip() for p in str(text).split(",") if p.strip()]
    bad = [p for p in out if p not in PRECISIONS]
    if not out or bad:
        raise CLIError(f"--precision must be a comma-separated list of {', '.join(PRECISIONS)}, "
                       f"got {text!r}")
    if len(set(out)) != len(out):
        raise CLIError(f"--precision lists a precision twice: {text!r}")
    return out


def _profile(args) -> int:
    from mingle_bench.commands import CLIError

    if isinstance(args.json, str):  # the old spelling: --json PATH wrote a file ('-': stdout only)
        if args.json != "-":
            if args.out:
                raise CLIError(f"--json {args.json}: give the path once, as --out PATH")
            print(f"mingle-bench profile-encoder: warning: --json PATH is deprecated; use --out {args.json} "
                  "(--json alone prints to stdout)", file=sys.stderr)
            args.out, args.json = args.json, False
        else:
            args.json = True
    for flag, value in (("--names", args.names), ("--notes", args.n_notes), ("--note-words", args.note_words),
                        ("--repeats", args.repeats)):
        if value < 1:
            raise CLIError(f"{flag} must be >= 1")
    if args.out and (Path(args.out).is_dir() or not Path(args.out).expanduser().parent.is_dir()):
        raise CLIError(f"--out {args.out}: expected a file in an existing folder (checked before the timing)")
    precisions = parse_precisions(args.precision)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from mingle_bench.encoders import load_encoder
    from mingle_bench.profiling.encoders import profile_precisions

    device = {"device": args.device} if args.device else {}
    encoders = {p: load_encoder(args.encoder, precision=p, **device) for p in precisions}
    result = profile_precisions(encoders, n_names=args.names, n_notes=args.n_notes, note_words=args.note_words,
                                repeats=args.repeats, batch_tokens=args.batch_tokens)
    if args.out:
        from mingle_bench.io import atomic_write_text

        atomic_write_text(args.out, json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    m = result["machine"]
    first = next(iter(result["precisions"].values()))
    table = Table("precision", "workload", "items", "tokens/item", "rate (median)", "CPU ms/item", "runs",
                  title=f"{first['encoder']['identity'].split('/tok:')[0]}\non {m['device']}, {m['threads']} "
                        f"threads, load average {result['load_average_1m']}")
    for label, block in result["precisions"].items():
        tag = label if label == block["precision"] else f"{label} ({block['precision']})"
        n, w, c = block["names"], block["notes_window"], block["notes_chunked"]
        table.add_row(tag, "concept names", str(n["n"]), str(n["mean_tokens"]), f"{n['texts_per_s']} names/s",
                      str(n["cpu_ms_per_text"]), ", ".join(map(str, n["runs"])))
        table.add_row("", f"notes, one {w['window_tokens']}-token window", str(w["n"]), f"{w['window_tokens']}",
                      f"{w['texts_per_s']} notes/s", str(w["cpu_ms_per_text"]), ", ".join(map(str, w["runs"])))
        table.add_row("", f"notes, chunked ({c['chunks']} chunks)", str(c["n"]), str(c["mean_tokens"]),
                      f"{c['notes_per_s']} notes/s ({c['tokens_per_s']:.0f} tok/s)", str(c["cpu_ms_per_note"]),
                      ", ".join(map(str, c["runs"])), end_section=True)
    console = Console(file=sys.stdout)
    console.print(table)
    for label, block in result["precisions"].items():
        if "min_cosine_vs_fp32" in block:
            sp = block["speedup_vs_fp32"]
            console.print(f"{label}: notes_window {sp['notes_window_texts_per_s']}x fp32 notes/s "
                          f"({sp['notes_window_cpu_time']}x by CPU time); min cosine vs fp32 "
                          f"{block['min_cosine_vs_fp32']} over {block['cosine_over']}")
    return 0
