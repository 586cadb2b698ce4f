"""The index-only variants of the sequence models (``retain-index``, ``gram-index``): the same
class as RETAIN / GRAM, restricted to the index visit (a sequence of length one at time 0)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mingle_bench.baselines.sequence import model_reads_history, visit_sequences
from mingle_bench.profiling.random_task_data import make_random_task_data
from mingle_bench.zoo import display_name, get_model, list_models, model_entry, model_family

TINY = {"retain": {"emb_dim": 16, "alpha_hidden": 16, "beta_hidden": 16},
        "gram": {"emb_dim": 16, "rnn_hidden": 16, "attn_dim": 16}}
PAIRS = [("retain", "retain-index"), ("gram", "gram-index")]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy():
    data = make_random_task_data(n_samples=40, n_labels=2, n_nodes=24, seed=3)
    lengths = data.seq_visit_indptr[1:] - data.seq_visit_indptr[:-1]
    assert int((lengths > 1).sum()) >= 10, "toy data should have many multi-visit samples"
    return data


def _history_altered(data):
    """Every earlier visit replaced by another visit (the next one, cyclically) and moved 37 days
    further back; the index visit (each sequence's last) and everything else unchanged."""
    out = copy.copy(data)
    last = data.seq_visit_indptr[1:] - 1
    earlier = torch.ones(data.seq_visits.numel(), dtype=torch.bool)
    earlier[last] = False
    visits, times = data.seq_visits.clone(), data.seq_times.clone()
    n_visits = data.visit_codes_indptr.numel() - 1
    visits[earlier] = (visits[earlier] + 1) % n_visits
    times[earlier] += 37.0
    out.seq_visits, out.seq_times = visits, times
    return out


def _index_visit_only(data):
    """Each sequence truncated to its index visit, at time 0."""
    out = copy.copy(data)
    out.seq_visits = data.seq_visits[data.seq_visit_indptr[1:] - 1].clone()
    out.seq_times = torch.zeros(out.seq_visits.shape, dtype=data.seq_times.dtype)
    out.seq_visit_indptr = torch.arange(data.n_samples + 1, dtype=torch.int64)
    return out


def _logits(name, data, seed=0, **extra):
    torch.manual_seed(seed)
    base = name.removesuffix("-index")
    model = get_model(name)(data, **{**TINY[base], **extra}).eval()
    with torch.no_grad():
        return model({"idx": torch.arange(data.n_samples)})["logits"]


def test_registered_as_baseline_variants():
    for full, index in PAIRS:
        entry = model_entry(index)
        assert model_family(index) == "baseline" and entry.fixed == {"history": False}
        assert display_name(index) == f"{display_name(full)} (index visit only)"
        assert issubclass(entry.cls, get_model(full).__mro__[1])     # the same class (Retain, Gram)
        assert model_reads_history(get_model(full)) and not model_reads_history(get_model(index))
        # the full model's hyperparameters (part of every committed cell's input hash) are unchanged
        assert "history" not in get_model(full).default_hparams
        with pytest.raises(ValueError, match="fixes history=False"):
            get_model(index).resolve_hparams({"history": True})
    assert {"retain-index", "gram-index"} <= set(list_models("baseline"))
    # the models that read earlier visits: RETAIN, GRAM and gbm (code counts over the history)
    assert [m for m in list_models() if model_reads_history(get_model(m))] == ["gbm", "gram", "retain"]


def test_visit_sequences_index_only(toy):
    idx = torch.arange(toy.n_samples)
    visits, times, mask, lengths = visit_sequences(toy.seq_visit_indptr, toy.seq_visits, toy.seq_times, idx,
                                                   history=False)
    full_visits, _, _, full_lengths = visit_sequences(toy.seq_visit_indptr, toy.seq_visits, toy.seq_times, idx)
    assert visits.shape == times.shape == mask.shape == (toy.n_samples, 1)
    assert torch.equal(visits[:, 0], full_visits[idx, full_lengths - 1])
    assert bool((times == 0).all()) and bool(mask.all()) and bool((lengths == 1).all())
    empty = torch.tensor([0, 1, 1], dtype=torch.int64)   # sample 1 has no visit
    with pytest.raises(ValueError, match="sample 1 has an empty visit sequence"):
        visit_sequences(empty, torch.tensor([0]), torch.tensor([0.0]), torch.tensor([0, 1]), history=False)


@pytest.mark.parametrize("full,index", PAIRS)
def test_index_variant_ignores_earlier_visits(full, index, toy):
    """Altering every earlier visit (codes and times) leaves the index variant's output unchanged,
    and changes the full model's for the samples that have earlier visits."""
    altered = _history_altered(toy)
    assert torch.equal(_logits(index, toy), _logits(index, altered))
    has_history = (toy.seq_visit_indptr[1:] - toy.seq_visit_indptr[:-1]) > 1
    moved = (_logits(full, toy) - _logits(full, altered)).abs().amax(1) > 1e-6
    assert torch.equal(moved, has_history)


@pytest.mark.parametrize("full,index", PAIRS)
def test_index_variant_is_the_full_model_on_the_index_visit(full, index, toy):
    """Same seed, same weights: the variant on the real data computes exactly what the full model
    computes on sequences truncated to the index visit at time 0."""
    assert torch.equal(_logits(index, toy), _logits(full, _index_visit_only(toy)))


@pytest.mark.parametrize("full,index", PAIRS)
def test_unreachable_weights_are_frozen(full, index, toy):
    """Parameters a one-visit sequence never reaches do not train and are not counted."""
    torch.manual_seed(0)
    model = get_model(index)(toy, **TINY[full]).train()
    idx = toy.split_idx["train"]
    model({"idx": idx, "labels": toy.labels[idx]})["loss"].backward()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    want = {"gru.weight_hh_l0"} if full == "gram" else {
        "gru_beta.weight_hh_l0", "w_alpha.weight", "w_alpha.bias",
        *(f"gru_alpha.{k}_l0" for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))}
    assert frozen == want
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters() if p.requires_grad)
    torch.manual_seed(0)
    assert model.n_params() < get_model(full)(toy, **TINY[full]).n_params()


