r"""How much label signal an encoder's note vectors keep: a linear probe (``mingle-bench encoder probe``).

For a task on a data source and an encoder spec, :func:`probe_encoder`:

1. builds the task's samples and the patient-level split exactly as the features stage does
   (:func:`~mingle_bench.features.prepare_visits`, ``split_seed``); an encoder that learns from
   data (``tfidf``) is fitted on the training split's texts only
   (:func:`~mingle_bench.features.encoder_fit_texts`);
2. embeds each sample's **index visit** notes (the notes the task allows) with the features
   stage's note settings (:func:`~mingle_bench.encoders.notes.embed_visit_notes` defaults: 256-token
   chunks, overlap 32, mean pooling; the embedding cache is shared with ``run``), giving
   :math:`z_i \in \mathbb{R}^d` (zero when the visit has no note) and a flag :math:`h_i \in \{0,1\}`;
3. fits, per label :math:`k`, an L2-regularised logistic regression on the standardised
   :math:`x_i = [z_i, h_i]` (scikit-learn ``lbfgs``):

   .. math:: p_{ik} = \sigma(w_k^\top x_i + b_k),\quad
             \min_{w,b}\ \tfrac{1}{2}\lVert w\rVert^2 + C \sum_{i \in \text{train}} \ell(y_{ik}, p_{ik}),

   with :math:`C \in \{0.01, 0.1, 1, 10\}` chosen by the validation AUROC (flattened over the labels),
   then scores the **test** split: AUROC per label and, for multi-label tasks, micro (the flattened
   label matrix) and macro (mean over labels with both classes). Each comes with a 95% percentile
   CI from a patient-level (cluster) bootstrap of the test split (``n_boot`` resamples, seeded);
4. does the same on the **reference**: TF-IDF of the raw texts of the same notes (terms fitted on the
   train texts only; words, decimal numbers and bigrams, ``min_df=2``, sublinear TF; no SVD) plus
   :math:`h_i`, not standardised (rows are L2-normalised already, as the ``tfidf-lr`` reference reads
   them): the ceiling a linear model reaches from the words themselves;
5. for a synthetic source, probes the generator's **note-only latents** of the index admission
   (:data:`LATENT_PROBES`: DNR, smoking and poor HbA1c control as binary targets, AUROC; frailty
   and the HbA1c value as continuous targets, test :math:`R^2` of a ridge regression with its
   penalty chosen on validation; the two HbA1c targets only over the admissions whose patient has
   an HbA1c, the diabetics) from the encoder's vector and from
   the TF-IDF reference, so one sees how much of each latent the encoder keeps.

Not part of the pipeline: nothing here is written to a results folder; the command prints it.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Sequence

import numpy as np

from mingle_bench.report.comparison import cluster_bootstrap

#: the synthetic generator's note-only latents the probe decodes: name -> (column, kind, rows):
#: rows "all" or "with_a1c" (the admissions whose patient has an HbA1c, i.e. the diabetics)
LATENT_PROBES: dict[str, tuple[str, str, str]] = {
    "dnr": ("dnr", "binary", "all"), "frailty": ("frailty", "continuous", "all"),
    "smoking": ("smoker", "binary", "all"), "hba1c": ("a1c", "continuous", "with_a1c"),
    "poor_hba1c": ("poor_a1c", "binary", "with_a1c"),
}
#: inverse L2 strengths of the logistic probe, chosen on validation
C_GRID = (0.01, 0.1, 1.0, 10.0)
#: ridge penalties of the continuous latent probe, chosen on validation
ALPHA_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)


def _auroc(y: np.ndarray, p: np.ndarray) -> float:
    from mingle_bench.metrics import auroc_mann_whitney

    return auroc_mann_whitney(y.astype(np.float64), p.astype(np.float64))


def _macro(y: np.ndarray, p: np.ndarray) -> float:
    vals = [_auroc(y[:, k], p[:, k]) for k in range(y.shape[1])]
    vals = [v for v in vals if not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    sst = float(((y - y.mean()) ** 2).sum())
    return math.nan if sst == 0 else 1.0 - float(((y - p) ** 2).sum()) / sst


def with_ci(fn, y: np.ndarray, p: np.ndarray, boots: list[np.ndarray]) -> dict[str, Any]:
    """``{"value", "ci": [2.5%, 97.5%], "n_valid"}`` of ``fn(y, p)`` and its bootstrap; rounded to 4 places."""
    value = fn(y, p)
    stats = np.asarray([fn(y[b], p[b]) for b in boots], dtype=np.float64)
    stats = stats[~np.isnan(stats)]
    ci = [round(float(x), 4) for x in np.percentile(stats, [2.5, 97.5])] if stats.size else None
    return {"value": None if math.isnan(value) else round(float(value), 4), "ci": ci, "n_valid": int(stats.size)}


def _design(x, has: np.ndarray):
    """``[x, has]``: dense float64, or sparse csr when ``x`` is sparse."""
    import scipy.sparse as sp

    flag = has.astype(np.float64)[:, None]
    if sp.issparse(x):
        return sp.hstack([x, sp.csr_matrix(flag)], format="csr")
    return np.hstack([np.asarray(x, dtype=np.float64), flag])


def _scaled(x, train: np.ndarray):
    """Dense inputs standardised on the train rows; sparse TF-IDF rows (already L2-normalised)
    as they are, as the tfidf-lr reference reads them (scaling would blow up rare terms)."""
    import scipy.sparse as sp
    from sklearn.preprocessing import StandardScaler

    if sp.issparse(x):
        return x
    return StandardScaler().fit(x[train]).transform(x)


def logistic_probe(x, y: np.ndarray, split: np.ndarray) -> tuple[np.ndarray, float]:
    """Test probabilities ``[n_test, L]`` of the per-label L2 logistic probe and the chosen ``C``
    (validation AUROC over the flattened labels; a label with one class in train predicts its
    train prevalence)."""
    from sklearn.linear_model import LogisticRegression

    import scipy.sparse as sp

    train, val, test = (split == s for s in ("train", "val", "test"))
    xs = _scaled(x, train)
    solver = "liblinear" if sp.issparse(xs) else "lbfgs"  # liblinear's Newton solver: fast on sparse TF-IDF
    best: tuple[float, float, np.ndarray] | None = None
    for c in C_GRID:
        pv, pt = np.zeros((int(val.sum()), y.shape[1])), np.zeros((int(test.sum()), y.shape[1]))
        for k in range(y.shape[1]):
            yk = y[train, k]
            if yk.min() == yk.max():
                pv[:, k] = pt[:, k] = float(yk.mean())
                continue
            m = LogisticRegression(C=c, max_iter=3000, solver=solver).fit(xs[train], yk)
            pv[:, k], pt[:, k] = m.predict_proba(xs[val])[:, 1], m.predict_proba(xs[test])[:, 1]
        score = _auroc(y[val].ravel(), pv.ravel())
        score = -math.inf if math.isnan(score) else score
        if best is None or score > best[0]:
            best = (score, c, pt)
    assert best is not None
    return best[2], best[1]


def ridge_probe(x, y: np.ndarray, split: np.ndarray) -> tuple[np.ndarray, float]:
    """Test predictions of a ridge regression on the standardised ``x`` and the chosen penalty
    (validation R²)."""
    from sklearn.linear_model import Ridge

    train, val, test = (split == s for s in ("train", "val", "test"))
    xs = _scaled(x, train)
    best: tuple[float, float, np.ndarray] | None = None
    for a in ALPHA_GRID:
        m = Ridge(alpha=a).fit(xs[train], y[train])
        score = _r2(y[val], m.predict(xs[val])) if val.sum() > 1 else 0.0
        score = -math.inf if math.isnan(score) else score
        if best is None or score > best[0]:
            best = (score, a, m.predict(xs[test]))
    assert best is not None
    return best[2], best[1]


def label_probe(x, y: np.ndarray, split: np.ndarray, label_names: Sequence[str],
                boots: list[np.ndarray]) -> dict[str, Any]:
    """The label probe's test AUROCs with CIs (``boots`` index the test rows)."""
    pt, c = logistic_probe(x, y, split)
    yt = y[split == "test"]
    out: dict[str, Any] = {"C": c, "labels": {n: with_ci(_auroc, yt[:, k], pt[:, k], boots)
                                              for k, n in enumerate(label_names)}}
    if y.shape[1] > 1:
        out["micro_auroc"] = with_ci(lambda a, b: _auroc(a.ravel(), b.ravel()), yt, pt, boots)
        out["macro_auroc"] = with_ci(_macro, yt, pt, boots)
    return out


