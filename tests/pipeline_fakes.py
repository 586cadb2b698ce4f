"""A fake pipeline for the runner, tuning, reproduce and reference tests.

``install_fakes`` replaces every stage of :mod:`mingle_bench.pipeline` with deterministic fakes
(seconds, no data, no torch training); ``install_toy_pipeline`` keeps the real model registry
and trainer on a toy ``TaskData``. The fixtures ``fakes`` and ``toy_pipeline`` (tests/conftest.py)
install them; worker subprocesses import this module with ``tests/`` on ``PYTHONPATH``.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from mingle_bench import pipeline
from mingle_bench import results as R

FAKE_MODELS = {"mingle": 1.6, "hypehr": 1.2, "retain": 1.0, "gram": 0.9, "hypergat": 1.1, "mingle-no-notes": 1.3,
               "mingle-no-concept": 1.4,
               # the references (weaker here, so the fakes' best baseline stays one of the paper's)
               "prior": 0.0, "logreg": 0.8, "tfidf-lr": 0.8, "codes-notes-lr": 0.85, "gbm": 0.85, "note-mlp": 0.7}
FAKE_MODELS.update({"retain-index": 0.95, "gram-index": 0.85})  # index-only RETAIN / GRAM: weaker than the full ones


@dataclass
class FakeManifest:
    seed: int
    ids: dict

    def to_json(self) -> str:
        import hashlib

        blob = json.dumps({"seed": self.seed, **self.ids}, sort_keys=True)
        return json.dumps({"seed": self.seed, **self.ids, "sha256": hashlib.sha256(blob.encode()).hexdigest()})


@dataclass
class FakeData:
    labels: torch.Tensor
    split_idx: dict
    samples: pd.DataFrame
    manifest: FakeManifest
    label_names: list
    report: dict = field(default_factory=dict)
    digest: dict = field(default_factory=dict)


@dataclass
class FakeFit:
    test_probs: np.ndarray
    val_metrics: dict
    train_s: float
    best_step: int
    steps_run: int
    max_steps: int
    stopped: str
    history: list
    impl: str = "reference"
    n_params: int = 10

    def curve(self, monitor: str) -> list:
        key = f"val_{monitor}"
        return [[h["step"], h[key]] for h in self.history if key in h]


def fake_build(cohort, task, *, split_seed, encoder, progress, **kw):
    n_labels = 3 if task == "phenotype" else 1
    rng = np.random.default_rng(123)
    n = 200
    patients = np.repeat(np.arange(100), 2)
    labels = (rng.random((n, n_labels)) < 0.3).astype(np.float32)
    perm = np.random.default_rng(split_seed).permutation(100)
    parts = {"train": perm[:70], "val": perm[70:80], "test": perm[80:]}
    split_idx = {k: torch.from_numpy(np.flatnonzero(np.isin(patients, v))) for k, v in parts.items()}
    samples = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "patient_id": patients})
    manifest = FakeManifest(split_seed, {k: sorted(int(x) for x in v) for k, v in parts.items()})
    digest = {"task": str(task), "split": json.loads(manifest.to_json())["sha256"],
              "features": R.stable_hash({k: kw.get(k) for k in sorted(kw)})}
    return FakeData(torch.from_numpy(labels), split_idx, samples, manifest, [f"y{j}" for j in range(n_labels)],
                    digest=digest)


def eval_steps(budget) -> list[int]:
    """The steps the trainer validates at: every ``eval_every`` steps and after the last one."""
    steps = list(range(budget.eval_every, budget.max_steps + 1, budget.eval_every))
    return steps if steps and steps[-1] == budget.max_steps else steps + [budget.max_steps]


def fake_fit(model_name, data, hparams, seed, device, budget, monitor, on_eval):
    """Test predictions of a fixed strength; a validation curve that rises until step
    ``hparams["plateau"]`` (default: the whole budget) towards ``hparams["val_aupr"]`` (default:
    grows with the strength), with the trainer's early stopping (patience in evaluations)."""
    sleep = float(os.environ.get("FAKE_FIT_SLEEP", "0"))
    strength = FAKE_MODELS[model_name] * hparams.get("scale", 1.0)
    rng = np.random.default_rng(seed * 1000 + sum(map(ord, model_name)))
    y = data.labels.numpy()[data.split_idx["test"].numpy()]
    logits = strength * (2 * y - 1) + rng.normal(size=y.shape)
    final = float(hparams.get("val_aupr", min(0.4 + 0.2 * strength, 0.999)))
    plateau = int(hparams.get("plateau", budget.max_steps))
    history, best, best_step, since, stopped = [], -1.0, 0, 0, "budget"
    for step in eval_steps(budget):
        vm = {"aupr": final * (0.5 + 0.5 * min(step, plateau) / plateau), "auroc": 0.6}
        history.append({"step": step, "train_loss": 1.0 / step, "elapsed_s": 0.0,
                        **{f"val_{k}": v for k, v in vm.items()}})
        value = vm.get(monitor, vm["aupr"])
        if value > best:
            best, best_step, since = value, step, 0
        else:
            since += 1
        on_eval(step, vm)
        if sleep:
            time.sleep(sleep)
        if since >= budget.patience:
            stopped = "early"
            break
    val = {"aupr": best, "auroc": 0.6}
    return FakeFit(1 / (1 + np.exp(-logits)), val, 0.01, best_step, history[-1]["step"], budget.max_steps, stopped,
                   history)


