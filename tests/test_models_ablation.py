"""MINGLE's ablation switches remove exactly their input; fused and reference ops agree."""
from __future__ import annotations

import copy

import pytest
import torch

from mingle_bench.profiling.random_task_data import make_random_task_data
from mingle_bench.zoo import get_model

SMALL = get_model("mingle").tiny_hparams
INPUTS = ("structural", "concept_emb", "visit_note_emb")
READS = {
    "mingle": {"structural", "concept_emb", "visit_note_emb"},
    "mingle-gated": {"structural", "concept_emb", "visit_note_emb"},
    "mingle-sum": {"structural", "concept_emb", "visit_note_emb"},
    "mingle-no-concept": {"structural", "visit_note_emb"},
    "mingle-no-notes": {"structural", "concept_emb"},
    "mingle-no-structural": {"concept_emb", "visit_note_emb"},
    "hypehr": {"structural"},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy():
    return make_random_task_data(n_samples=40, n_labels=3, n_nodes=24, seed=7)


def logits(name: str, data, **extra) -> torch.Tensor:
    torch.manual_seed(0)
    model = get_model(name)(data, **{**SMALL, **extra}).eval()
    with torch.no_grad():
        return model({"idx": torch.arange(data.n_samples)})["logits"]


def with_input(data, field: str, how: str):
    """A copy of ``data`` whose ``field`` is poisoned with NaN or perturbed by noise."""
    out = copy.copy(data)
    t = getattr(data, field)
    gen = torch.Generator().manual_seed(11)
    if how == "nan":
        new = torch.full_like(t, float("nan"))
    else:
        new = t + torch.randn(t.shape, generator=gen)
        if field == "visit_note_emb":       # keep "no notes" rows zero: only real notes change
            new[~data.visit_has_notes] = 0.0
    setattr(out, field, new)
    return out


@pytest.mark.parametrize("name", sorted(READS))
@pytest.mark.parametrize("field", INPUTS)
def test_ablation_reads_exactly_its_inputs(name, field, toy):
    base = logits(name, toy)
    if field in READS[name]:
        changed = logits(name, with_input(toy, field, "noise"))
        assert not torch.allclose(base, changed), f"{name} should read {field}"
    else:
        # never read: even NaN in that input leaves every output bit-identical
        poisoned = logits(name, with_input(toy, field, "nan"))
        assert torch.equal(base, poisoned), f"{name} must not read {field}"


def test_no_notes_keeps_concept_semantics_on_self_loops(toy):
    """mingle-no-notes still fuses concept semantics at level 2 (self-loop rows of H)."""
    torch.manual_seed(0)
    model = get_model("mingle-no-notes")(toy, **SMALL)
    assert model.level2 and not model.use_notes and model.use_concept
    assert bool(toy.graph.is_self_loop[model.sem_edges].all())
    torch.manual_seed(0)
    full = get_model("mingle")(toy, **SMALL)
    n_real = int(toy.visit_has_notes.sum())
    assert model.sem_edges.numel() + n_real == full.sem_edges.numel()


def test_hypehr_is_the_plain_backbone(toy):
    torch.manual_seed(0)
    model = get_model("hypehr")(toy, **SMALL)
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    assert not names & {"mlp1", "fusions", "concept_proj"}
    assert model.input_report["notes"].startswith("off") and model.input_report["concept"].startswith("off")


def test_visits_without_notes_use_the_mask(toy):
    """A visit without notes: its note row is never read (NaN there is harmless)."""
    data = copy.copy(toy)
    note = toy.visit_note_emb.clone()
    note[~toy.visit_has_notes] = float("nan")
    data.visit_note_emb = note
    assert torch.equal(logits("mingle", toy), logits("mingle", data))


def test_no_notes_anywhere_switches_level2_notes_off():
    data = make_random_task_data(n_samples=30, n_labels=2, with_notes=True, note_fraction=0.0, seed=3)
    torch.manual_seed(0)
    model = get_model("mingle")(data, **SMALL)
    assert model.input_report["notes"] == "off (no visit has notes)"
    out = logits("mingle", data)
    assert torch.isfinite(out).all()


def test_semantic_inputs_none():
    data = make_random_task_data(n_samples=30, n_labels=2, with_concepts=False, with_notes=False, seed=3)
    torch.manual_seed(0)
    model = get_model("mingle")(data, **SMALL)
    assert model.input_report["concept"] == "off (TaskData.concept_emb is None)"
    assert model.input_report["notes"] == "off (TaskData.visit_note_emb is None)"
    # with both semantics missing MINGLE *is* HypEHR: same parameters, same outputs
    assert torch.equal(logits("mingle", data), logits("hypehr", data))
    with pytest.raises(ValueError, match="no node features left"):
        get_model("mingle-no-structural")(data, **SMALL)


@pytest.mark.parametrize("fusion", ["concat", "gated", "sum"])
def test_fusion_operators_differ(fusion, toy):
    out = logits("mingle", toy, fusion=fusion)
    assert torch.isfinite(out).all()
    if fusion != "concat":
        assert not torch.allclose(out, logits("mingle", toy, fusion="concat"))
    with pytest.raises(ValueError, match="fusion must be one of"):
        get_model("mingle")(toy, fusion="product")


def test_self_loops_are_never_targets(toy):
    assert not bool(toy.graph.is_self_loop[toy.sample_edge].any())


@pytest.mark.parametrize("name", ["mingle", "hypergat", "gram"])
def test_fused_and_reference_ops_agree(name, toy):
    from mingle_bench import ops

    if not ops.fused_available():
        pytest.skip("the fused extension mingle_bench._C is not built")
    idx = toy.split_idx["train"]
    batch = {"idx": idx, "labels": toy.labels[idx]}
    small = SMALL if name == "mingle" else {"hidden": 16} if name == "hypergat" else {"emb_dim": 16, "rnn_hidden": 16}
    losses, grads, impls = [], [], []
    for impl in ("fused", "reference"):
        torch.manual_seed(0)
        model = get_model(name)(toy, impl=impl, **small)
        model.train()
        torch.manual_seed(1)           # same dropout masks
        loss = model(batch)["loss"]
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        impls.append(model.impl_used)
    assert impls == ["fused", "reference"]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)