def latent_probe(x, target: np.ndarray, kind: str, split: np.ndarray, groups: np.ndarray,
                 n_boot: int, seed: int) -> dict[str, Any]:
    """One latent from ``x``: AUROC (binary) or R² (continuous) on the test rows, with CI; rows
    whose target is NaN are left out."""
    keep = ~np.isnan(target)
    x, target, split, groups = x[keep], target[keep], split[keep], groups[keep]
    test = split == "test"
    boots = cluster_bootstrap(groups[test], n_boot, seed)
    if kind == "binary":
        y = target.astype(np.int64)[:, None]
        pt, reg = logistic_probe(x, y, split)
        res = with_ci(_auroc, y[test, 0], pt[:, 0], boots)
        return {"metric": "auroc", "C": reg, **res, "test_n": int(test.sum()), "test_positives": int(y[test].sum())}
    pt, reg = ridge_probe(x, target, split)
    return {"metric": "r2", "alpha": reg, **with_ci(_r2, target[test], pt, boots), "test_n": int(test.sum())}


def reference_tfidf(texts: Sequence[str], train: np.ndarray):
    """TF-IDF of the raw texts, vocabulary and IDF fitted on the train rows only: csr ``[n, V]``
    (one zero column when the train texts hold no term). The ``tfidf-lr`` reference's vectoriser
    and settings (:func:`mingle_bench.baselines.text_features.fit_tfidf`)."""
    from mingle_bench.baselines.text_features import TFIDF_DEFAULTS, fit_tfidf

    return fit_tfidf(list(texts), np.flatnonzero(np.asarray(train)), TFIDF_DEFAULTS)[1]


