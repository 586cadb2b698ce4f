"""Checkpoints: one trained cell's best weights and what is needed to rebuild its model.

``run --save-checkpoints`` writes, for each trained cell, ``<folder>/checkpoints/<model>-<seed>/``:

* ``model.safetensors``: the restored best step's ``state_dict`` (persistent parameters and
  buffers; the data views a model registers with ``persistent=False`` are rebuilt from the
  ``TaskData``). For the scikit-learn-style references these are their fitted arrays
  (``logreg``/``tfidf-lr``/``codes-notes-lr``: ``_coef`` [n_features, L] and ``_bias`` [L];
  ``prior``: ``_bias``; ``gbm``: ``_bias`` and ``_n_trees``).
* ``fitted.json`` (only for references fitted by their own solver): what is not an array, as
  JSON: the TF-IDF vocabulary (terms in column order) and IDF of ``tfidf-lr``,
  ``codes-notes-lr`` and ``gbm``, and ``gbm``'s LightGBM boosters as LightGBM's text model format.
* ``config.json``: the model name, seed and resolved hyperparameters, the run's configuration
  keys (task, data, split, encoder, note policy, code types, ...), the ``input_hash``, the
  input digest and source id, the label names, the cell's ``preds_sha256`` and the sha256 of
  ``model.safetensors``.

No pickle: the weights are safetensors, everything else JSON. :func:`rebuild_model` builds the
model class on a ``TaskData`` with the stored hyperparameters (seeded as the trainer seeds it),
then loads the state; ``mingle-bench predict`` (:mod:`mingle_bench.commands.predict_cmd`) rebuilds
the ``TaskData`` from the stored configuration first. A model fitted by its own solver that is not
listed in :data:`FITTED_MODELS` (a plugin) has no checkpoint format: its ``config.json`` says
``"checkpointable": false`` with the reason, and ``predict`` refuses it in one line.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CHECKPOINTS_DIR = "checkpoints"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FITTED_FILE = "fitted.json"
#: bumped when the folder layout changes; predict refuses a format it does not know
CHECKPOINT_FORMAT = 1
#: the references fitted by their own solver whose fitted state has a checkpoint format
FITTED_MODELS = ("logreg", "prior", "tfidf-lr", "codes-notes-lr", "gbm")


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or used (one line naming the folder or the model)."""


def cell_dir(folder: str | os.PathLike, model: str, seed: int) -> Path:
    """``<folder>/checkpoints/<model>-<seed>``."""
    return Path(folder) / CHECKPOINTS_DIR / f"{model}-{int(seed)}"


def has_checkpoint(folder: str | os.PathLike, model: str, seed: int) -> bool:
    d = cell_dir(folder, model, seed)
    return (d / CONFIG_FILE).is_file() and (d / WEIGHTS_FILE).is_file()


# ---------------------------------------------------------------------------------------------
# the state of a trained model


def export_state(model, data=None) -> tuple[dict[str, np.ndarray], dict | None]:
    """``(tensors, fitted)`` of a trained model: its ``state_dict`` as numpy arrays (copies), and
    for a model fitted by its own solver the JSON of what is not an array (``None`` otherwise;
    ``{"unsupported": reason}`` for such a model without a checkpoint format)."""
    tensors = {k: v.detach().cpu().clone().contiguous().numpy() for k, v in model.state_dict().items()}
    if not getattr(model, "sklearn", False):
        return tensors, None
    from mingle_bench.baselines.gbm import GBM
    from mingle_bench.baselines.logreg import LogReg
    from mingle_bench.baselines.prior import Prior
    from mingle_bench.baselines.text_features import fit_tfidf
    from mingle_bench.baselines.tfidf_lr import TfidfLR

    if isinstance(model, TfidfLR):
        return tensors, {"kind": "tfidf-lr", "tfidf": _tfidf_state(model.vectorizer)}
    if isinstance(model, GBM):
        if data is None:
            raise CheckpointError("gbm: exporting its state needs the TaskData (its TF-IDF is refitted on the train split)")
        vec, _ = fit_tfidf(model.texts, data.split_idx["train"], model.hparams)  # the vectoriser fit_sklearn used
        boosters = [None if e is None else {"model": e[0].model_to_string(num_iteration=e[1]), "kept": int(e[1])}
                    for e in model.boosters]
        return tensors, {"kind": "gbm", "tfidf": _tfidf_state(vec), "boosters": boosters}
    if isinstance(model, (LogReg, Prior)):
        return tensors, {"kind": "arrays"}
    return tensors, {"unsupported": f"{getattr(model, 'name', type(model).__name__)} is fitted by its own solver and "
                                    "has no checkpoint format (mingle_bench.checkpoints.FITTED_MODELS)"}


def _tfidf_state(vec) -> dict | None:
    if vec is None:
        return None
    terms = [""] * len(vec.vocabulary_)
    for t, i in vec.vocabulary_.items():
        terms[int(i)] = t
    return {"terms": terms, "idf": [float(x) for x in np.asarray(vec.idf_, dtype=np.float64)]}


