"""The note channel per text encoder: does MINGLE's level-2 fusion help once the note vectors carry
the signal? (the paper tables' ``note_channel`` table, written by ``mingle-bench reproduce``).

A run with a non-default ``--encoder`` keeps its own folders (``<task>/<data-id>-enc-<encoder>``,
:func:`mingle_bench.pipeline.encoder_suffix`). For each task this module finds the folders of one
configuration under every encoder (the default MiniLM folder first) and, from the cells they hold:

* the rows of MINGLE and its two semantic ablations (``mingle-no-notes``: no note vectors on the
  hyperedges; ``mingle-no-concept``: no concept vectors on the nodes), mean ± std over seeds;
* per encoder, the paired comparison (two-level bootstrap over training seeds and test patients) of MINGLE with each ablation on the
  seeds both finished: ``MINGLE - w/o note semantics`` is what the note channel adds under that
  encoder (:func:`mingle_bench.report.comparison.paired_comparison`), and ``MINGLE - HypEHR`` what
  both channels add (HypEHR reads no text vectors: the default encoder's folder's cells serve every
  encoder when a folder has none of its own);
* MINGLE under each other encoder against MINGLE under the default one (the same test samples,
  checked by the labels' sha256), so a change of encoder is measured, not read off two means.

An encoder whose vectors keep little of the notes' signal (``mingle-bench encoder probe``) makes
``w/o note semantics`` a test of an empty channel; setting encoders side by side separates "the
fusion does not help" from "the channel holds nothing to fuse". Trains nothing.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Callable, Sequence

from tabulate import tabulate

from mingle_bench import results as R
from mingle_bench.io import atomic_write_text

#: MINGLE and the ablations that switch off one semantic channel
CHANNEL_MODELS: tuple[str, ...] = ("mingle", "mingle-no-notes", "mingle-no-concept")
#: the backbone without either channel: it reads no text vectors, so one encoder's folder serves all
BACKBONE = "hypehr"
#: what each gap measures
GAP_LABELS: dict[str, str] = {"mingle-no-notes": "note semantics", "mingle-no-concept": "concept semantics",
                              BACKBONE: "both semantic channels"}
ENCODER_MARK = "-enc-"
#: per encoder folder: the paired comparisons computed for the table, by their inputs' sha256
NOTE_CHANNEL_CACHE = "note_channel_cache.json"


def encoder_folders(task_root: str | Path, base_id: str) -> list[Path]:
    """The results folders of ``base_id`` (a folder id without encoder suffix) under every encoder:
    ``<task_root>/<base_id>`` first when present, then ``<base_id>-enc-*`` sorted by name; only
    folders with a ``config.json`` (repeated-split ``-split<k>`` / ``-splits`` folders are not encoders)."""
    root = Path(task_root)
    if not root.is_dir():
        return []
    found = [root / base_id] + sorted(p for p in root.glob(f"{base_id}{ENCODER_MARK}*")
                                      if not p.name.endswith("-splits") and "-split" not in p.name[len(base_id):])
    return [p for p in found if (p / R.CONFIG_FILE).exists()]


class _ComparisonCache:
    """The paired comparisons of one folder, kept in ``<folder>/note_channel_cache.json`` by the
    sha256 of what they were computed from (the cells' prediction hashes, the labels and patient
    groups, the metrics and resample count): ``reproduce`` recomposes the tables on every call, and
    the bootstrap of a large folder takes minutes. A comparison whose cells lack a prediction hash
    is computed every time."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / NOTE_CHANNEL_CACHE
        try:
            loaded = json.loads(self.path.read_text())
        except (OSError, ValueError):
            loaded = {}
        self.loaded: dict = loaded if isinstance(loaded, dict) else {}
        self.used: dict = {}

    def get(self, key: dict | None, compute: Callable[[], dict]) -> dict:
        if key is None:
            return compute()
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        if digest not in self.used:
            self.used[digest] = self.loaded[digest] if digest in self.loaded else compute()
        return self.used[digest]

    def save(self) -> None:
        """Keep the comparisons this call used (and only those); write when that changes the file.
        Plain ``json.dumps``, not ``atomic_write_json``: NaN must come back as NaN, not null."""
        if self.used != self.loaded:
            atomic_write_text(self.path, json.dumps(self.used, sort_keys=True, indent=1) + "\n")