def fake_space(model, trial) -> dict:
    """One tunable knob: the strength multiplier of :func:`fake_fit`."""
    return {"scale": trial.suggest_float("scale", 0.1, 3.0)}


def install_fakes(setattr_fn=setattr) -> None:
    """Every stage of the pipeline facade replaced by the fakes above."""
    setattr_fn(pipeline, "load_cohort", lambda spec, progress=True: {"spec": spec})
    setattr_fn(pipeline, "source_data_id", lambda spec: spec.replace(":", "-"))
    setattr_fn(pipeline, "get_task", lambda name, code_types=None, notes="default": name)
    setattr_fn(pipeline, "build_features", fake_build)
    setattr_fn(pipeline, "model_defaults", lambda name: {"lr": 1e-3, "scale": 1.0})
    setattr_fn(pipeline, "available_models", lambda: sorted(FAKE_MODELS))
    setattr_fn(pipeline, "fit", fake_fit)
    setattr_fn(pipeline, "search_space", fake_space)
    setattr_fn(pipeline, "check_hparams", lambda name, hparams, where="": dict(hparams))


#: tiny RETAIN / MINGLE for the real trainer on the toy TaskData
RETAIN_TINY = {"emb_dim": 8, "alpha_hidden": 8, "beta_hidden": 8, "batch_size": 16}
MINGLE_TINY = {"hidden": 8, "heads": 2, "cls_hidden": 8, "sem_dim": 8}


def toy_build(cohort, task, *, split_seed, encoder, progress, **kw):
    """A seeded toy TaskData (mingle_bench.profiling.random_task_data) with a split manifest and an input digest."""
    from mingle_bench.profiling.random_task_data import make_random_task_data

    data = make_random_task_data(n_samples=60, n_labels=1, n_nodes=24, seed=5)
    pids = data.samples["patient_id"].to_numpy()
    data.manifest = FakeManifest(split_seed, {k: sorted(int(x) for x in pids[v.numpy()]) for k, v in data.split_idx.items()})
    data.digest = {"toy": "n60-l1-n24-s5", "split": json.loads(data.manifest.to_json())["sha256"]}
    return data


def install_toy_pipeline(setattr_fn=setattr) -> None:
    """The pipeline with the real model registry, defaults and trainer on a toy TaskData (seconds)."""
    setattr_fn(pipeline, "load_cohort", lambda spec, progress=True: {"spec": spec})
    setattr_fn(pipeline, "source_data_id", lambda spec: spec.replace(":", "-"))
    setattr_fn(pipeline, "get_task", lambda name, code_types=None, notes="default": name)
    setattr_fn(pipeline, "build_features", toy_build)


@contextlib.contextmanager
def folder_locked_elsewhere(folder) -> Iterator[int]:
    """Another process holds ``folder``'s results lock for the duration; yields its pid."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    held, release = ctx.Event(), ctx.Event()

    def hold():
        with R.folder_lock(folder):
            held.set()
            release.wait(30)

    p = ctx.Process(target=hold)
    p.start()
    try:
        assert held.wait(30), "the lock-holding process did not start"
        yield p.pid
    finally:
        release.set()
        p.join(30)


def wait_for(path, timeout: float = 60.0) -> bool:
    """Poll until ``path`` exists (a subprocess reached a point); False on timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline and not path.exists():
        time.sleep(0.02)
    return path.exists()