def _tfidf_matrix(state: dict | None, texts: list[str], hparams: dict):
    """The TF-IDF matrix of ``texts`` under a stored vocabulary and IDF (bit-identical to the
    fitted vectoriser's ``transform``); one all-zero column when the run's training texts held no term."""
    import scipy.sparse as sp

    from mingle_bench.baselines.text_features import tfidf_vectorizer

    if state is None:
        return None, sp.csr_matrix((len(texts), 1), dtype=np.float64)
    vec = tfidf_vectorizer(hparams, vocabulary={t: i for i, t in enumerate(state["terms"])})
    vec.idf_ = np.asarray(state["idf"], dtype=np.float64)
    return vec, sp.csr_matrix(vec.transform(texts), dtype=np.float64)


def _restore_fitted(model, fitted: dict) -> None:
    """Put a solver-fitted reference back into its fitted state (its arrays are loaded by the caller)."""
    import scipy.sparse as sp

    kind = fitted.get("kind")
    if kind == "tfidf-lr":
        from mingle_bench.baselines.codes_notes_lr import CodesNotesLR

        model.vectorizer, tfidf = _tfidf_matrix(fitted.get("tfidf"), model.texts, model.hparams)
        model.x = sp.hstack([model.codes_x, tfidf], format="csr") if isinstance(model, CodesNotesLR) else tfidf
        model.input_report = {"notes": "on" if model.vectorizer is not None else "off: no note term in the training split"}
    elif kind == "gbm":
        import lightgbm as lgb

        _, tfidf = _tfidf_matrix(fitted.get("tfidf"), model.texts, model.hparams)
        model.x = sp.hstack([model.counts, tfidf], format="csr")
        model.boosters = [None if b is None else (lgb.Booster(model_str=b["model"]), int(b["kept"]))
                          for b in fitted["boosters"]]
    model.fitted = True
    model.hit_iteration_cap = False


# ---------------------------------------------------------------------------------------------
# the folder


def save_checkpoint(directory: str | os.PathLike, tensors: dict[str, np.ndarray], fitted: dict | None,
                    config: dict[str, Any]) -> Path:
    """Write ``model.safetensors``, ``fitted.json`` (when ``fitted``) and ``config.json`` into
    ``directory`` (each atomically; ``config.json`` last, so a folder with a config is complete)."""
    from safetensors.numpy import save

    from mingle_bench.io import atomic_write_bytes, atomic_write_json

    d = Path(directory)
    blob = save({k: np.ascontiguousarray(v) for k, v in tensors.items()})
    atomic_write_bytes(d / WEIGHTS_FILE, blob)
    if fitted is not None:
        atomic_write_json(d / FITTED_FILE, fitted)
    elif (d / FITTED_FILE).exists():
        (d / FITTED_FILE).unlink()
    unsupported = (fitted or {}).get("unsupported")
    cfg = {"format": CHECKPOINT_FORMAT, **config, "checkpointable": not unsupported,
           "weights_sha256": hashlib.sha256(blob).hexdigest(), "weights_bytes": len(blob)}
    if unsupported:
        cfg["not_checkpointable"] = unsupported
    atomic_write_json(d / CONFIG_FILE, cfg)
    return d


@dataclass
class Checkpoint:
    """A checkpoint folder read back: its ``config``, ``tensors`` (numpy) and ``fitted`` JSON."""

    path: Path
    config: dict
    tensors: dict[str, np.ndarray]
    fitted: dict | None

    @property
    def model(self) -> str:
        return str(self.config["model"])

    @property
    def seed(self) -> int:
        return int(self.config["seed"])


