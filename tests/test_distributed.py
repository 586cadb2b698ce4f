"""The Ray executor (mingle_bench.distributed): cells, sharded embedding and tuning workers on a local Ray.

One local Ray (``num_cpus=2``) per module; the workers get ``tests/`` on ``PYTHONPATH`` so
they can unpickle the toy pipeline's objects (pipeline_fakes.FakeManifest) and the toy
encoder below. The whole module is skipped where Ray is not installed; the one test that
needs no Ray (a missing Ray gives a one-line CLI error) lives in its own section and runs
everywhere.
"""
from __future__ import annotations

import builtins
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mingle_bench import results as R
from mingle_bench import runner
from mingle_bench.cli import main
from mingle_bench.encoders.base import Encoder, l2_normalize
from pipeline_fakes import MINGLE_TINY, RETAIN_TINY, install_fakes

TESTS = str(Path(__file__).resolve().parent)


# -- without Ray ---------------------------------------------------------------------------------


@pytest.fixture
def no_ray(monkeypatch):
    """``import ray`` fails, as where the distributed extra is not installed."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    for mod in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, mod)


@pytest.mark.parametrize("cmd", [
    ["run", "--task", "mortality", "--data", "synthetic:small", "--models", "mingle", "--seeds", "1"],
    ["tune", "--task", "mortality", "--data", "synthetic:small", "--model", "mingle", "--trials", "2"],
])
def test_executor_ray_without_ray_is_one_line(no_ray, monkeypatch, tmp_path, capsys, cmd):
    install_fakes(monkeypatch.setattr)
    code = main([*cmd, "--executor", "ray", "--encoder", "none", "--max-steps", "3", "--eval-every", "1",
                 "--patience", "2", "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert "pip install -e '.[distributed]'" in lines[0] and "Ray" in lines[0], lines[0]


def test_import_without_ray_works(no_ray):
    import importlib

    import mingle_bench.distributed as d

    importlib.reload(d)
    assert d.ClusterError and runner.make_executor("local").name == "local"
    with pytest.raises(runner.RunError, match="pip install"):
        runner.make_executor("ray")


def test_an_unreachable_address_is_one_line_naming_it(fakes, tmp_path, capsys):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[distributed]')")
    if ray.is_initialized():
        pytest.skip("a Ray is already initialised in this process (it would be reused)")
    code = main(["run", "--task", "mortality", "--data", "synthetic:small", "--models", "mingle", "--seeds", "1",
                 "--executor", "ray", "--ray-address", "127.0.0.1:1", "--encoder", "none", "--max-steps", "3",
                 "--eval-every", "1", "--patience", "2", "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert code == 1 and "Traceback" not in err and len(lines) == 1, err
    assert "--ray-address 127.0.0.1:1" in lines[0] and "ray start --head" in lines[0]


# -- on a local Ray (starting it takes ~8 s on 2 cores, each worker ~4 s: most tests here are slow) --


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[distributed]')")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}})
    yield ray
    ray.shutdown()


def _toy_run(out, executor, models=("mingle", "logreg"), seeds=(0, 1), max_steps=10, eval_every=5, **kw):
    kw.setdefault("hparam_overrides", {"retain": RETAIN_TINY, "mingle": MINGLE_TINY})
    kw.setdefault("progress", False)
    cfg = runner.RunConfig(task="mortality", data="synthetic:small", models=list(models), seeds=list(seeds), out=str(out),
                           max_steps=max_steps, eval_every=eval_every, patience=2, n_boot=20, reference=None,
                           **kw)
    return runner.run_benchmark(cfg, executor=executor)


@pytest.mark.slow
@pytest.mark.parametrize("models,max_steps", [(("mingle", "logreg"), 10), (("mingle", "retain", "logreg", "hypehr"), 30)])
def test_ray_cells_are_bit_identical_to_local(ray_local, toy_pipeline, tmp_path, models, max_steps):
    """Same toy config, local vs Ray: the same metrics and prediction hashes, and the records say which ran them.
    (toy_pipeline sets one torch thread in the driver; the Ray cells take the driver's count.)"""
    from mingle_bench.distributed.cells import RayExecutor

    local = _toy_run(tmp_path / "local", runner.LocalExecutor(), models=models, max_steps=max_steps)
    # with the progress display on for the larger case: the workers' evaluations reach the driver's lines
    ray_ = _toy_run(tmp_path / "ray", RayExecutor(), models=models, max_steps=max_steps, progress=len(models) > 2)
    assert not local.failed and not ray_.failed
    a = {(r["model"], r["seed"]): r for r in R.load_runs(local.folder)}
    b = {(r["model"], r["seed"]): r for r in R.load_runs(ray_.folder)}
    assert a.keys() == b.keys() and len(a) == 2 * len(models)
    for k in a:
        assert a[k]["metrics"] == b[k]["metrics"], k
        assert a[k]["val_metrics"] == b[k]["val_metrics"], k
        assert a[k]["preds_sha256"] == b[k]["preds_sha256"], k
        assert a[k]["curve"] == b[k]["curve"], k
        assert a[k]["input_hash"] == b[k]["input_hash"], k
        assert (a[k]["executor"], b[k]["executor"]) == ("local", "ray")


class RecordingProgress:
    """The CellProgress calls an executor makes, recorded."""

    enabled = True

    def __init__(self):
        self.calls: list = []

    def start_cell(self, model, seed, max_steps, concurrent=False):
        self.calls.append(("start", model, seed, concurrent))
        return lambda step, vm: self.calls.append(("eval", model, seed, step))

    def finish_cell(self, model, seed):
        self.calls.append(("finish", model, seed))

    def running(self, n):
        self.calls.append(("running", n))

    def log(self, msg):
        self.calls.append(("log", msg))


@pytest.mark.slow
def test_workers_report_progress_to_the_driver(ray_local, toy_pipeline):
    from mingle_bench import pipeline as P
    from mingle_bench.distributed.cells import RayExecutor

    data = P.prepare(P.Inputs(task="mortality", data="synthetic:small", encoder=None), progress=False).data
    jobs = [runner.CellJob("retain", s, {**P.model_defaults("retain"), **RETAIN_TINY}, f"h{s}") for s in (0, 1)]
    prog = RecordingProgress()
    budget = P.make_budget(6, 2, 5)
    out = list(RayExecutor().run(jobs, data, device="cpu", budget=budget, monitor="aupr", progress=prog))
    assert sorted(j.seed for j, _ in out) == [0, 1] and all(isinstance(o, P.CellOutcome) for _, o in out)
    for job, o in out:
        s = job.seed
        assert ("start", "retain", s, True) in prog.calls and ("finish", "retain", s) in prog.calls
        steps = [c[3] for c in prog.calls if c[:3] == ("eval", "retain", s)]
        assert steps == [step for step, _ in o.curve] and steps[-1] == o.steps_run, (steps, o.curve)
    assert prog.calls[-1] == ("running", 0)


def crash_on_retain_seed1(model, seed, data, hparams, device, budget, monitor, threads, events, key):
    """A cell function whose worker process dies for retain/1 (as if OOM-killed), else the real one."""
    from mingle_bench.distributed.cells import _train_cell_task

    if model == "retain" and seed == 1:
        os._exit(1)
    return _train_cell_task(model, seed, data, hparams, device, budget, monitor, threads, events, key)


@pytest.mark.slow
def test_a_dead_worker_fails_its_cell_only_and_a_rerun_resumes(ray_local, toy_pipeline, tmp_path):
    from mingle_bench.distributed.cells import RayExecutor

    class Crashing(RayExecutor):
        cell_function = staticmethod(crash_on_retain_seed1)

    first = _toy_run(tmp_path, Crashing(), models=("retain", "logreg"), max_steps=4, eval_every=2)
    assert [(f["model"], f["seed"]) for f in first.failed] == [("retain", 1)]
    assert "retain seed 1" in first.failed[0]["error"] and "died" in first.failed[0]["error"]
    assert sorted(first.trained) == [("logreg", 0), ("logreg", 1), ("retain", 0)]
    assert (first.folder / "failures.json").exists()
    again = _toy_run(tmp_path, RayExecutor(), models=("retain", "logreg"), max_steps=4, eval_every=2)
    assert again.trained == [("retain", 1)] and len(again.skipped) == 3 and not again.failed
    assert not (first.folder / "failures.json").exists()
    runs = R.load_runs(first.folder)
    assert len(runs) == 4 and len({(r["model"], r["seed"]) for r in runs}) == 4  # no cell written twice


def raise_on_logreg(model, seed, data, hparams, device, budget, monitor, threads, events, key):
    from mingle_bench.distributed.cells import _train_cell_task

    if model == "logreg":
        raise FloatingPointError("loss is nan at step 3")
    return _train_cell_task(model, seed, data, hparams, device, budget, monitor, threads, events, key)


@pytest.mark.slow
def test_a_raising_cell_is_a_failure_naming_its_error(ray_local, toy_pipeline, tmp_path):
    from mingle_bench.distributed.cells import RayExecutor

    class Raising(RayExecutor):
        cell_function = staticmethod(raise_on_logreg)

    s = _toy_run(tmp_path, Raising(), models=("logreg",), seeds=(0,), max_steps=4, eval_every=2)
    assert not s.trained and len(s.failed) == 1
    assert s.failed[0]["error"] == "FloatingPointError: loss is nan at step 3"
    assert "raise_on_logreg" in s.failed[0]["traceback"]


# -- sharded embedding -------------------------------------------------------------------------------


class ToyEncoder(Encoder):
    """Deterministic, and sensitive to the batch like a padded transformer: every vector depends on
    the longest input of its forward batch, so only identical batches give identical vectors."""

    identity = "toy:enc@1"
    max_length = 18
    num_special_tokens = 2
    default_batch_tokens = 64
    max_batch_size = 8

    @property
    def dim(self) -> int:
        return 6

    @property
    def params(self):
        return {"pooling": "mean", "precision": "float32"}

    def tokenize(self, texts):
        return [[ord(c) % 97 for c in t] for t in texts]

    def encode_tokens(self, token_lists):
        longest = max(max(len(t) for t in token_lists), 1)
        rows = []
        for t in token_lists:
            x = torch.tensor(list(t) + [0] * (longest - len(t)), dtype=torch.float32)
            w = torch.arange(1, longest + 1, dtype=torch.float32)
            rows.append(torch.stack([(x * w).sum(), (x ** 1.5).sum() / longest, torch.tensor(float(len(t))), x.mean(),
                                     torch.sin(x).sum(), torch.tensor(float(longest))]))
        return l2_normalize(torch.stack(rows))


def toy_loader(spec, precision, device, dtype):
    return ToyEncoder()


def _texts(n, seed=0):
    rng = np.random.default_rng(seed)
    return ["".join(chr(97 + int(c)) for c in rng.integers(0, 26, size=int(rng.integers(1, 30)))) for _ in range(n)]


@pytest.mark.slow  # a subprocess end to end: the slow run (CI) keeps it
def test_sharded_encoder_matches_local_bitwise_through_the_cache(ray_local, tmp_path):
    from mingle_bench.distributed import ShardedEncoder
    from mingle_bench.encoders import EmbeddingCache, embed_texts, embed_visit_notes

    texts = _texts(300)
    inner = ToyEncoder()
    sharded = ShardedEncoder(ToyEncoder(), spec="toy", min_texts=0, workers=2, loader=toy_loader)
    assert (sharded.identity, sharded.params, sharded.dim, sharded.describe()) == (
        inner.identity, inner.params, inner.dim, inner.describe())
    local = embed_texts(inner, texts, cache=None, progress=False)
    cache = EmbeddingCache(tmp_path / "emb")
    report: dict = {}
    ray_v = embed_texts(sharded, texts, cache=cache, progress=False, report=report)
    assert torch.equal(local, ray_v)
    assert sharded.stats["sharded_calls"] == 1 and sharded.stats["sharded_batches"] > 2 and sharded.stats["actors"] == 2
    assert report["embedded"] == len(set(texts))
    # the cache holds them under the local namespace: a local run finds them all
    again: dict = {}
    assert torch.equal(embed_texts(inner, texts, cache=cache, progress=False, report=again), local)
    assert again["cached"] == len(set(texts)) and again["embedded"] == 0

    notes = {i: t * 3 for i, t in enumerate(_texts(120, seed=1))}
    visits = [[i, (i + 7) % 120] for i in range(100)] + [[]]
    read = lambda ids: {i: notes[i] for i in ids}  # noqa: E731
    lv, lh, _ = embed_visit_notes(inner, visits, read, chunk_tokens=12, overlap=3, progress=False)
    rv, rh, _ = embed_visit_notes(sharded, visits, read, chunk_tokens=12, overlap=3, progress=False)
    assert torch.equal(lv, rv) and torch.equal(lh, rh)
    sharded.close()


def test_small_jobs_stay_local():
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[distributed]')")
    from mingle_bench.distributed import ShardedEncoder

    sharded = ShardedEncoder(ToyEncoder(), spec="toy", loader=toy_loader)  # default threshold: 256 texts
    out = sharded.encode(_texts(40))
    assert torch.equal(out, ToyEncoder().encode(_texts(40)))
    assert sharded.stats["sharded_calls"] == 0 and sharded.stats["actors"] == 0


@pytest.mark.slow
def test_sharded_minilm_matches_local_bitwise(ray_local):
    """The real default encoder (all-MiniLM-L6-v2) on two single-thread actors vs this process."""
    from mingle_bench.distributed import ShardedEncoder
    from mingle_bench.encoders import embed_texts, load_encoder

    try:
        enc = load_encoder("default")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"default encoder unavailable: {exc}")
    texts = [f"patient {i} admitted with " + "chest pain and dyspnoea " * (1 + i % 9) for i in range(600)]
    local = embed_texts(enc, texts, progress=False)
    sharded = ShardedEncoder(enc, spec="default", workers=2, min_texts=0)
    ray_v = embed_texts(sharded, texts, progress=False)
    assert sharded.stats["sharded_batches"] > 2
    assert torch.equal(local, ray_v)
    sharded.close()