def _comparison_key(base: dict, shas_a: dict[int, str | None], shas_b: dict[int, str | None],
                    seeds: Sequence[int]) -> dict | None:
    a, b = [shas_a.get(s) for s in seeds], [shas_b.get(s) for s in seeds]
    if not all(a) or not all(b):
        return None
    return {**base, "seeds": list(seeds), "a": a, "b": b}


def _probs(folder: Path, model: str, seeds: Sequence[int]) -> dict[int, object]:
    return {s: R.load_array(R.preds_path(folder, model, s))["probs"] for s in seeds}


def note_channel(task_root: str | Path, base_id: str, n_boot: int = 1000) -> list[dict]:
    """One entry per encoder folder of ``base_id`` that holds a finished MINGLE cell:
    ``{"encoder", "folder", "rows", "gaps": {ablation: comparison}, "vs_default": comparison | None}``
    (comparisons as :func:`~mingle_bench.report.comparison.paired_comparison` returns them, with
    ``a``/``b``); ``[]`` when no folder has one."""
    from mingle_bench.metrics import reported_metrics
    from mingle_bench.report.comparison import RESAMPLE_SEEDS_PATIENTS, paired_comparison, resample_counts
    from mingle_bench.report.tables import aggregate

    entries: list[dict] = []
    default: dict | None = None
    for folder in encoder_folders(task_root, base_id):
        config = R.read_json_object(folder / R.CONFIG_FILE)
        records = [r for r in R.load_runs(folder)
                   if r["model"] in CHANNEL_MODELS + (BACKBONE,) and R.preds_path(folder, r["model"], r["seed"]).exists()]
        seeds = {m: sorted(r["seed"] for r in records if r["model"] == m) for m in CHANNEL_MODELS + (BACKBONE,)}
        if not seeds["mingle"]:
            continue
        lab = R.load_array(R.labels_path(folder))
        y, groups = lab["y_true"], lab.get("patient_group")
        metrics = reported_metrics(y, ("auroc", "aupr"))
        # one draw of the patient resamples per folder, shared by its comparisons (those of the
        # seed-0 resampler every paired comparison uses), drawn only when a comparison is computed
        drawn: list = []

        def compare(pa: dict, pb: dict) -> dict:
            if not drawn:
                drawn.append(resample_counts(len(y), groups, n_boot))
            return paired_comparison(y, pa, pb, metrics=metrics, counts=drawn[0])

        cache = _ComparisonCache(folder)
        labels_sha = R.array_sha256(y)
        key_base = {"n_boot": n_boot, "metrics": list(metrics), "labels": labels_sha, "resample": RESAMPLE_SEEDS_PATIENTS,
                    "groups": None if groups is None else R.array_sha256(groups)}
        shas = {m: {r["seed"]: r.get("preds_sha256") for r in records if r["model"] == m}
                for m in CHANNEL_MODELS + (BACKBONE,)}
        mingle = _probs(folder, "mingle", seeds["mingle"])
        others = {m: (_probs(folder, m, seeds[m]), "", shas[m]) for m in CHANNEL_MODELS[1:] + (BACKBONE,) if seeds[m]}
        if BACKBONE not in others and default is not None and default["labels_sha256"] == labels_sha \
                and default["backbone"]:
            others[BACKBONE] = (default["backbone"], f" [{default['encoder']}]", default["shas"][BACKBONE])
        gaps = {}
        for other, (probs, where, other_shas) in others.items():
            common = sorted(set(seeds["mingle"]) & set(probs))
            if common:
                comp = cache.get(_comparison_key(key_base, shas["mingle"], other_shas, common),
                                 lambda: compare({s: mingle[s] for s in common}, {s: probs[s] for s in common}))
                gaps[other] = {**comp, "a": "mingle", "b": other + where}
        entry = {"encoder": config.get("encoder") or "default", "folder": str(folder),
                 "rows": aggregate(records, order=CHANNEL_MODELS + (BACKBONE,), folder=folder,
                                   split_seed=config.get("split_seed")),
                 "gaps": gaps, "vs_default": None, "labels_sha256": labels_sha, "metrics": list(metrics)}
        if default is None:
            default = {**entry, "probs": mingle, "backbone": others.get(BACKBONE, (None,))[0], "shas": shas}
        elif entry["labels_sha256"] == default["labels_sha256"]:
            common = sorted(set(mingle) & set(default["probs"]))
            if common:
                comp = cache.get(_comparison_key(key_base, shas["mingle"], default["shas"]["mingle"], common),
                                 lambda: compare({s: mingle[s] for s in common},
                                                 {s: default["probs"][s] for s in common}))
                entry["vs_default"] = {**comp, "a": f"mingle [{entry['encoder']}]", "b": f"mingle [{default['encoder']}]"}
        cache.save()
        entries.append(entry)
    return entries