@pytest.mark.parametrize("index", ["retain-index", "gram-index"])
def test_index_variant_trains_deterministically(index, toy):
    from mingle_bench.training import Budget, fit

    base = index.removesuffix("-index")
    runs = [fit(index, toy, {**TINY[base], "batch_size": 8}, seed=1, device="cpu",
                budget=Budget(max_steps=6, eval_every=3, patience=2)) for _ in range(2)]
    assert runs[0].steps_run > 0 and runs[0].hparams["history"] is False
    assert np.array_equal(runs[0].test_probs, runs[1].test_probs)



def test_visits_line_names_the_models_that_read_the_history():
    from mingle_bench.report.tables import visits_line

    assert visits_line(["mingle", "retain", "retain-index", "gram", "gbm", "not-registered"]) == (
        "visits: RETAIN, GRAM, Gradient boosting (LightGBM, code counts + TF-IDF notes) read the patient's visits "
        "up to the index visit; every other model sees the index visit only (the hypergraph models: its hyperedge)")
    assert visits_line(["mingle", "retain-index"]).startswith("visits: every other model sees the index visit only")


def test_run_table_says_which_models_read_the_history(tmp_path, fakes):
    """A run (fake pipeline) with the full and the index-only RETAIN: the table header names RETAIN,
    not the variant, among the models that read the earlier visits, in markdown and LaTeX."""
    from mingle_bench.report.tables import render_run
    from mingle_bench.runner import RunConfig, run_benchmark

    s = run_benchmark(RunConfig(task="mortality", data="synthetic:small", models=("mingle", "retain", "retain-index"),
                                seeds=[0], out=str(tmp_path), max_steps=2, eval_every=1, patience=2, progress=False,
                                reference=None, n_boot=0))
    md = render_run(s.folder, "md")
    assert "\n- visits: RETAIN read the patient's visits up to the index visit; every other model" in md
    assert "| RETAIN (index visit only)" in md
    assert "Visits: RETAIN read the patient's visits up to the index visit" in render_run(s.folder, "latex")



def test_paper_rows_show_the_variants_but_b_stays_the_papers():
    from mingle_bench.report.paper import PAPER_MODELS, paper_baselines
    from mingle_bench.runner import DEFAULT_MODELS

    assert {"retain-index", "gram-index"} <= set(PAPER_MODELS) & set(DEFAULT_MODELS)
    assert paper_baselines() == ("retain", "gram", "hypergat", "hypehr")