def load_checkpoint(directory: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint folder; refused in one line naming it when a file is missing, torn
    (sha256), of another format, or the model has no checkpoint format."""
    from safetensors.numpy import load

    from mingle_bench.results import read_json, read_json_object

    d = Path(directory)
    where = f"--checkpoint {d}"
    if not d.is_dir():
        raise CheckpointError(f"{where}: no such folder (a run's checkpoints/<model>-<seed>/, written by "
                              "`mingle-bench run --save-checkpoints`)")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (d / name).is_file():
            raise CheckpointError(f"{where}: no {name} (a run's checkpoints/<model>-<seed>/ holds {CONFIG_FILE} "
                                  f"and {WEIGHTS_FILE})")
    config = read_json_object(d / CONFIG_FILE)
    if config.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{where}: checkpoint format {config.get('format')!r}, this version reads {CHECKPOINT_FORMAT}")
    missing = [k for k in ("model", "seed", "hparams", "run", "label_names") if k not in config]
    if missing:
        raise CheckpointError(f"{where}: {CONFIG_FILE} lacks {', '.join(missing)}")
    if not config.get("checkpointable", True):
        raise CheckpointError(f"{where}: {config.get('not_checkpointable') or 'the model has no checkpoint format'}")
    blob = (d / WEIGHTS_FILE).read_bytes()
    if config.get("weights_sha256") and hashlib.sha256(blob).hexdigest() != config["weights_sha256"]:
        raise CheckpointError(f"{where}: {WEIGHTS_FILE} does not match the sha256 in {CONFIG_FILE} (torn or edited)")
    try:
        tensors = load(blob)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type
        raise CheckpointError(f"{where}: {WEIGHTS_FILE} is not readable safetensors ({exc})") from None
    fitted = read_json(d / FITTED_FILE) if (d / FITTED_FILE).is_file() else None
    return Checkpoint(d, config, tensors, fitted)


def rebuild_model(ckpt: Checkpoint, data, device: str = "cpu"):
    """The checkpoint's model on ``data`` (a ``TaskData`` with the run's inputs), weights loaded,
    in eval mode. Built as the trainer builds it (``seed_everything(seed)`` first, then the class
    with the stored hyperparameters), so anything a constructor draws at random is drawn alike."""
    import torch

    from mingle_bench.training import seed_everything
    from mingle_bench.zoo import get_model

    where = f"--checkpoint {ckpt.path}"
    try:
        cls = get_model(ckpt.model)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{where}: model {ckpt.model!r} is not registered ({exc})") from None
    missing = cls.missing_inputs(data)
    if missing:
        raise CheckpointError(f"{where}: {ckpt.model} needs {', '.join(missing)}, which these inputs lack")
    seed_everything(ckpt.seed)
    model = cls(data, **cls.resolve_hparams(ckpt.config["hparams"])).to(device)
    state = {k: torch.from_numpy(np.array(v)) for k, v in ckpt.tensors.items()}
    own = model.state_dict()
    if getattr(model, "sklearn", False):
        # fitted arrays whose shape depends on the fit (tfidf-lr's _coef: one row per term)
        for k, v in state.items():
            if k in own and own[k].shape != v.shape:
                setattr(model, k, torch.zeros(v.shape, dtype=own[k].dtype, device=own[k].device))
        own = model.state_dict()
    bad = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if k in own and own[k].shape != v.shape]
    extra, lacking = sorted(set(state) - set(own)), sorted(set(own) - set(state))
    if bad or extra or lacking:
        detail = "; ".join(x for x in (f"shapes differ: {', '.join(bad[:3])}" if bad else "",
                                       f"unexpected {', '.join(extra[:3])}" if extra else "",
                                       f"missing {', '.join(lacking[:3])}" if lacking else "") if x)
        raise CheckpointError(f"{where}: the weights do not fit {ckpt.model} built on these inputs ({detail}): the "
                              "data, task or feature options differ from the run's")
    model.load_state_dict(state)
    if getattr(model, "sklearn", False):
        if not ckpt.fitted or ckpt.fitted.get("unsupported"):
            raise CheckpointError(f"{where}: {(ckpt.fitted or {}).get('unsupported') or 'no ' + FITTED_FILE}")
        _restore_fitted(model, ckpt.fitted)
    model.eval()
    return model


def request_state(executor) -> None:
    """Ask ``executor`` to hand back each cell's trained state (``run --save-checkpoints``); the
    local executor only (a Ray worker's weights are not sent back)."""
    if getattr(executor, "name", "local") != "local":
        raise CheckpointError(f"--save-checkpoints runs with --executor local only (the {executor.name} executor does "
                              "not send the weights back); rerun the cells locally to checkpoint them")
    executor.return_state = True


def save_cell(folder: str | os.PathLike, record: dict, tensors: dict[str, np.ndarray], fitted: dict | None,
              run_config: dict) -> Path:
    """One cell's checkpoint from its ``runs.jsonl`` ``record`` and the run's ``config.json`` dict."""
    import torch

    cfg = {
        "model": record["model"], "seed": int(record["seed"]), "hparams": record["config"]["hparams"],
        "run": {k: v for k, v in record["config"].items() if k not in ("hparams", "tuned_from")},
        "input_hash": record["input_hash"], "preds_sha256": record["preds_sha256"],
        "best_step": record.get("best_step"), "n_params": record.get("n_params"),
        "label_names": list(run_config.get("label_names") or []), "input_digest": run_config.get("input_digest"),
        "source_id": run_config.get("source_id"), "torch": torch.__version__, "created_at": record.get("finished_at"),
    }
    return save_checkpoint(cell_dir(folder, record["model"], record["seed"]), tensors, fitted, cfg)


def discard(folder: str | os.PathLike) -> None:
    """Remove every checkpoint of a results folder (``run --fresh``)."""
    import shutil

    d = Path(folder) / CHECKPOINTS_DIR
    if d.is_dir():
        shutil.rmtree(d)


__all__ = ["CHECKPOINTS_DIR", "CHECKPOINT_FORMAT", "FITTED_MODELS", "Checkpoint", "CheckpointError", "cell_dir", "discard",
           "export_state", "has_checkpoint", "load_checkpoint", "rebuild_model", "request_state", "save_cell",
           "save_checkpoint"]
