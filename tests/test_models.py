"""Every registered model: shapes, overfitting, determinism, gradient flow; layer oracles."""
from __future__ import annotations

import math

import pytest
import torch

from mingle_bench.models.registry import FAMILIES
from mingle_bench.profiling.random_task_data import make_random_task_data
from mingle_bench.zoo import display_name, get_model, list_models, model_family

EXPECTED = {"mingle", "mingle-no-concept", "mingle-no-notes", "hypehr", "mingle-no-structural",
            "mingle-gated", "mingle-sum", "retain", "gram", "hypergat", "logreg", "note-mlp", "transformer",
            "prior", "tfidf-lr", "codes-notes-lr", "gbm", "retain-index", "gram-index"}
ALL = list_models()
SKLEARN = [m for m in ALL if getattr(get_model(m), "sklearn", False)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_hparams(name: str) -> dict:
    """The model's own ``tiny_hparams`` (tiny widths keep the suite fast; the defaults are exercised
    in test_default_hparams_build), less those a variant fixes."""
    cls = get_model(name)
    return {k: v for k, v in cls.tiny_hparams.items() if k in cls.default_hparams and k not in cls.variant_overrides}


@pytest.fixture(scope="module")
def toy_binary():
    return make_random_task_data(n_samples=40, n_labels=1, n_nodes=24, seed=1)


@pytest.fixture(scope="module")
def toy_multi():
    return make_random_task_data(n_samples=40, n_labels=25, n_nodes=24, seed=2)


def build(name, data, seed=0, **extra):
    torch.manual_seed(seed)
    model = get_model(name)(data, **{**small_hparams(name), **extra})
    if getattr(model, "sklearn", False):
        model.fit_sklearn(data.split_idx["train"])
    return model


def test_registry_has_every_model():
    assert EXPECTED <= set(ALL)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        get_model("nope")


def test_variants_fix_their_switches():
    assert get_model("hypehr").default_hparams["use_notes"] is False
    assert get_model("mingle-sum").default_hparams["fusion"] == "sum"
    with pytest.raises(ValueError, match="fixes use_notes"):
        get_model("mingle-no-notes").resolve_hparams({"use_notes": True})
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        get_model("mingle").resolve_hparams({"hiden": 3})


@pytest.mark.parametrize("name", ALL)
def test_search_space_is_valid(name):
    import optuna

    cls = get_model(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    space = cls.search_space(trial)
    assert set(space) <= set(cls.default_hparams) | {"lr", "weight_decay", "batch_size"}
    assert not set(space) & set(cls.variant_overrides)
    cls.resolve_hparams(space)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("which", ["binary", "multi"])
def test_output_shapes(name, which, toy_binary, toy_multi):
    data = toy_binary if which == "binary" else toy_multi
    model = build(name, data)
    idx = data.split_idx["val"]
    out = model({"idx": idx, "labels": data.labels[idx]})
    assert out["logits"].shape == (idx.numel(), data.n_labels)
    assert out["loss"].dim() == 0 and math.isfinite(out["loss"].item())
    assert "loss" not in model({"idx": idx})


@pytest.mark.parametrize("name", ALL)
def test_deterministic_under_seed(name, toy_binary):
    idx = toy_binary.split_idx["train"]
    outs = []
    for _ in range(2):
        model = build(name, toy_binary, seed=3)
        model.train()
        torch.manual_seed(5)
        outs.append(model({"idx": idx})["logits"].detach())
    assert torch.equal(outs[0], outs[1])


@pytest.fixture(scope="module")
def toy_repeated_codes():
    """Many samples over few codes: a gather's backward adds into the same rows from both threads."""
    return make_random_task_data(n_samples=300, n_labels=1, n_nodes=400, seed=1)


#: MINGLE's ablations and fusion variants run MINGLE's own ops (mingle runs in the default suite);
#: they keep this check in the slow run
GRADIENT_CASES = [pytest.param(m, marks=pytest.mark.slow) if m.startswith("mingle-") else m
                  for m in ALL if m not in SKLEARN]


@pytest.mark.parametrize("name", GRADIENT_CASES)
def test_gradients_are_bit_identical_on_two_threads(name, toy_repeated_codes):
    """The same batch's gradients, pass after pass, with two intra-op threads: no backward may
    accumulate in a thread-dependent order (``x[idx]``'s CPU backward does; ``index_select``'s
    does not). Committed results are reproduced bit for bit only if this holds."""
    data = toy_repeated_codes
    # GRAM gathers one row per (code, ancestor) pair: wide rows make both threads meet in its backward
    extra = {"emb_dim": 64, "rnn_hidden": 64, "attn_dim": 64} if name == "gram" else {}
    if "dropout" in get_model(name).default_hparams:
        extra["dropout"] = 0.0
    model = build(name, data, **extra)
    model.train()
    idx = data.split_idx["train"][:100]
    batch = {"idx": idx, "labels": data.labels[idx]}
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(20):
            model.zero_grad()
            torch.manual_seed(0)
            model(batch)["loss"].backward()
            grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    finally:
        torch.set_num_threads(before)
    for g in grads[1:]:
        assert all(torch.equal(a, b) for a, b in zip(grads[0], g))


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_parameter(name, toy_multi):
    if name in SKLEARN:  # before building: building one fits it
        pytest.skip("scikit-learn model: no gradient parameters")
    model = build(name, toy_multi)
    model.train()
    idx = toy_multi.split_idx["train"]
    model({"idx": idx, "labels": toy_multi.labels[idx]})["loss"].backward()
    dead = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not dead, f"no gradient reaches {dead}"


@pytest.fixture(scope="module")
def toy_overfit():
    return make_random_task_data(n_samples=30, n_labels=2, n_nodes=24, note_fraction=1.0, seed=4)


@pytest.mark.parametrize("name", ALL)
def test_overfits_tiny_task(name, toy_overfit):
    data = toy_overfit
    idx = data.split_idx["train"]
    batch = {"idx": idx, "labels": data.labels[idx]}
    cls = get_model(name)
    if name == "prior":
        pytest.skip("prior: a constant predictor by design (tests/test_references.py)")
    extra = {k: 0.0 for k in cls.default_hparams if "dropout" in k}  # memorising, not generalising
    if "C" in cls.default_hparams:
        extra["C"] = 1e3
    if name == "gbm":   # a few samples: small leaves, every tree, no validation stopping
        extra.update(min_data_in_leaf=1, n_estimators=200, early_stopping_rounds=0, learning_rate=0.3)
    if name in SKLEARN:
        start = math.log(2.0)   # the untrained (all-zero) logistic model
        model = build(name, data, **extra)
    else:
        model = build(name, data, **extra)
        model.eval()
        with torch.no_grad():
            start = float(model(batch)["loss"])
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for step in range(1, 151):  # up to 150 steps; stops once the loss is low enough
            model.train()
            loss = model(batch)["loss"]
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)   # as the trainer does
            opt.step()
            if step % 10 == 0:
                model.eval()
                with torch.no_grad():
                    if float(model(batch)["loss"]) < 0.3 * start:
                        break
    model.eval()
    with torch.no_grad():
        end = float(model(batch)["loss"])
    assert end < 0.3 * start, f"{name}: train loss {start:.3f} -> {end:.3f}"


@pytest.mark.parametrize("name", ALL)
def test_default_hparams_build(name, toy_binary):
    """Every registered model builds from its defaults alone and behaves: registry facts present,
    logits [B, n_labels], a finite scalar loss, and one training step (an Adam step with the
    model's default lr; logreg's solver) changes its parameters and lowers the loss on a tiny batch."""
    cls = get_model(name)
    assert model_family(name) in FAMILIES and display_name(name) and cls.name == name
    assert cls.family == model_family(name) and cls.display == display_name(name)
    assert set(cls.default_hparams) >= {"lr", "weight_decay", "batch_size"}
    data = toy_binary
    sklearn = getattr(cls, "sklearn", False)
    # a solver fit lowers the loss of the whole training split (a constant predictor's fit, too);
    # a gradient step that of its batch
    idx = data.split_idx["train"] if sklearn else data.split_idx["train"][:12]
    batch = {"idx": idx, "labels": data.labels[idx]}
    torch.manual_seed(0)
    model = cls(data)
    assert model.hparams == cls.default_hparams
    assert model.n_params() > 0
    if getattr(model, "sklearn", False):
        before = [b.clone() for b in model.buffers()]
        start = math.log(2.0)                   # the unfitted (all-zero) logistic model
        model.fit_sklearn(data.split_idx["train"])
    else:
        model.eval()                            # dropout off: the step follows the loss measured
        before = [p.detach().clone() for p in model.parameters()]
        out = model(batch)
        start = float(out["loss"].detach())
        opt = torch.optim.Adam(model.parameters(), lr=float(model.hparams["lr"]))
        out["loss"].backward()
        opt.step()
    with torch.no_grad():
        out = model(batch)
    assert out["logits"].shape == (idx.numel(), data.n_labels)
    assert out["loss"].dim() == 0 and math.isfinite(float(out["loss"]))
    after = list(model.buffers()) if getattr(model, "sklearn", False) else list(model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), f"{name}: the step changed nothing"
    assert float(out["loss"]) < start, f"{name}: loss {start:.5f} -> {float(out['loss']):.5f}"


def test_pma_matches_dense_oracle():
    """PMA pooling equals a per-segment loop with softmax over LeakyReLU scores."""
    from mingle_bench.incidence import Incidence
    from mingle_bench.models.layers import PMA

    torch.manual_seed(0)
    node = torch.tensor([0, 1, 2, 1, 3, 0, 2, 3])
    edge = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    inc = Incidence.from_pairs(node, edge, 5, 4)          # node 4 and edge 3 are empty
    pma = PMA(6, 8, heads=2, mlp_layers=1)
    x = torch.randn(5, 6)
    out = pma(x, inc.v2e, impl="reference")
    keys = pma.w_k(x).view(5, 2, 4)
    vals = pma.w_v(x).view(5, 2, 4)
    score = torch.nn.functional.leaky_relu((keys * pma.seed).sum(-1), 0.2)
    for e in range(4):
        members = node[edge == e]
        pooled = torch.zeros(2, 4)
        if members.numel():
            a = torch.softmax(score[members], dim=0)       # [m, H]
            pooled = (a.unsqueeze(-1) * vals[members]).sum(0)
        y = pma.ln0(pooled.reshape(-1) + pma.seed.reshape(-1))
        want = pma.ln1(y + torch.relu(pma.rff(y)))
        torch.testing.assert_close(out[e], want, rtol=1e-5, atol=1e-5)


def test_pairnorm_centres_and_scales():
    from mingle_bench.models.layers import PairNorm

    x = torch.randn(50, 7) * 3 + 5
    y = PairNorm()(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(7), atol=1e-5, rtol=0)
    assert abs(float(y.pow(2).sum(1).mean()) - 1.0) < 1e-3


def test_hypergat_layer_matches_dense_oracle():
    from mingle_bench.incidence import Incidence
    from mingle_bench.baselines.hypergat import HyperGATLayer

    torch.manual_seed(1)
    node = torch.tensor([0, 1, 2, 1, 3, 0, 3])
    edge = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    inc = Incidence.from_pairs(node, edge, 4, 3)
    layer = HyperGATLayer(5, 6, activation="none").eval()
    h = torch.randn(4, 5)
    h_new, f = layer(h, inc.v2e, inc.e2v, impl="reference")
    n2e = layer.node_to_edge
    h2 = n2e.w2(h)
    lrelu = lambda t: torch.nn.functional.leaky_relu(t, 0.2)  # noqa: E731
    ctx = (n2e.context @ n2e.a1_ctx).squeeze()
    f_want = torch.stack([
        (torch.softmax(lrelu(ctx + h2[node[edge == e]] @ n2e.a1_src), 0).unsqueeze(1) * n2e.w1(h)[node[edge == e]]).sum(0)
        for e in range(3)])
    torch.testing.assert_close(f, f_want, rtol=1e-5, atol=1e-6)
    f3 = layer.w3(f)
    h_want = torch.stack([
        (torch.softmax(lrelu(h2[v] @ layer.a2_dst + f3[edge[node == v]] @ layer.a2_src), 0).unsqueeze(1)
         * f3[edge[node == v]]).sum(0)
        for v in range(4)])
    torch.testing.assert_close(h_new, h_want, rtol=1e-5, atol=1e-6)


def test_retain_alpha_sums_to_one_over_visits(toy_binary):
    model = build("retain", toy_binary).eval()
    idx = torch.arange(toy_binary.n_samples)
    with torch.no_grad():
        att = model.attention(idx)
    lengths = toy_binary.seq_visit_indptr[idx + 1] - toy_binary.seq_visit_indptr[idx]
    assert int(lengths.max()) > 1, "toy data should have multi-visit samples"
    torch.testing.assert_close(att["alpha"].sum(1), torch.ones(idx.numel()))
    assert bool((att["alpha"][~att["mask"]] == 0).all())
    assert bool((att["beta"].abs() <= 1).all())


def test_retain_reads_visits_in_reverse_time(toy_binary):
    """Swapping the order of a sample's earlier visits changes its prediction (order matters)."""
    import copy

    data = copy.copy(toy_binary)
    lengths = data.seq_visit_indptr[1:] - data.seq_visit_indptr[:-1]
    s = int((lengths >= 3).nonzero()[0, 0])
    a = int(data.seq_visit_indptr[s])
    seq = data.seq_visits.clone()
    seq[a], seq[a + 1] = seq[a + 1].clone(), seq[a].clone()
    data.seq_visits = seq
    m1, m2 = build("retain", toy_binary).eval(), build("retain", data).eval()
    with torch.no_grad():
        y1, y2 = m1({"idx": torch.tensor([s])})["logits"], m2({"idx": torch.tensor([s])})["logits"]
    assert not torch.allclose(y1, y2)


def test_gram_ancestor_attention_sums_to_one(toy_binary):
    model = build("gram", toy_binary).eval()
    with torch.no_grad():
        alpha, indptr = model.ancestor_attention()
        g = model.code_embeddings()
    seg = torch.repeat_interleave(torch.arange(indptr.numel() - 1), indptr[1:] - indptr[:-1])
    sums = torch.zeros(indptr.numel() - 1).index_add_(0, seg, alpha)
    torch.testing.assert_close(sums, torch.ones_like(sums))
    assert bool((alpha > 0).all())
    # the code embeddings are exactly those weights applied to self + ancestor embeddings
    want = torch.zeros_like(g).index_add_(0, seg, alpha.unsqueeze(1) * model.emb[model.pair_member])
    torch.testing.assert_close(g, want, rtol=1e-5, atol=1e-6)


def test_gram_icd9_ontology():
    from mingle_bench.baselines.ontology import build_ontology

    onto = build_ontology(["dx9:4019", "rx:heparin", "px9:3893", "dx10:I509"])
    assert onto.ancestors[0] == ["icd9:401", "icd9:401-405", "icd9:390-459", "root:diagnosis", "root"]
    assert onto.ancestors[1] == ["root:medication", "root"]          # one-level for non-diagnosis
    assert onto.ancestors[2] == ["root:procedure", "root"]
    assert onto.ancestors[3] == ["icd10:I50", "icd10:I", "root:diagnosis", "root"]
    assert onto.report["dx_found"] == 1 and onto.report["one_level"] == 2


@pytest.mark.shared_data
def test_gram_ccs_ontology(ccs_dir, toy_binary):
    from mingle_bench.baselines.ontology import build_ontology

    path = ccs_dir / "ccs_multi_dx_tool_2015.csv"
    onto = build_ontology(["dx9:4019", "dx9:42731", "rx:heparin"], path)
    assert onto.ancestors[0] == ["ccs:7.1.1", "ccs:7.1", "ccs:7", "root:diagnosis", "root"]
    assert onto.ancestors[1][-3:] == ["ccs:7", "root:diagnosis", "root"]
    model = build("gram", toy_binary, ccs_path=str(path))
    assert model.ontology_report["source"] == "ccs"


def test_gram_bad_ccs_path(toy_binary, tmp_path):
    with pytest.raises(FileNotFoundError, match="CCS multi-level tool not found"):
        build("gram", toy_binary, ccs_path=str(tmp_path / "missing.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a CCS multi-level tool"):
        build("gram", toy_binary, ccs_path=str(bad))


def test_note_mlp_needs_notes():
    data = make_random_task_data(n_samples=20, with_notes=False)
    with pytest.raises(ValueError, match="visit_note_emb"):
        get_model("note-mlp")(data)
    assert get_model("note-mlp").missing_inputs(data) == ["visit_note_emb"]


@pytest.fixture(scope="module")
def toy_semantics():
    """The same task three ways: with concept and note embeddings, with both replaced by other
    values (real note rows only), and with none at all (e.g. --encoder none)."""
    import copy

    data = make_random_task_data(n_samples=30, n_labels=2, n_nodes=24, note_fraction=0.8, seed=5)
    gen = torch.Generator().manual_seed(9)
    other = copy.copy(data)
    other.concept_emb = torch.randn(data.concept_emb.shape, generator=gen)
    note = torch.randn(data.visit_note_emb.shape, generator=gen)
    note[~data.visit_has_notes] = 0.0
    other.visit_note_emb = note
    none = copy.copy(data)
    none.concept_emb = none.visit_note_emb = None
    return {"with": data, "other": other, "none": none}


def _logits(name, data, **extra):
    model = build(name, data, **extra).eval()
    with torch.no_grad():
        return model({"idx": torch.arange(data.n_samples)})["logits"]


@pytest.mark.parametrize("name", ["hypehr", "hypergat", "retain", "gram", "logreg"])
def test_models_without_semantics_ignore_them(name, toy_semantics):
    """Models that read no semantic input give bit-identical outputs whatever the concept and
    note embeddings hold, and when there are none."""
    with_, other, none = (_logits(name, toy_semantics[k]) for k in ("with", "other", "none"))
    assert torch.isfinite(none).all()
    assert torch.equal(with_, other) and torch.equal(with_, none)


@pytest.mark.parametrize("name, off", [("mingle", {}), ("transformer", {"use_concept": False})])
def test_models_run_without_semantics(name, off, toy_semantics):
    """Models that read semantics: without them they run as their semantics-free form
    (MINGLE exactly as HypEHR, the transformer as with use_concept=False), and with them the
    outputs follow the embeddings' values."""
    none = _logits(name, toy_semantics["none"])
    assert torch.isfinite(none).all()
    plain = ("hypehr", {}) if name == "mingle" else (name, off)
    assert torch.equal(none, _logits(plain[0], toy_semantics["with"], **plain[1]))
    with_, other = _logits(name, toy_semantics["with"]), _logits(name, toy_semantics["other"])
    assert not torch.allclose(with_, other) and not torch.allclose(with_, none)


def test_incidence_is_validated_once_for_the_op(toy_binary):
    """Models validate an unvalidated incidence once, so the op skips per-layer index checks."""
    model = build("mingle", toy_binary)
    inc = model.graph(torch.device("cpu"))
    assert inc.v2e.validated and inc.e2v.validated
    torch.testing.assert_close(inc.v2e.indices, toy_binary.graph.incidence.v2e.indices)


def test_hypergat_is_not_a_constant_predictor_at_initialisation():
    """The readout normalisation keeps visits apart: without it the logits of different visits
    differ by ~1e-5 at initialisation on the EHR hypergraph (the HyperGAT collapse)."""
    from mingle_bench.profiling.random_task_data import make_random_task_data

    data = make_random_task_data(n_samples=80, n_labels=1, n_nodes=30, seed=2)
    idx = data.split_idx["test"]
    spread = {}
    for norm in ("batch", "none"):
        torch.manual_seed(0)
        cls = get_model("hypergat")
        model = cls(data, **cls.resolve_hparams({"readout_norm": norm})).eval()
        with torch.no_grad():
            spread[norm] = float(model({"idx": idx})["logits"].std())
    assert spread["batch"] > 1e-2
    assert spread["batch"] > 10 * spread["none"]
    with pytest.raises(ValueError, match="readout_norm"):
        get_model("hypergat")(data, **get_model("hypergat").resolve_hparams({"readout_norm": "layer"}))