# -- tuning workers -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_tune_two_ray_workers_share_one_sqlite_study(ray_local, toy_pipeline, tmp_path):
    import optuna

    from mingle_bench import tuning

    res = tuning.tune(task="mortality", model="logreg", trials=4, data="synthetic:small", encoder=None, out=tmp_path,
                      max_steps=6, eval_every=2, patience=2, progress=False, executor="ray", workers=2, worker_id=3)
    done = res.counts.get("complete", 0) + res.counts.get("pruned", 0)
    assert 4 <= done <= 4 + 1  # MaxTrialsCallback: at most workers - 1 over the cap
    assert sorted(w["worker_id"] for w in res.workers) == [3, 4] and not any("error" in w for w in res.workers)
    assert res.path is not None and res.path.exists()
    study = optuna.load_study(study_name=res.study_name, storage=f"sqlite:///{Path(tmp_path).resolve() / 'optuna.db'}")
    assert "precision" not in study.user_attrs  # fp32 studies keep their attributes
    assert {t.user_attrs.get("worker_id") for t in study.trials} <= {3, 4}


def test_tune_workers_need_ray_and_sqlite_in_memory_is_refused(fakes, tmp_path):
    from mingle_bench import tuning

    with pytest.raises(tuning.TuneError, match="--workers 2 needs --executor ray"):
        tuning.tune(task="mortality", model="mingle", trials=2, out=tmp_path, encoder=None, workers=2, progress=False)
    with pytest.raises(tuning.TuneError, match="in-memory SQLite"):
        tuning.tune(task="mortality", model="mingle", trials=2, out=tmp_path, encoder=None, executor="ray",
                    storage="sqlite:///:memory:", progress=False)


def test_a_study_of_another_precision_is_refused(fakes, tmp_path, monkeypatch):
    from mingle_bench import pipeline, tuning

    monkeypatch.setattr(pipeline, "open_encoder", lambda *a, **k: None)  # the fake features ignore it
    kw = dict(task="mortality", model="mingle", trials=1, out=tmp_path, encoder="default", progress=False,
              max_steps=4, eval_every=2, patience=2, study_name="s")
    tuning.tune(**kw)
    with pytest.raises(tuning.TuneError, match="precision"):
        tuning.tune(**{**kw, "precision": "bf16"})
    # without an encoder nothing embeds, so the precision is moot and the study is the same
    kw.update(encoder=None, study_name="t")
    tuning.tune(**kw)
    tuning.tune(**{**kw, "precision": "bf16"})
