"""``mingle-bench predict`` (a saved checkpoint's predictions) and ``mingle-bench evaluate``
(metrics, bootstrap CIs and paired comparisons from prediction files alone). docs/extending.md."""
from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "predict", help="predict with a saved checkpoint (run --save-checkpoints) into a MEDS predictions file",
        description="Rebuild a cell's model from <folder>/checkpoints/<model>-<seed>/ (the run's inputs, "
                    "hyperparameters and best weights), rebuild the task's features with the run's options, and "
                    "write its predictions as parquet in the MEDS-evaluation schema. On the run's data and "
                    "--split test they are bit-identical to the run's test predictions.")
    p.add_argument("--checkpoint", required=True, metavar="CELL_DIR",
                   help="a checkpoint folder, e.g. runs/mortality/synthetic-default/checkpoints/mingle-0")
    p.add_argument("--data", default=None, metavar="SOURCE",
                   help="data source spec (default: the run's, from the checkpoint's config.json)")
    p.add_argument("--task", default=None, help="the task (default and only choice: the run's)")
    p.add_argument("--split", choices=("test", "all"), default="test",
                   help="predict the test split (default) or every sample (the split column says which)")
    p.add_argument("--out", required=True, metavar="FILE", help="the parquet file to write")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_predict)

    e = sub.add_parser(
        "evaluate", help="metrics, bootstrap CIs and paired comparisons of MEDS prediction files",
        description="Score prediction files in the MEDS-evaluation schema (a run's meds_preds/*.parquet, "
                    "`predict` output, or any model's): our metrics, patient-level bootstrap 95%% CIs, and with "
                    "two or more files on the same samples the paired comparison of each with the first "
                    "(patient-level bootstrap of the difference).")
    e.add_argument("--preds", action="append", required=True, metavar="FILE",
                   help="a predictions parquet file; repeat to compare (the first is the reference)")
    e.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000; 0 disables)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=_evaluate)


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from mingle_bench import checkpoints as CK
    from mingle_bench import pipeline as P
    from mingle_bench import predictions as PR
    from mingle_bench import results as R
    from mingle_bench.cachelock import shared
    from mingle_bench.training import predict

    ck = CK.load_checkpoint(args.checkpoint)
    run = ck.config["run"]
    if args.task is not None and args.task != run.get("task"):
        raise P.RunError(f"--task {args.task}: the checkpoint {ck.path} was trained on task {run.get('task')!r}; "
                         "a model predicts the task (labels) it was trained on")
    device = str(P.resolve_device(args.device))
    inputs = P.Inputs(task=run["task"], data=args.data or run["data"], split_seed=int(run.get("split_seed", 0)),
                      encoder=run.get("encoder"), notes=run.get("notes", P.DEFAULT_NOTES),
                      code_types=None if run.get("code_types") is None else tuple(run["code_types"]),
                      max_notes_per_visit=run.get("max_notes_per_visit"), max_tokens=run.get("max_tokens"),
                      graph_scope=run.get("graph_scope", "all"), precision=run.get("precision", P.DEFAULT_PRECISION),
                      split=run.get("split", P.DEFAULT_SPLIT))
    P.tame_library_logging()
    with shared(None, command=P.command_line()):
        prep = P.prepare(inputs, progress=not args.quiet, views=P.needed_views([ck.model]))
    data = prep.data
    names = list(data.label_names)
    if names != list(ck.config["label_names"]):
        raise P.RunError(f"--checkpoint {ck.path}: the labels of these inputs ({', '.join(names[:5])}) are not the "
                         f"checkpoint's ({', '.join(ck.config['label_names'][:5])})")
    same_inputs = dict(getattr(data, "digest", None) or {}) == (ck.config.get("input_digest") or {}) and (
        not ck.config.get("source_id") or prep.source_id == ck.config["source_id"])
    if not same_inputs:
        print(f"warning: these inputs differ from the run's ({inputs.data}: other cohort content, samples, split or "
              "features); the model is applied to them as they are", file=sys.stderr)
    model = CK.rebuild_model(ck, data, device)
    if args.split == "test":
        idx = P.test_arrays(data)[0]
        split_of: list[str] | str = "test"
    else:
        idx = np.arange(len(data.labels), dtype=np.int64)
        split_of = np.full(len(idx), "", dtype=object)
        for s, ix in data.split_idx.items():
            split_of[np.asarray(ix)] = s
        split_of = split_of.tolist()
    import torch

    probs, _ = predict(model, torch.from_numpy(idx))
    probs = np.asarray(probs, dtype=np.float32)
    y = np.asarray(data.labels)[idx].astype(np.float32)
    PR.write_predictions(args.out, PR.sample_frame(data, idx, split=split_of), y, probs, names)
    line = f"wrote {len(idx)} predictions of {ck.model} seed {ck.seed} ({args.split} split) to {args.out}"
    if args.split == "test" and same_inputs:
        same = R.array_sha256(probs) == ck.config.get("preds_sha256")
        line += ("; identical to the run's test predictions (sha256)" if same else
                 "; NOT identical to the run's test predictions (another CPU, thread count or library version?)")
    print(line)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from mingle_bench import predictions as PR
    from mingle_bench.io import to_json

    res = PR.evaluate_files(args.preds, n_boot=args.bootstrap)
    if args.json:
        print(to_json(res))
    else:
        print(PR.format_evaluation(res))
    return 0
