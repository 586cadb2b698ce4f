"""``mingle-bench cache info|clear`` and ``mingle-bench profile-encoder``."""
from __future__ import annotations

import argparse
import json
import sys


def register(sub) -> None:
    cache = sub.add_parser("cache", help="inspect or clear the embedding cache",
                           description="Inspect or clear the content-addressed embedding cache "
                                       "($MINGLE_CACHE/embeddings, else ~/.cache/mingle-bench/embeddings).")
    cache_sub = cache.add_subparsers(dest="cache_command", metavar="ACTION")
    info = cache_sub.add_parser("info", help="namespaces, entries and sizes (plus other cache folders' sizes)")
    info.add_argument("--root", help="embedding cache folder (default: $MINGLE_CACHE/embeddings)")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(func=_cache_info)
    clear = cache_sub.add_parser("clear", help="delete every cached embedding")
    clear.add_argument("--root", help="embedding cache folder (default: $MINGLE_CACHE/embeddings)")
    clear.set_defaults(func=_cache_clear)
    cache.set_defaults(func=lambda args: (cache.print_help(), 2)[1])

    prof = sub.add_parser("profile-encoder", help="texts/s of an encoder for concept names and notes",
                          description="Measure encoder throughput on generated concept names and clinical "
                                      "notes: names/s, notes/s at one window, and chunked notes/s.")
    prof.add_argument("--encoder", default="default", help="default | hf:PATH[?pooling=cls] | openai:MODEL")
    prof.add_argument("--names", type=int, default=512, help="concept names to embed (default 512)")
    prof.add_argument("--notes", type=int, default=64, help="notes to embed (default 64)")
    prof.add_argument("--note-words", type=int, default=200, help="words per note (default 200)")
    prof.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (default 3)")
    prof.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    prof.add_argument("--device", help="auto | cpu | cuda (local encoders)")
    prof.add_argument("--batch-tokens", type=int, help="padded tokens per forward batch")
    prof.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-' = stdout only)")
    prof.set_defaults(func=_profile)


def _root(args):
    from mingle_bench.encoders.cache import EmbeddingCache

    return EmbeddingCache(args.root)


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _cache_info(args) -> int:
    info = _root(args).info()
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
    return 0


def _cache_clear(args) -> int:
    cache = _root(args)
    freed = cache.clear()
    print(f"cleared {cache.root} ({_fmt_bytes(freed)} freed)")
    return 0


def _profile(args) -> int:
    from mingle_bench.cli import CLIError

    for name in ("names", "notes", "note_words", "repeats"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from mingle_bench.encoders import load_encoder
    from mingle_bench.profiling.encoders import run_profile

    encoder = load_encoder(args.encoder, **({"device": args.device} if args.device else {}))
    result = run_profile(encoder, n_names=args.names, n_notes=args.notes, note_words=args.note_words,
                         repeats=args.repeats, batch_tokens=args.batch_tokens)
    if args.json == "-":
        print(json.dumps(result, indent=2))
        return 0
    if args.json:
        from mingle_bench.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2))
    from rich.console import Console
    from rich.table import Table

    m = result["machine"]
    table = Table("workload", "items", "tokens/item", "rate (median)", "CPU ms/item", "runs",
                  title=f"{result['encoder']['identity'].split('/tok:')[0]}\non {m['device']}, {m['threads']} "
                        f"threads, load average {result['load_average_1m']}")
    n, w, c = result["names"], result["notes_window"], result["notes_chunked"]
    table.add_row("concept names", str(n["n"]), str(n["mean_tokens"]), f"{n['texts_per_s']} names/s",
                  str(n["cpu_ms_per_text"]), ", ".join(map(str, n["runs"])))
    table.add_row(f"notes, one {w['window_tokens']}-token window", str(w["n"]), f"{w['window_tokens']}",
                  f"{w['texts_per_s']} notes/s", str(w["cpu_ms_per_text"]), ", ".join(map(str, w["runs"])))
    table.add_row(f"notes, chunked ({c['chunks']} chunks)", str(c["n"]), str(c["mean_tokens"]),
                  f"{c['notes_per_s']} notes/s ({c['tokens_per_s']:.0f} tok/s)", str(c["cpu_ms_per_note"]),
                  ", ".join(map(str, c["runs"])))
    Console(file=sys.stdout).print(table)
    return 0
