"""Input views (mingle_bench.features.VIEWS): a run builds only the views its models declare
(``requires`` and ``uses``), a plugin view reaches TaskData, and the input digest is the same
whichever views are built."""
from __future__ import annotations

import pytest
import torch

from factories import RecordingEncoder, make_cohort
from mingle_bench import encoders
from mingle_bench import features as F
from mingle_bench import pipeline as P

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL_DW = dict(deepwalk_dim=4, deepwalk_walks_per_node=1, deepwalk_walk_length=5, progress=False)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("views"), n_patients=40)


def _forbid(monkeypatch, *what: str) -> None:
    def boom(*a, **k):
        raise AssertionError("an expensive view was built")

    targets = {"load": (encoders, "load_encoder"), "embed_texts": (encoders, "embed_texts"),
               "embed_notes": (encoders, "embed_visit_notes"), "deepwalk": (F, "deepwalk_embeddings")}
    for w in what:
        monkeypatch.setattr(*targets[w], boom)


def test_the_views_a_run_builds_follow_its_models():
    always = ("set", "sequence", "hypergraph")
    assert P.needed_views(["logreg", "prior"]) == always
    assert P.needed_views(["retain", "gram"]) == always
    assert P.needed_views(["tfidf-lr"]) == (*always, "note_texts")
    assert P.needed_views(["note-mlp"]) == (*always, "note_emb")
    assert P.needed_views(["hypergat"]) == (*always, "structural")
    assert set(P.needed_views(["mingle", "logreg"])) == {*always, "structural", "concept_emb", "note_emb"}
    assert P.needs_note_texts(["gbm"]) and not P.needs_note_texts(["mingle"])


def test_logreg_alone_builds_no_embeddings_and_keeps_the_digest(cohort, monkeypatch):
    """The first full build loads the (stand-in) default encoder and remembers its settings; a
    logreg build then neither loads it nor embeds nor runs DeepWalk, with the same input digest."""
    loads = []
    monkeypatch.setattr(encoders, "load_encoder", lambda spec, **k: loads.append(spec) or RecordingEncoder())
    full = F.build_task_data(cohort, "mortality", encoder="default", **SMALL_DW)
    assert loads == ["default"] and full.concept_emb is not None and full.structural is not None
    _forbid(monkeypatch, "load", "embed_texts", "embed_notes", "deepwalk")
    lean = F.build_task_data(cohort, "mortality", encoder="default", views=P.needed_views(["logreg"]), **SMALL_DW)
    assert lean.digest == full.digest
    assert lean.concept_emb is None and lean.visit_note_emb is None and lean.structural is None
    assert lean.sample_note_texts is None and lean.report["views"] == ["set", "sequence", "hypergraph"]
    assert torch.equal(lean.sample_codes, full.sample_codes) and lean.n_nodes == full.n_nodes
    with pytest.raises(ValueError, match="needs TaskData.structural"):
        from mingle_bench.zoo import get_model
        get_model("hypergat")(lean)


def test_a_cold_settings_memo_loads_the_encoder_once_but_embeds_nothing(cohort, monkeypatch, tmp_path):
    monkeypatch.setattr(encoders, "load_encoder", lambda spec, **k: RecordingEncoder())
    full = F.build_task_data(cohort, "mortality", encoder="default", cache_dir=tmp_path / "a", **SMALL_DW)
    _forbid(monkeypatch, "embed_texts", "embed_notes", "deepwalk")
    lean = F.build_task_data(cohort, "mortality", encoder="default", cache_dir=tmp_path / "b", views=(), **SMALL_DW)
    assert lean.digest == full.digest


def test_the_digest_is_the_same_for_every_choice_of_views(cohort):
    digests = {F.build_task_data(cohort, "mortality", encoder=RecordingEncoder(), views=v, **SMALL_DW).digest.__repr__()
               for v in ((), ("structural",), ("concept_emb",), ("note_emb", "note_texts"), None)}
    assert len(digests) == 1
    assert len({F.build_task_data(cohort, "mortality", encoder=None, views=v, **SMALL_DW).digest.__repr__()
                for v in ((), None)}) == 1


def test_a_plugin_view_reaches_task_data(cohort, monkeypatch):
    monkeypatch.setattr(F, "VIEWS", dict(F.VIEWS))  # registered for this test only

    @F.register_view("node_degree", ("node_degree",))
    def node_degree(ctx):
        """Visits per node: float32 [n_nodes]."""
        deg = torch.bincount(ctx.vt.visit_codes, minlength=len(ctx.vt.vocab)).to(torch.float32)
        return {"node_degree": deg}

    assert F.views_for(["node_degree"])[-1] == "node_degree" and F.view_of_field("node_degree") == "node_degree"
    with pytest.raises(ValueError, match="already"):
        F.register_view("other", ("concept_emb",))(node_degree)
    base = F.build_task_data(cohort, "mortality", encoder=None, views=(), **SMALL_DW)
    data = F.build_task_data(cohort, "mortality", encoder=None, views=("node_degree",), **SMALL_DW)
    assert data.node_degree.shape == (data.n_nodes,) and float(data.node_degree.sum()) == data.visit_codes.numel()
    assert data.digest == base.digest and getattr(base, "node_degree", None) is None
    with pytest.raises(ValueError, match="unknown input view"):
        F.build_task_data(cohort, "mortality", encoder=None, views=("nope",), **SMALL_DW)
