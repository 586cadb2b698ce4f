"""``mingle-bench models`` (the model registry) and ``mingle-bench profile-model`` (epoch timing)."""
from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("models", help="list the registered models with their defaults",
                       description="List every registered model: family, training mode, op use, required inputs, defaults.")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=_models)

    p = sub.add_parser(
        "profile-model", help="time one MINGLE training epoch, fused op vs reference op",
        description="Time one full-graph MINGLE training epoch (forward, backward, Adam step) with d=48, h=4, "
                    "L=2 on a hypergraph with the given size statistics (mimic: 36,875 visits, 7,423 codes, "
                    "~94 codes per visit, ~3.5M incidences), with the fused op and with the pure-PyTorch reference.")
    p.add_argument("--size", choices=("small", "default", "mimic"), default="default")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per impl, after one warm-up (default 3)")
    p.add_argument("--impl", choices=("both", "fused", "reference"), default="both")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    p.add_argument("--model", default="mingle", help="a full-graph model to time (default mingle)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_profile)


def _models(args: argparse.Namespace) -> int:
    from mingle_bench.zoo import get_model, list_models, model_entry

    rows = []
    for name in list_models():
        entry = model_entry(name)
        cls = entry.cls
        hp = dict(cls.default_hparams)
        rows.append({
            "name": name, "display": entry.display, "family": entry.family,
            "class": cls.__mro__[1].__name__,   # registered names are variant subclasses of the model class
            "training": "sklearn" if getattr(cls, "sklearn", False) else "full-graph" if cls.full_graph else "minibatch",
            "uses_op": bool(cls.uses_op), "requires": list(cls.requires),
            "fixed": dict(cls.variant_overrides), "defaults": hp,
            "summary": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
        })
    if args.json:
        print(json.dumps({"models": rows}, indent=2, default=str))
        return 0
    from tabulate import tabulate

    table = [[r["name"], r["display"], r["family"], r["class"], r["training"], "yes" if r["uses_op"] else "",
              ", ".join(r["requires"]), ", ".join(f"{k}={v}" for k, v in r["fixed"].items())] for r in rows]
    print(tabulate(table, headers=["model", "display", "family", "class", "training", "op", "requires",
                                   "fixed switches"]))
    return 0


def _profile(args: argparse.Namespace) -> int:
    from mingle_bench.commands import CLIError
    from mingle_bench.zoo import get_model
    from mingle_bench.profiling.models import profile_mingle

    if args.epochs < 1:
        raise CLIError(f"--epochs must be >= 1, got {args.epochs}")
    if not get_model(args.model).full_graph:
        raise CLIError(f"--model {args.model}: profile-model times full-graph models only")
    impls = ("fused", "reference") if args.impl == "both" else (args.impl,)
    res = profile_mingle(size=args.size, threads=args.threads, epochs=args.epochs, impls=impls,
                         device=args.device, model_name=args.model)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{res['model']} epoch, size {res['size']}: {res['visits']:,} visits, {res['codes']:,} codes, "
          f"{res['incidences']:,} incidences (mean {res['mean_codes_per_visit']} codes/visit), "
          f"d={res['hidden']}" + (f" h={res['heads']}" if "heads" in res else "")
          + f" L={res['layers']}, {res['threads']} threads on {res['device']}")
    for impl in impls:
        v = res.get(f"{impl}_epoch_s")
        print(f"  {impl:9s}: " + (f"{v:.3f} s/epoch (median of {res['epochs_timed']}; "
                                  f"{res[impl + '_epoch_cpu_s']:.3f} CPU-s)" if v is not None
                                  else res.get("fused_note", "not run")))
    if "speedup" in res:
        print(f"  speedup  : {res['speedup']}x")
    return 0
