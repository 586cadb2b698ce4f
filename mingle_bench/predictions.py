"""Predictions other tools can read, and evaluation of anyone's predictions.

**The file.** Every run writes each cell's test predictions as parquet in the MEDS-evaluation
schema (``meds_evaluation.schema.PredictionSchema``: the MEDS label schema of the ``meds``
package plus the prediction columns), ``<folder>/meds_preds/<model>-<seed>.parquet``:

===============================  =================  =================================================
column                           type               meaning
===============================  =================  =================================================
``subject_id``                   int64              the patient id (``TaskSamples.samples.patient_id``)
``prediction_time``              timestamp[us]      when the prediction is made (the task's time)
``boolean_value``                bool               the label
``predicted_boolean_value``      bool               ``predicted_boolean_probability >= 0.5``
``predicted_boolean_probability`` float32           the model's probability (bit-exact: the cell's)
``hadm_id``                      int64              ours: the index admission
``sample_id``                    string             ours: the task's sample id
``split``                        string             ours: ``"test"`` (``predict --split all``: each
                                                    sample's own split)
``label``                        string             ours, multi-label tasks only (see below)
===============================  =================  =================================================

The first five are the published MEDS-evaluation columns (:data:`MEDS_COLUMNS`; validated with
the ``meds-evaluation`` package in the tests when it is installed, else against this spec).
**Multi-label tasks** (``phenotype``: 25 labels) are written in *long form*: one row per sample
and label, sample-major (the rows of sample ``i`` are ``i * L .. i * L + L - 1``, labels in the
task's order), the label's name in ``label``. A MEDS-evaluation tool then scores the flattened
label matrix, which is exactly how our ``auroc``/``aupr``/``acc`` are defined (metrics.py);
select one ``label`` for a per-label score. Binary tasks have one row per sample and no
``label`` column.

To build them the runner keeps the test samples' ids once per folder,
``<folder>/test_samples.parquet`` (``sample_id``, ``patient_id``, ``hadm_id``,
``prediction_time`` of the test rows, in ``test_idx`` order: the row order of ``preds/``).

**Evaluation** (``mingle-bench evaluate``): :func:`read_predictions` reads and checks a file
(one line naming the file and the missing column or bad row), :func:`evaluate_files` computes our
metrics (:func:`mingle_bench.metrics.compute_metrics`, on the probabilities as stored, so our own
files reproduce ``runs.jsonl`` exactly), patient-level bootstrap CIs, and, for two or more files
on the same samples, the paired comparison of each file with the first
(:func:`mingle_bench.report.comparison.paired_comparison`, clusters = ``subject_id``). Samples
are matched by ``sample_id`` when every file has it, else by ``(subject_id, prediction_time)``
(and ``label``), so an outside model's file on the same split compares with ours.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from mingle_bench import results as R

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa

#: the test samples' ids of a results folder (row order = ``test_idx`` = the rows of ``preds/``)
TEST_SAMPLES_FILE = "test_samples.parquet"
MEDS_PREDS_DIR = "meds_preds"
#: the published MEDS-evaluation prediction columns (meds LabelSchema 0.4 + meds-evaluation 0.0.6
#: PredictionSchema), as pyarrow type names; subject_id and prediction_time are required, so is at
#: least one of the two predicted columns (we need the probability)
MEDS_COLUMNS: dict[str, str] = {
    "subject_id": "int64", "prediction_time": "timestamp[us]", "boolean_value": "bool",
    "predicted_boolean_value": "bool", "predicted_boolean_probability": "float",
}
#: our columns after the MEDS ones (``label`` only on multi-label tasks)
EXTRA_COLUMNS: dict[str, str] = {"hadm_id": "int64", "sample_id": "string", "split": "string", "label": "string"}
#: the columns :func:`read_predictions` cannot do without
REQUIRED_COLUMNS = ("subject_id", "boolean_value", "predicted_boolean_probability")
THRESHOLD = 0.5
DEFAULT_BOOTSTRAP = 1000


class PredictionsError(ValueError):
    """A predictions file that cannot be evaluated (one line naming the file, the column or the row)."""


def meds_preds_path(folder: str | os.PathLike, model: str, seed: int) -> Path:
    """``<folder>/meds_preds/<model>-<seed>.parquet``."""
    return Path(folder) / MEDS_PREDS_DIR / f"{model}-{int(seed)}.parquet"


# ---------------------------------------------------------------------------------------------
# writing


def sample_frame(data, idx: np.ndarray, split: str | Sequence[str] = "test") -> "pd.DataFrame":
    """The ids of the samples ``idx`` of a ``TaskData``: a DataFrame with ``sample_id`` (str),
    ``patient_id`` (int64), ``hadm_id`` (Int64), ``prediction_time`` (datetime64[us]) and
    ``split``, in ``idx`` order. Columns a (test) TaskData lacks are filled: ``sample_id`` with
    the row index, ``patient_id`` with the row index, the others with nulls."""
    import pandas as pd

    idx = np.asarray(idx, dtype=np.int64)
    s = getattr(data, "samples", None)
    s = s if isinstance(s, pd.DataFrame) else pd.DataFrame(index=range(int(idx.max(initial=-1)) + 1))

    def col(name):
        return s[name].to_numpy()[idx] if name in s.columns else None

    sid, pid, hadm, ptime = col("sample_id"), col("patient_id"), col("hadm_id"), col("prediction_time")
    return pd.DataFrame({
        "sample_id": [str(x) for x in (sid if sid is not None else idx)],
        "patient_id": np.asarray(pid if pid is not None else idx).astype(np.int64),
        "hadm_id": pd.array(hadm if hadm is not None else [None] * len(idx), dtype="Int64"),
        "prediction_time": pd.to_datetime(ptime if ptime is not None else [None] * len(idx)).astype("datetime64[us]"),
        "split": list(split) if not isinstance(split, str) else [split] * len(idx),
    })


def write_test_samples(folder: str | os.PathLike, data, test_idx: np.ndarray) -> "pd.DataFrame":
    """Write ``<folder>/test_samples.parquet`` (the test rows' ids in ``test_idx`` order) and
    return that frame; also writes the MEDS prediction file of every finished cell that lacks one
    (a folder trained before these files existed, resumed)."""
    from mingle_bench.io import atomic_write_bytes

    frame = sample_frame(data, test_idx)
    atomic_write_bytes(Path(folder) / TEST_SAMPLES_FILE, _parquet_bytes(frame.drop(columns=["split"])))
    labels_file = R.labels_path(folder)
    if labels_file.exists():
        y = R.load_array(labels_file)["y_true"]
        names = list(getattr(data, "label_names", None) or [])
        for rec in R.load_runs(folder):
            src = R.preds_path(folder, rec["model"], rec["seed"])
            if src.exists() and not meds_preds_path(folder, rec["model"], rec["seed"]).exists():
                probs = R.load_array(src)["probs"]
                if probs.shape[0] == len(frame):
                    write_cell_predictions(folder, rec["model"], rec["seed"], frame, y, probs, names)
    return frame


def predictions_table(samples: "pd.DataFrame", y_true: np.ndarray, probs: np.ndarray,
                      label_names: Sequence[str] | None = None) -> "pa.Table":
    """The MEDS-evaluation table (a ``pyarrow.Table``, columns in the order of the module table)
    of one set of predictions: ``samples`` from :func:`sample_frame`, ``y_true`` and ``probs``
    [n, L] (float32 probabilities are stored as they are). Long form when ``L > 1``."""
    import pyarrow as pa

    probs = np.asarray(probs, dtype=np.float32)
    probs = probs[:, None] if probs.ndim == 1 else probs
    y = np.asarray(y_true).reshape(probs.shape[0], -1)
    n, n_labels = probs.shape
    if y.shape != probs.shape or len(samples) != n:
        raise ValueError(f"predictions [{n}, {n_labels}], labels {list(y.shape)} and {len(samples)} samples disagree")
    rep = (lambda a: np.repeat(np.asarray(a), n_labels)) if n_labels > 1 else (lambda a: np.asarray(a))
    cols = {
        "subject_id": pa.array(rep(samples["patient_id"].to_numpy(np.int64)), pa.int64()),
        "prediction_time": pa.array(rep(samples["prediction_time"].to_numpy("datetime64[us]")), pa.timestamp("us")),
        "boolean_value": pa.array(y.ravel() > 0.5, pa.bool_()),
        "predicted_boolean_value": pa.array(probs.ravel() >= THRESHOLD, pa.bool_()),
        "predicted_boolean_probability": pa.array(probs.ravel(), pa.float32()),
        "hadm_id": pa.array(rep(samples["hadm_id"].to_numpy(dtype=object, na_value=None)), pa.int64()),
        "sample_id": pa.array(rep(samples["sample_id"].astype(str).to_numpy(dtype=object)), pa.string()),
        "split": pa.array(rep(samples["split"].astype(str).to_numpy(dtype=object)), pa.string()),
    }
    if n_labels > 1:
        names = list(label_names or [f"label{j}" for j in range(n_labels)])
        cols["label"] = pa.array(np.tile(np.asarray(names, dtype=object), n), pa.string())
    return pa.table(cols)


def write_predictions(path: str | os.PathLike, samples: "pd.DataFrame", y_true: np.ndarray, probs: np.ndarray,
                      label_names: Sequence[str] | None = None) -> Path:
    """:func:`predictions_table` written atomically to ``path`` (parquet)."""
    from mingle_bench.io import atomic_write_bytes

    return atomic_write_bytes(path, _parquet_bytes(predictions_table(samples, y_true, probs, label_names)))


def write_cell_predictions(folder: str | os.PathLike, model: str, seed: int, samples: "pd.DataFrame", y_true: np.ndarray,
                           probs: np.ndarray, label_names: Sequence[str] | None = None) -> Path:
    """One cell's ``meds_preds/<model>-<seed>.parquet`` (the runner calls this beside ``preds/``)."""
    return write_predictions(meds_preds_path(folder, model, seed), samples, y_true, probs, label_names)


def discard(folder: str | os.PathLike) -> None:
    """Remove the MEDS prediction files and ``test_samples.parquet`` of a results folder (``run --fresh``)."""
    for f in (Path(folder) / MEDS_PREDS_DIR).glob("*.parquet"):
        f.unlink()
    (Path(folder) / TEST_SAMPLES_FILE).unlink(missing_ok=True)


def _parquet_bytes(table) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


# ---------------------------------------------------------------------------------------------
# reading and checking


@dataclass
class Predictions:
    """One predictions file, as evaluated: ``keys`` (one per sample, file order), ``subjects``
    (int64 [n]), ``y_true`` (float32 [n, L]), ``probs`` (float32 [n, L]), ``label_names``."""

    path: Path
    keys: list
    subjects: np.ndarray
    y_true: np.ndarray
    probs: np.ndarray
    label_names: list[str]
    key_kind: str            # "sample_id" or "subject_id+prediction_time"
    #: per sample ``(subject_id, prediction_time in us)``; ``None`` without a prediction_time column
    time_keys: list | None = None


def check_schema(table: "pa.Table", where: str) -> None:
    """Refuse a table whose MEDS columns are missing or of another type (one line naming ``where``)."""
    import pyarrow as pa

    names = table.schema.names
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise PredictionsError(f"{where}: no column {', '.join(repr(c) for c in missing)} (a MEDS-evaluation "
                               f"predictions file has {', '.join(MEDS_COLUMNS)}; see docs/extending.md)")
    want = {"subject_id": pa.types.is_integer, "prediction_time": pa.types.is_timestamp,
            "boolean_value": pa.types.is_boolean, "predicted_boolean_value": pa.types.is_boolean,
            "predicted_boolean_probability": pa.types.is_floating}
    for c, ok in want.items():
        if c in names and not ok(table.schema.field(c).type):
            raise PredictionsError(f"{where}: column {c!r} is {table.schema.field(c).type}, expected {MEDS_COLUMNS[c]}")


def read_predictions(path: str | os.PathLike) -> Predictions:
    """Read and check one MEDS-evaluation predictions file (ours or anyone's).

    Refused with one line naming the file: not found, not parquet, a missing or mistyped column,
    a row with a null label or probability, a probability outside [0, 1] or not finite, a sample
    (or sample x label) twice, or a long-form sample that lacks a label the file's others have."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise PredictionsError(f"--preds {path}: no such file")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a foreign file
        raise PredictionsError(f"--preds {path}: not a parquet file ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    where = f"--preds {path}"
    check_schema(table, where)
    if table.num_rows == 0:
        raise PredictionsError(f"{where}: no rows")
    cols = table.schema.names
    for c in REQUIRED_COLUMNS:
        nulls = table.column(c).is_null().to_numpy(zero_copy_only=False)
        if nulls.any():
            raise PredictionsError(f"{where}: row {int(np.flatnonzero(nulls)[0])}: {c} is null")
    prob = table.column("predicted_boolean_probability").to_numpy().astype(np.float64)
    bad = ~np.isfinite(prob) | (prob < 0) | (prob > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise PredictionsError(f"{where}: row {i}: predicted_boolean_probability {float(prob[i])!r} is not a probability "
                               "in [0, 1] (apply a sigmoid to scores first)")
    subject = table.column("subject_id").to_numpy().astype(np.int64)
    time_key = (list(zip(subject.tolist(), table.column("prediction_time").cast("int64").to_pylist()))
                if "prediction_time" in cols else None)
    if "sample_id" in cols:
        sample_key: list = table.column("sample_id").cast("string").to_pylist()
        kind = "sample_id"
    else:
        if time_key is None:
            raise PredictionsError(f"{where}: no column 'sample_id' nor 'prediction_time': samples cannot be told apart")
        sample_key = time_key
        kind = "subject_id+prediction_time"
    labels = table.column("label").cast("string").to_pylist() if "label" in cols else None
    y_flat = np.asarray(table.column("boolean_value").to_numpy(zero_copy_only=False), dtype=np.float32)
    p_flat = table.column("predicted_boolean_probability").to_numpy().astype(np.float32)

    if labels is None:
        seen: dict = {}
        for i, k in enumerate(sample_key):
            if k in seen:
                raise PredictionsError(f"{where}: row {i}: sample {_show(k)} also at row {seen[k]} (a multi-label file "
                                       "needs a 'label' column)")
            seen[k] = i
        return Predictions(path, sample_key, subject, y_flat[:, None], p_flat[:, None], ["label"], kind, time_key)

    names = list(dict.fromkeys(labels))
    col_of = {n: j for j, n in enumerate(names)}
    row_of: dict = {}
    keys: list = []
    first_row: list[int] = []
    for i, k in enumerate(sample_key):
        if k not in row_of:
            row_of[k] = len(keys)
            keys.append(k)
            first_row.append(i)
    n, n_labels = len(keys), len(names)
    y = np.full((n, n_labels), np.nan, dtype=np.float32)
    p = np.full((n, n_labels), np.nan, dtype=np.float32)
    rows = np.fromiter((row_of[k] for k in sample_key), dtype=np.int64, count=len(sample_key))
    cols_ = np.fromiter((col_of[x] for x in labels), dtype=np.int64, count=len(labels))
    dup = np.zeros((n, n_labels), dtype=bool)
    for i, (r, c) in enumerate(zip(rows.tolist(), cols_.tolist())):
        if dup[r, c]:
            raise PredictionsError(f"{where}: row {i}: sample {_show(keys[r])}, label {names[c]!r} appears twice")
        dup[r, c] = True
    if not dup.all():
        r, c = (int(v[0]) for v in np.nonzero(~dup))
        raise PredictionsError(f"{where}: sample {_show(keys[r])} (row {first_row[r]}) has no row for label "
                               f"{names[c]!r} ({n_labels} labels in the file: one row per sample and label)")
    y[rows, cols_] = y_flat
    p[rows, cols_] = p_flat
    return Predictions(path, keys, subject[np.asarray(first_row)], y, p, names, kind,
                       None if time_key is None else [time_key[i] for i in first_row])


def _show(key) -> str:
    if isinstance(key, tuple):
        return f"subject_id {key[0]} at {np.datetime64(int(key[1]), 'us') if key[1] is not None else 'null time'}"
    return repr(key)


def align(files: Sequence[Predictions]) -> list[Predictions]:
    """The files re-ordered to the first one's samples and labels; refused (one line naming the
    file) when they hold other samples, other labels or other label values."""
    if len(files) < 2:
        return list(files)
    ref = files[0]
    kinds = {f.key_kind for f in files}
    out = [ref]
    for f in files[1:]:
        if kinds == {"sample_id"}:
            ref_keys, f_keys = ref.keys, f.keys
        else:  # match on (subject, time) when a file has no sample_id
            ref_keys, f_keys = _time_keys(ref), _time_keys(f)
            for g, keys in ((ref, ref_keys), (f, f_keys)):
                if len(set(keys)) < len(keys):
                    raise PredictionsError(f"--preds {g.path}: two samples share a subject_id and prediction_time, so "
                                           "files without sample_id cannot be matched to it")
        if sorted(map(str, f.label_names)) != sorted(map(str, ref.label_names)):
            raise PredictionsError(f"--preds {f.path}: labels {f.label_names} differ from {ref.path}'s {ref.label_names}")
        pos = {k: i for i, k in enumerate(f_keys)}
        missing = [k for k in ref_keys if k not in pos]
        if missing or len(f_keys) != len(ref_keys):
            extra = [k for k in f_keys if k not in set(ref_keys)]
            what = (f"lacks {len(missing)} of {ref.path}'s samples (e.g. {_show(missing[0])})" if missing
                    else f"has {len(extra)} samples {ref.path} lacks (e.g. {_show(extra[0])})")
            raise PredictionsError(f"--preds {f.path}: {what}; a paired comparison needs the same samples")
        order = np.asarray([pos[k] for k in ref_keys], dtype=np.int64)
        lab = [f.label_names.index(n) for n in ref.label_names]
        g = Predictions(f.path, list(ref.keys), f.subjects[order], f.y_true[order][:, lab], f.probs[order][:, lab],
                        list(ref.label_names), f.key_kind, ref.time_keys)
        diff = np.argwhere(g.y_true != ref.y_true)
        if diff.size:
            r, c = (int(v) for v in diff[0])
            raise PredictionsError(f"--preds {f.path}: sample {_show(ref.keys[r])} label {ref.label_names[c]!r} is "
                                   f"{bool(g.y_true[r, c])} here and {bool(ref.y_true[r, c])} in {ref.path}: "
                                   "not the same labels")
        out.append(g)
    return out


def _time_keys(f: Predictions) -> list:
    if f.time_keys is not None:
        return list(f.time_keys)
    raise PredictionsError(f"--preds {f.path}: no prediction_time column, and another file has no sample_id: files "
                           "are matched by sample_id when all have it, else by subject_id and prediction_time")


# ---------------------------------------------------------------------------------------------
# evaluation


def bootstrap_cis(y_true: np.ndarray, probs: np.ndarray, groups: np.ndarray, metrics: Sequence[str],
                  n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Patient-level (cluster) bootstrap 95% CIs: ``n_boot`` resamples of the patients with a
    fixed seed, every sample of a drawn patient taken; a metric undefined on a resample (one
    class) drops that resample. ``{metric: (low, high)}`` as fractions (NaN when no resample is
    defined)."""
    from mingle_bench.report.comparison import boot_metric, resample_counts

    yt, yp = np.asarray(y_true, np.float64), np.asarray(probs, np.float64)
    counts = resample_counts(len(yt), groups, n_boot, seed)
    out = {}
    for m in metrics:
        v = boot_metric(m, yt, yp, counts)
        v = v[~np.isnan(v)]
        out[m] = (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if v.size else (math.nan, math.nan)
    return out


def evaluate_files(paths: Sequence[str | os.PathLike], n_boot: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> dict:
    """Our metrics, bootstrap CIs and (two or more files) the paired comparison of every file with
    the first, from prediction files alone.

    Returns ``{"files": [{"path", "n_samples", "n_subjects", "n_labels", "metrics", "ci"}],
    "comparisons": [{"a", "b", "comparison"}], "n_boot", "matched_by"}``; metric values are
    fractions, exactly :func:`mingle_bench.metrics.compute_metrics` of the stored probabilities."""
    from mingle_bench.metrics import METRIC_NAMES, PAPER_METRICS, compute_metrics, reported_metrics
    from mingle_bench.report.comparison import paired_comparison, resample_counts

    if not paths:
        raise PredictionsError("--preds: give at least one predictions file")
    if len(set(map(str, paths))) != len(paths):
        raise PredictionsError("--preds lists a file twice")
    if n_boot < 0:
        raise PredictionsError(f"--bootstrap must be >= 0, got {n_boot}")
    files = align([read_predictions(p) for p in paths])
    matched = "sample_id" if all(f.key_kind == "sample_id" for f in files) else "subject_id+prediction_time"
    out: dict = {"files": [], "comparisons": [], "n_boot": int(n_boot), "matched_by": matched}
    ci_metrics = [m for m in METRIC_NAMES if m != "ece"]
    for f in files:
        metrics = compute_metrics(f.y_true, f.probs)
        entry = {"path": str(f.path), "n_samples": int(len(f.keys)), "n_subjects": int(len(np.unique(f.subjects))),
                 "n_labels": len(f.label_names), "metrics": metrics}
        if n_boot:
            entry["ci"] = {m: list(v) for m, v in bootstrap_cis(f.y_true, f.probs, f.subjects, ci_metrics, n_boot,
                                                                seed).items()}
        out["files"].append(entry)
    compared = list(reported_metrics(files[0].y_true, PAPER_METRICS)) + ["brier"]
    counts = resample_counts(len(files[0].y_true), files[0].subjects, n_boot, seed) if len(files) > 1 else None
    for f in files[1:]:
        comp = paired_comparison(files[0].y_true, {0: f.probs}, {0: files[0].probs}, metrics=compared, counts=counts)
        out["comparisons"].append({"a": str(f.path), "b": str(files[0].path), "comparison": comp})
    return out


def format_evaluation(res: dict) -> str:
    """The text ``mingle-bench evaluate`` prints: one block per file, then one per comparison."""
    from mingle_bench.metrics import METRIC_LABELS, METRIC_NAMES

    lines = []
    for f in res["files"]:
        lines.append(f"{f['path']}: {f['n_samples']} samples, {f['n_subjects']} subjects, {f['n_labels']} label(s)")
        for m in METRIC_NAMES:
            v = f["metrics"].get(m, math.nan)
            ci = (f.get("ci") or {}).get(m)
            ci_txt = f"  [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]" if ci and not math.isnan(ci[0]) else ""
            lines.append(f"  {METRIC_LABELS[m]:<12} {100 * v:7.2f}{ci_txt}")
    if res["files"] and res["n_boot"]:
        lines.append(f"(%; 95% CIs: patient-level bootstrap, {res['n_boot']} resamples)")
    for c in res["comparisons"]:
        comp = c["comparison"]
        lines.append(f"{c['a']} - {c['b']} (paired, same samples, clusters = subject_id):")
        for m, r in comp["metrics"].items():
            ci = f"  CI [{100 * r['ci_low']:+.2f}, {100 * r['ci_high']:+.2f}]" if not math.isnan(r["ci_low"]) else ""
            share = f"  not better in {100 * r['p_not_better']:.1f}% of resamples" if not math.isnan(
                r["p_not_better"]) else ""
            lines.append(f"  {METRIC_LABELS[m]:<12} {100 * r['diff']:+7.2f}{ci}{share}")
    return "\n".join(lines)


__all__ = ["MEDS_COLUMNS", "EXTRA_COLUMNS", "TEST_SAMPLES_FILE", "MEDS_PREDS_DIR", "Predictions", "PredictionsError",
           "meds_preds_path", "sample_frame", "write_test_samples", "predictions_table", "write_predictions",
           "write_cell_predictions", "discard", "read_predictions", "check_schema", "align", "bootstrap_cis", "evaluate_files",
           "format_evaluation"]
