r"""Repeated splits pooled: every split x training-seed cell, each model's CI, and MINGLE against the
best baseline with a test that accounts for the splits sharing their data.

Input: the results folders of one configuration under several split seeds (``mingle-bench run
--split-seeds``; :func:`mingle_bench.runner.run_split_seeds`), each a complete single-split folder.
Output: ``pooled.json`` and ``table.md`` in ``<out>/<task>/<data-id>-splits/``.

For split :math:`j = 1..J` with test set :math:`T_j` and training seeds :math:`s`, model :math:`m`
has test metric :math:`M_{j,s}(m)`.

* **Mean ± std** over all :math:`J \times S` cells (sample std, ``ddof=1``).
* **Hierarchical bootstrap CI** (three levels, Davison & Hinkley's nested resampling): draw :math:`J`
  splits with replacement; inside each drawn split, its training seeds with replacement (seed
  :math:`s` of two models stays paired) and its test patients with replacement (all samples of a
  drawn patient together); the statistic is the mean over the drawn splits of the mean over the
  drawn seeds of the metric on the resampled test set (the single-split tables' two-level
  bootstrap, :mod:`mingle_bench.report.comparison`, with the split level above it). 2.5/97.5
  percentiles over ``n_boot`` draws (a fixed seed). *Assumption*: splits are exchangeable draws of
  the split procedure, seeds of the training randomness, and patients are independent within a
  test set. With few splits (J < 5) or seeds the upper levels are coarse: the interval is then
  driven by the patient level, which is the variance that is sampled.
* **Paired comparison** of MINGLE with the baseline of best mean *validation* ``monitor`` over all
  cells (:func:`mingle_bench.report.finalize.select_baseline`): per split :math:`d_j = \text{mean}_s
  [M_{j,s}(A) - M_{j,s}(B)]`; the same hierarchical bootstrap (both models on the same draws) gives
  the CI of :math:`\bar d`; and the **corrected resampled t-test** of Nadeau & Bengio (2003),

  .. math:: t = \frac{\bar d}{\sqrt{\left(\frac{1}{J} + \frac{n_\text{test}}{n_\text{train}}\right) \hat\sigma^2_d}},
            \qquad \text{df} = J - 1,

  whose correction term :math:`n_\text{test}/n_\text{train}` accounts for the overlap of the
  training sets of different splits (the plain t-test over splits is anti-conservative). It needs
  J >= 2; its assumption is that the :math:`d_j` are identically distributed with the correlation
  the correction models.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from mingle_bench import results as R
from mingle_bench.io import atomic_write_json, atomic_write_text
from mingle_bench.report.comparison import cluster_members, cluster_resample

POOLED_FILE = "pooled.json"
#: the metrics pooled (CIs and comparison): the ranking metrics the tables lead with
POOLED_METRICS: tuple[str, ...] = ("auroc", "aupr")
METHOD = ("hierarchical bootstrap (splits with replacement, then training seeds and test patients with replacement "
          "within each split); comparison also by the corrected resampled t-test (Nadeau & Bengio 2003, df = J - 1)")
ASSUMPTION = ("splits are exchangeable draws of the seeded 7:1:2 patient split, training seeds of the training "
              "randomness, and patients are independent within a test set; the t-test's correction n_test/n_train models the overlap of the training sets")


def _load_split(folder: Path) -> dict:
    config = R.read_json_object(folder / R.CONFIG_FILE)
    records = R.load_runs(folder)
    lab = R.load_array(R.labels_path(folder))
    y = np.asarray(lab["y_true"], dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    groups = np.asarray(lab.get("patient_group", np.arange(len(y))))
    preds = {}
    for r in records:
        p = np.asarray(R.load_array(R.preds_path(folder, r["model"], r["seed"]))["probs"], dtype=np.float64)
        preds[(r["model"], int(r["seed"]))] = p[:, None] if p.ndim == 1 else p
    members = cluster_members(groups)
    n = config.get("n_samples") or {}
    return {"folder": folder, "config": config, "records": records, "y": y, "members": members, "preds": preds,
            "split_seed": int(config.get("split_seed", 0)), "n_train": int(n.get("train", 0) or 0),
            "n_test": int(n.get("test", len(y)) or len(y)), "n_val": int(n.get("val", 0) or 0)}


def _seed_mean(split: dict, model: str, metric: str, idx: np.ndarray | None = None,
               u: np.ndarray | None = None) -> float:
    """The mean over ``model``'s seeds in ``split`` of ``metric`` on the test rows ``idx`` (all when
    ``None``); with ``u`` (uniforms in [0, 1), one per seed slot) over the seeds drawn with
    replacement, position ``floor(u_k * S)`` of the sorted seed list for k < S: models with the same
    seeds draw the same ones."""
    from mingle_bench.report.comparison import fast_metric

    seeds = sorted(s for (m, s) in split["preds"] if m == model)
    if u is not None and seeds:
        seeds = [seeds[int(x * len(seeds))] for x in u[:len(seeds)]]
    vals = []
    for s in seeds:
        p = split["preds"][(model, s)]
        y, q = (split["y"], p) if idx is None else (split["y"][idx], p[idx])
        v = fast_metric(metric, y, q)
        if not math.isnan(v):
            vals.append(v)
    return float(np.mean(vals)) if vals else math.nan


def _draws(splits: list[dict], n_boot: int, seed: int) -> list[list[tuple[int, np.ndarray, np.ndarray]]]:
    """``n_boot`` hierarchical draws: per draw, J (split index, resampled test rows, seed-slot
    uniforms) triples."""
    rng = np.random.default_rng(seed)
    n_slots = max([sum(1 for k in s["preds"] if k[0] == m) for s in splits for m in {k[0] for k in s["preds"]}] or [1])
    out = []
    for _ in range(n_boot):
        draw = []
        for j in rng.integers(0, len(splits), size=len(splits)):
            draw.append((int(j), cluster_resample(splits[j]["members"], rng), rng.random(n_slots)))
        out.append(draw)
    return out


def _percentiles(values: list[float]) -> tuple[float, float, int]:
    v = np.asarray([x for x in values if not math.isnan(x)])
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5)), int(v.size)


def corrected_resampled_t(d: Sequence[float], n_test: float, n_train: float) -> dict:
    """Nadeau & Bengio's corrected resampled t-test of the mean of the per-split differences ``d``
    (two-sided); ``t`` and ``p`` are nan with fewer than two splits or zero variance."""
    from scipy.stats import t as student_t

    d = np.asarray([x for x in d if not math.isnan(x)], dtype=np.float64)
    J = d.size
    out = {"J": int(J), "mean": float(d.mean()) if J else math.nan, "t": math.nan, "p": math.nan, "df": max(J - 1, 0)}
    if J < 2 or n_train <= 0:
        return out
    var = float(d.var(ddof=1))
    if var == 0:
        return out
    t = float(d.mean() / math.sqrt((1 / J + n_test / n_train) * var))
    out.update(t=t, p=float(2 * student_t.sf(abs(t), J - 1)))
    return out


def pool(folders: Sequence[str | os.PathLike], monitor: str = "aupr", n_boot: int = 1000, seed: int = 0) -> dict:
    """The pooled summary of the single-split results ``folders`` (see the module docstring)."""
    from mingle_bench.metrics import HIGHER_IS_BETTER, METRIC_NAMES
    from mingle_bench.report.finalize import select_baseline

    splits = [_load_split(Path(f)) for f in folders]
    if not splits:
        raise ValueError("pooling needs at least one results folder")
    order = list(dict.fromkeys(m for s in splits for m in (s["config"].get("models") or [])))
    records = [r for s in splits for r in s["records"]]
    models = [m for m in order if any(r["model"] == m for r in records)]
    draws = _draws(splits, n_boot, seed) if n_boot > 0 else []
    rows = []
    for m in models:
        cells = [r for r in records if r["model"] == m]
        row: dict = {"model": m, "n_cells": len(cells),
                     "n_splits": len({s["split_seed"] for s in splits if any(k[0] == m for k in s["preds"])})}
        for metric in METRIC_NAMES:
            vals = np.array([np.nan if (r["metrics"] or {}).get(metric) is None else r["metrics"][metric] for r in cells],
                            dtype=float)
            vals = vals[~np.isnan(vals)]
            row[f"{metric}_mean"] = float(vals.mean()) if vals.size else math.nan
            row[f"{metric}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else math.nan
        for metric in POOLED_METRICS:
            boot = [float(np.nanmean([_seed_mean(splits[j], m, metric, idx, u) for j, idx, u in draw])) for draw in draws]
            row[f"{metric}_ci"] = list(_percentiles(boot)[:2])
        rows.append(row)

    comparison = None
    from mingle_bench.zoo import list_models

    a = next((m for m in models if m in set(list_models("mingle"))), None)
    b = select_baseline(records, monitor, order)
    if a and b:
        comparison = {"a": a, "b": b, "selected_by": f"mean validation {monitor} over all split x seed cells",
                      "metrics": {}}
        n_test = float(np.mean([s["n_test"] for s in splits]))
        n_train = float(np.mean([s["n_train"] for s in splits])) or 1.0
        for metric in POOLED_METRICS:
            d = [_seed_mean(s, a, metric) - _seed_mean(s, b, metric) for s in splits]
            boot = [float(np.nanmean([_seed_mean(splits[j], a, metric, idx, u) - _seed_mean(splits[j], b, metric, idx, u)
                                      for j, idx, u in draw])) for draw in draws]
            lo, hi, n_valid = _percentiles(boot)
            good = (lambda x: x > 0) if HIGHER_IS_BETTER[metric] else (lambda x: x < 0)
            comparison["metrics"][metric] = {
                "diff": float(np.nanmean(d)) if d else math.nan, "per_split": d, "ci_low": lo, "ci_high": hi,
                "n_valid": n_valid, "a_better_splits": int(sum(1 for x in d if good(x))),
                "t_test": corrected_resampled_t(d, n_test, n_train)}
    first = splits[0]["config"]
    return {
        "task": first.get("task"), "data": first.get("data"), "data_id": first.get("data_id"),
        "monitor": monitor, "n_boot": int(n_boot), "method": METHOD, "assumption": ASSUMPTION,
        "splits": [{"split_seed": s["split_seed"], "folder": s["folder"].name, "n_train": s["n_train"],
                    "n_val": s["n_val"], "n_test": s["n_test"],
                    "test_positives": int(s["y"].sum()),
                    "val_positives": _val_positives(s["config"]),
                    "cells": len(s["records"])} for s in splits],
        "rows": rows, "comparison": comparison,
    }


def _val_positives(config: dict) -> int | None:
    pos = ((config.get("data_report") or {}).get("positives_by_split") or {}).get("val")
    return int(sum(pos.values())) if isinstance(pos, dict) else None


def _pct(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def render_pooled(p: dict, command: str = "") -> str:
    """The pooled summary as markdown."""
    from tabulate import tabulate

    from mingle_bench.report.tables import ci_text, data_label, display_name

    J = len(p["splits"])
    lines = [f"# {p['task']} on {data_label(p.get('data') or '?', p.get('data_id'))}: {J} repeated splits pooled", ""]
    if command:
        lines.append(f"- command: `{command}`")
    lines += [
        f"- splits: seeds {', '.join(str(s['split_seed']) for s in p['splits'])} (patient-level 7:1:2); each split's "
        "folder holds its own table, comparison and reference check",
        "- per split: " + "; ".join(
            f"seed {s['split_seed']}: test {s['n_test']} samples, {s['test_positives']} positive label cells, "
            f"validation {s['n_val']} samples" + (f", {s['val_positives']} positive" if s["val_positives"] is not None else "")
            for s in p["splits"]),
        f"- mean ± std over every split x training-seed cell, in %; 95% CI: {p['method']} ({p['n_boot']} draws)",
        f"- assumption: {p['assumption']}",
        "",
    ]
    if J < 2:
        lines += ["**Only one split**: the split level of the uncertainty is not sampled; the CI is the patient "
                  "bootstrap of that split.", ""]
    header = ["Model", "AUROC", "AUROC 95% CI", "AUPR", "AUPR 95% CI", "cells (splits)"]
    body = []
    for r in p["rows"]:
        def ci(metric):
            lo, hi = r.get(f"{metric}_ci") or [math.nan, math.nan]
            return "n/a" if lo is None or math.isnan(lo) else f"[{_pct(lo)}, {_pct(hi)}]"

        def ms(metric):
            m, s = r[f"{metric}_mean"], r[f"{metric}_std"]
            return _pct(m) + ("" if s is None or math.isnan(s) else f" ± {_pct(s)}")

        body.append([display_name(r["model"]), ms("auroc"), ci("auroc"), ms("aupr"), ci("aupr"),
                     f"{r['n_cells']} ({r['n_splits']})"])
    lines.append(tabulate(body, header, tablefmt="github", disable_numparse=True))
    comp = p.get("comparison")
    if comp:
        a, b = display_name(comp["a"]), display_name(comp["b"])
        lines += ["", f"Paired comparison over splits: {a} vs the best baseline {b} (chosen by {comp['selected_by']}; "
                      "the test sets play no part in the choice); differences in points (x100).", ""]
        rows = []
        for metric, res in comp["metrics"].items():
            t = res["t_test"]
            rows.append([metric.upper(), f"{100 * res['diff']:+.2f}" if not math.isnan(res["diff"]) else "n/a",
                         ci_text(res["ci_low"], res["ci_high"]),
                         f"{res['a_better_splits']}/{len(res['per_split'])}",
                         "n/a (needs 2 splits)" if math.isnan(t["t"]) else f"t = {t['t']:.2f}, df {t['df']}, p = {t['p']:.3f}"])
        lines.append(tabulate(rows, ["Metric", f"Δ ({a} − {b})", "95% CI (hierarchical bootstrap)",
                                     f"splits {a} better", "corrected resampled t-test"],
                              tablefmt="github", disable_numparse=True))
    return "\n".join(lines) + "\n"


def write_pooled(folders: Sequence[str | os.PathLike], out: str | os.PathLike, monitor: str = "aupr",
                 n_boot: int = 1000, command: str = "") -> dict:
    """Pool ``folders`` and write ``pooled.json`` and ``table.md`` into ``out``."""
    p = pool(folders, monitor=monitor, n_boot=n_boot)
    p["command"] = command
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / POOLED_FILE, p)
    atomic_write_text(out / "table.md", render_pooled(p, command))
    return p