def probe_encoder(data: str, task: str, encoder: str, *, split_seed: int = 0, n_boot: int = 1000, seed: int = 0,
                  cache_dir: str | os.PathLike | None = None, progress: bool = False, reference: bool = True,
                  latents: bool = True, precision: str = "fp32") -> dict[str, Any]:
    """Run the probe (module docstring) and return a JSON-able report.

    Args:
        data: a source spec (``synthetic``, ``synthetic:small``, ``mimic3:DIR``, ...).
        task: a task name.
        encoder: an encoder spec (``default``, ``default?pooling=max``, ``tfidf``, ``hf:PATH``, ...).
        split_seed: the patient-level split, as in ``run``.
        n_boot: bootstrap resamples of the test patients for the CIs.
        reference: also probe TF-IDF of the raw texts.
        latents: also probe the generator's note-only latents (synthetic sources only).
        precision: the encoder's arithmetic, as ``run --precision`` (``bf16`` reads a bf16 run's cache).
    """
    from mingle_bench.data.sources import load_source, parse_spec
    from mingle_bench.encoders import EmbeddingCache, embed_visit_notes, load_encoder
    from mingle_bench.mathmode import encoding_threads
    from mingle_bench.features import encoder_fit_texts, prepare_visits, sample_note_texts
    from mingle_bench.io import cache_root
    from mingle_bench.tasks import get_task

    if n_boot < 1:
        raise ValueError(f"--bootstrap must be >= 1, got {n_boot}")
    t0 = time.perf_counter()
    task_obj = get_task(task)
    from mingle_bench.pipeline import effective_precision

    enc = load_encoder(encoder, precision=effective_precision(precision, encoder))
    cohort = load_source(data, cache_dir=cache_dir, progress=False)
    vt = prepare_visits(cohort, task_obj, split_seed=split_seed)
    ts, samples = vt.task_samples, vt.samples
    visit_note_ids = [ts.input_note_ids.get(int(h), []) for h in vt.visit_hadm.tolist()]
    root = cache_root(cache_dir)
    if callable(getattr(enc, "fit", None)):
        enc.fit(encoder_fit_texts(cohort, vt, visit_note_ids), cache_dir=root)
    hadm = samples["hadm_id"].to_numpy(dtype=np.int64)
    index_notes = [ts.input_note_ids.get(int(h), []) for h in hadm]
    t1 = time.perf_counter()
    with encoding_threads():
        z, has, note_report = embed_visit_notes(enc, index_notes, cohort.read_note_texts,
                                                cache=EmbeddingCache(root / "embeddings"), progress=progress)
    embed_s = time.perf_counter() - t1
    split = samples["split"].to_numpy(dtype=object)
    groups = samples["patient_id"].to_numpy()
    y = np.asarray(ts.labels, dtype=np.int64)
    test = split == "test"
    boots = cluster_bootstrap(groups[test], n_boot, seed)
    has_np = has.numpy()
    x_enc = _design(z.numpy(), has_np)
    counts = {s: {"samples": int((split == s).sum()), "positives": int(y[split == s].sum())}
              for s in ("train", "val", "test")}
    report: dict[str, Any] = {
        "source": data, "task": ts.task_name, "split_seed": int(split_seed), "n_boot": int(n_boot),
        "precision": effective_precision(precision, encoder),
        "encoder": enc.describe(), "encoder_spec": encoder, "splits": counts,
        "index_visits_with_notes": int(has_np.sum()),
        "probe": label_probe(x_enc, y, split, ts.label_names, boots),
    }
    x_ref = None
    if reference:
        texts = sample_note_texts(cohort, ts.input_note_ids, hadm.tolist())
        x_ref = _design(reference_tfidf(texts, split == "train"), has_np)
        report["reference_tfidf"] = label_probe(x_ref, y, split, ts.label_names, boots)
    if latents and parse_spec(data)[0] == "synthetic":
        from mingle_bench.data.sources import synthetic_dir
        from mingle_bench.oracle import load_latents

        _, size, gen_seed = parse_spec(data)
        lat = load_latents(synthetic_dir(size, gen_seed, cache_dir))
        row_of = dict(zip(lat["hadm_id"].to_numpy(dtype=np.int64).tolist(), range(len(lat))))
        missing = [h for h in hadm.tolist() if h not in row_of]
        if missing:
            raise ValueError(f"{data}: {len(missing)} index admissions have no latents (e.g. hadm_id {missing[0]})")
        rows = np.asarray([row_of[h] for h in hadm.tolist()], dtype=np.int64)
        report["latents"] = {}
        with_a1c = ~np.isnan(pd_numeric(lat["a1c"])[rows])
        for name, (col, kind, where) in LATENT_PROBES.items():
            target = pd_numeric(lat[col])[rows]
            if where == "with_a1c":
                target = np.where(with_a1c, target, np.nan)
            entry = {"column": col, "kind": kind, "rows": where,
                     "encoder": latent_probe(x_enc, target, kind, split, groups, n_boot, seed)}
            if x_ref is not None:
                entry["reference_tfidf"] = latent_probe(x_ref, target, kind, split, groups, n_boot, seed)
            report["latents"][name] = entry
    report["seconds"] = {"embed_notes": round(embed_s, 2), "total": round(time.perf_counter() - t0, 2)}
    report["notes"] = {k: note_report.get(k) for k in ("notes_unique", "notes_embedded", "notes_cached",
                                                       "chunks_embedded", "tokens_total")}
    return report


def pd_numeric(col) -> np.ndarray:
    """A latent column as float64 (blank -> NaN)."""
    import pandas as pd

    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