def _diff_cell(res: dict | None) -> str:
    if not res or res.get("diff") is None or math.isnan(res["diff"]):
        return "n/a"
    ci = ("" if res.get("ci_low") is None or math.isnan(res["ci_low"])
          else f" [{100 * res['ci_low']:+.2f}, {100 * res['ci_high']:+.2f}]")
    return f"{100 * res['diff']:+.2f}{ci} ({res['a_better_seeds']}/{res['n_seeds']})"


def render_task(task: str, entries: list[dict], fmt: str) -> list[str]:
    """The note-channel block of one task: the rows per encoder, then the paired gaps."""
    from mingle_bench.metrics import METRIC_LABELS
    from mingle_bench.report.comparison import RESAMPLE_PATIENTS
    from mingle_bench.report.tables import display_name, fmt_pct, latex_escape

    if not entries:
        return []
    # the folder's reported metrics, in their order (a comparison read back from its JSON cache has
    # its metric keys sorted, so the gaps' keys cannot set the column order)
    metrics = tuple(entries[0].get("metrics") or ("auroc", "aupr"))
    rows_body, gap_body = [], []
    for e in entries:
        for r in e["rows"]:
            rows_body.append([e["encoder"], display_name(r["model"]),
                              *(fmt_pct(r.get(f"{m}_mean", math.nan), r.get(f"{m}_std", math.nan)) for m in metrics),
                              str(r["n_seeds"])])
        for other, comp in e["gaps"].items():
            where = comp["b"][len(other):]  # " [default]" when another folder's cells served
            gap_body.append([e["encoder"], f"MINGLE − {display_name(other)}{where} (what {GAP_LABELS[other]} add)",
                             *(_diff_cell(comp["metrics"].get(m)) for m in metrics)])
        if e["vs_default"]:
            gap_body.append([e["encoder"], f"MINGLE [{e['encoder']}] − MINGLE [{entries[0]['encoder']}]",
                             *(_diff_cell(e["vs_default"]["metrics"].get(m)) for m in metrics)])
    labels = [METRIC_LABELS.get(m, m) for m in metrics]
    rows_header = ["encoder", "Model", *labels, "seeds"]
    gap_header = ["encoder", "paired difference", *(f"Δ {x}" for x in labels)]
    first = next((c for e in entries for c in e["gaps"].values()), {})
    caption = (f"{task}: the note channel per text encoder. Differences in points (x100) with the 95% bootstrap CI "
               f"({first.get('n_boot', 0)} draws resampling {first.get('resample', RESAMPLE_PATIENTS)}) and the seeds "
               "where the first model is better; paired on the seeds both finished.")
    if fmt == "latex":
        esc = [[latex_escape(c).replace("±", r"$\pm$") for c in row] for row in rows_body]
        gaps = [[latex_escape(c) for c in row] for row in gap_body]
        t1 = tabulate(esc, [latex_escape(h) for h in rows_header], tablefmt="latex_raw", disable_numparse=True)
        t2 = tabulate(gaps, [latex_escape(h) for h in gap_header], tablefmt="latex_raw", disable_numparse=True)
        return [r"\begin{table}[t]", r"\centering", r"\small", t1, r"\medskip", t2,
                rf"\caption{{{latex_escape(caption)}}}", r"\end{table}", ""]
    return [f"## {task}", "", caption, "",
            tabulate(rows_body, rows_header, tablefmt="github", disable_numparse=True), "",
            tabulate(gap_body, gap_header, tablefmt="github", disable_numparse=True) if gap_body
            else "(no ablation cell finished beside MINGLE yet)", ""]


def render(payload: dict, fmt: str, header: list[str]) -> str:
    """The whole note-channel table of a paper payload (``header``: its title lines)."""
    lines = list(header)
    what = ("Which encoder fed the note (hyperedge) and concept (node) vectors: `default` is all-MiniLM-L6-v2 "
            "(mean pooling); `tfidf` is TF-IDF then truncated SVD to the model's semantic width, fitted on the "
            "training split's texts only. `mingle-bench encoder probe --task T --encoder E` measures what each "
            "encoder's note vectors keep of the label before any model trains.")
    lines += [what if fmt == "md" else f"% {what}", ""]
    for task, entries in (payload.get("note_channel") or {}).items():
        lines += render_task(task, entries, fmt)
    return "\n".join(lines) + "\n"
