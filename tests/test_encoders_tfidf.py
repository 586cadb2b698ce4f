"""``--encoder tfidf`` (fitted on the train split only, deterministic, cached without pickle, its fit in
its identity), the HF pooling/chunking options, and the spec parsing of the new options."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mingle_bench.cli import main
from mingle_bench.encoders import embed_visit_notes, load_encoder
from mingle_bench.encoders.registry import parse_spec
from mingle_bench.encoders.tfidf import TfidfEncoder

TEXTS = ["Code: DNR/DNI confirmed with family.", "Lactate 4.2 on pressors, intubated.",
         "Full code. Ambulates independently.", "High fall risk, frail and deconditioned.",
         "Last HbA1c 9.1%. Current smoker.", "Code: DNR/DNI. Lactate 2.1.", "Never smoker, full code."]


def fitted(tmp_path: Path, texts=TEXTS, **kw) -> TfidfEncoder:
    return TfidfEncoder(min_df=1, dim=4, cache_dir=tmp_path, **kw).fit(texts)


def test_fit_is_deterministic_order_free_and_bit_identical(tmp_path):
    a = fitted(tmp_path / "a")
    b = fitted(tmp_path / "b", texts=list(reversed(TEXTS)))  # another cache, another order: a fresh fit
    assert a.identity == b.identity and a.fit_key == b.fit_key
    x, y = a.encode(TEXTS), b.encode(TEXTS)
    assert x.dtype == torch.float32 and x.shape == (len(TEXTS), 4)
    assert torch.equal(x, y)
    assert torch.allclose(x.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-5)
    assert "4.2" in a.terms and "dnr" in a.terms  # numbers and short decisive words are terms
    assert torch.equal(a.encode(["zzz unknown"]), torch.zeros(1, 4))  # no known term: the zero vector


def test_cache_round_trip_without_pickle(tmp_path, monkeypatch):
    a = fitted(tmp_path)
    files = sorted(p.name for p in (tmp_path / "tfidf").iterdir())
    assert files == [f"{a.fit_key}.safetensors"]
    raw = (tmp_path / "tfidf" / files[0]).read_bytes()
    assert b"\x80\x04\x95" not in raw[:64] and raw[8:9] == b"{"  # a safetensors JSON header, no pickle
    monkeypatch.setattr(TfidfEncoder, "_compute", lambda self, texts: pytest.fail("refitted instead of loading"))
    b = fitted(tmp_path)
    assert b.terms == a.terms and b.describe() == a.describe()
    assert torch.equal(a.encode(TEXTS), b.encode(TEXTS))


def test_corrupt_cache_is_refitted(tmp_path):
    a = fitted(tmp_path)
    path = tmp_path / "tfidf" / f"{a.fit_key}.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # a flipped byte in the components
    path.write_bytes(bytes(data))
    b = fitted(tmp_path)
    assert torch.equal(a.encode(TEXTS), b.encode(TEXTS))
    assert (tmp_path / "tfidf" / f"{a.fit_key}.safetensors.corrupt").exists()


def test_identity_and_describe_change_with_the_fit(tmp_path):
    unfitted = TfidfEncoder(min_df=1, dim=4, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="not fitted"):
        unfitted.encode(["x"])
    a, b = fitted(tmp_path), fitted(tmp_path, texts=TEXTS[:-1])
    c = TfidfEncoder(min_df=1, dim=3, cache_dir=tmp_path).fit(TEXTS)  # same texts, other settings
    assert len({a.identity, b.identity, c.identity}) == 3
    assert a.describe() != b.describe() and a.params["fit"] == a.fit_key[:16]
    assert a.describe()["train_texts"] == len(TEXTS) and a.describe()["terms"] == len(a.terms)


def test_tokenize_and_chunks_give_the_same_terms(tmp_path):
    enc = fitted(tmp_path)
    text = "Code: DNR/DNI. Lactate 4.2 on pressors."
    toks = enc.tokenize([text])[0]
    assert toks[:4] == ["code", "dnr", "dni", "lactate"] and "4.2" in toks
    assert torch.equal(enc.encode_tokens([toks]), enc.encode([text]))
    emb, has, _ = embed_visit_notes(enc, [[1], []], lambda ids: {1: text}, progress=False)
    assert has.tolist() == [True, False] and torch.allclose(emb[0], enc.encode([text])[0], atol=1e-6)


def test_small_vocabulary_pads_the_svd_with_zeros(tmp_path):
    enc = TfidfEncoder(min_df=1, dim=16, cache_dir=tmp_path).fit(["alpha beta", "beta gamma", "gamma delta"])
    assert enc.describe()["svd_rank"] == 2 and enc.encode(["alpha"]).shape == (1, 16)
    empty = TfidfEncoder(min_df=5, dim=4, cache_dir=tmp_path).fit(["one", "two"])  # no term seen 5 times
    assert empty.terms == [] and torch.equal(empty.encode(["one"]), torch.zeros(1, 4))


def test_features_fit_tfidf_on_train_notes_only(tmp_path, monkeypatch):
    """A token that only validation/test notes hold never enters the vocabulary; train tokens do."""
    from factories import make_cohort
    from mingle_bench.features import build_task_data

    cohort = make_cohort(tmp_path / "c", n_patients=40, seed=0)
    hadm_of_note = dict(zip(cohort.notes["note_id"].astype(int), cohort.notes["hadm_id"]))
    read, iterate = cohort.read_note_texts, cohort.iter_note_texts

    def tagged(texts: dict) -> dict:  # every note carries its admission's own token
        return {n: f"{t} tok{int(hadm_of_note[n])}" for n, t in texts.items()}

    monkeypatch.setattr(cohort, "read_note_texts", lambda ids: tagged(read(ids)))
    monkeypatch.setattr(cohort, "iter_note_texts", lambda ids, batch_size=2048: (tagged(b) for b in iterate(ids, batch_size)))
    enc = load_encoder("tfidf?min_df=1&dim=8", cache_dir=str(tmp_path / "cache"))
    data = build_task_data(cohort, "mortality", encoder=enc, cache_dir=tmp_path / "cache", progress=False)
    split_of = dict(zip(data.samples["hadm_id"].astype(int), data.samples["split"]))
    terms = set(enc.terms)
    train = [h for h, s in split_of.items() if s == "train"]
    held_out = [h for h, s in split_of.items() if s in ("val", "test")]
    assert train and held_out
    assert all(f"tok{h}" not in terms for h in held_out)
    assert sum(f"tok{h}" in terms for h in train) > len(train) // 2  # train index visits with notes
    assert data.concept_emb.shape[1] == 8 and data.visit_note_emb.shape[1] == 8
    assert data.report["notes"]["encoder"] == enc.identity  # the fit's key is in the identity
    # another split: another fit, another identity and another input digest
    other = build_task_data(cohort, "mortality", encoder="tfidf?min_df=1&dim=8", split_seed=1,
                            cache_dir=tmp_path / "cache", progress=False)
    assert other.report["notes"]["encoder"] != enc.identity
    assert other.digest["encoder"] != data.digest["encoder"]


# -- spec parsing ------------------------------------------------------------------------------------
def test_spec_parsing_of_the_new_options():
    assert parse_spec("tfidf") == ("tfidf", "", {})
    assert parse_spec("tfidf?dim=32&min_df=3&ngram=1") == ("tfidf", "", {"dim": 32, "min_df": 3, "ngram": 1})
    assert parse_spec("default?pooling=max") == ("default", "", {"pooling": "max"})
    assert parse_spec("minilm?chunking=sentence&pooling=cls") == ("default", "", {"chunking": "sentence", "pooling": "cls"})
    assert parse_spec("hf:/m/x?pooling=max&chunking=sentence")[2] == {"pooling": "max", "chunking": "sentence"}
    assert parse_spec("default?batching=exact") == ("default", "", {"batching": "exact"})


@pytest.mark.parametrize("spec,culprit", [
    ("tfidf?ngram=3", "ngram=3"), ("tfidf?dim=0", "dim=0"), ("tfidf?dim=x", "dim='x'"),
    ("tfidf?pooling=max", "'pooling'"), ("default?pooling=median", "pooling='median'"),
    ("default?chunking=words", "chunking='words'"), ("hf:/m/x?pooling=avg", "pooling='avg'"),
    ("default?batching=sorted", "batching='sorted'"),
    ("tfidf?", "key=value"),
])
def test_bad_spec_values_are_one_line(spec, culprit):
    with pytest.raises(ValueError, match="encoder") as exc:
        parse_spec(spec)
    assert culprit in str(exc.value) and "\n" not in str(exc.value)


def test_tfidf_refuses_bf16_and_cli_says_so_in_one_line(capsys):
    with pytest.raises(ValueError, match="bf16"):
        load_encoder("tfidf", precision="bf16")
    assert isinstance(load_encoder("tfidf", precision="auto"), TfidfEncoder)
    code = main(["encoder", "probe", "--task", "mortality", "--encoder", "tfidf?ngram=3"])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if "error:" in x]
    assert code != 0 and "Traceback" not in err and len(lines) == 1 and "ngram=3" in lines[0]


# -- HF pooling=max and chunking=sentence (tiny random BERT) ----------------------------------------------
@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    from test_encoders_hf import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert")


def test_max_pooling_is_the_masked_max(tiny_bert):
    mean, mx = load_encoder(f"hf:{tiny_bert}"), load_encoder(f"hf:{tiny_bert}?pooling=max")
    assert mx.params["pooling"] == "max" and mx.params != mean.params  # so its own cache namespace
    texts = ["heart attack", "chest pain patient"]
    enc = mx.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        h = mx.model(**enc).last_hidden_state
    h = h.masked_fill(enc["attention_mask"].unsqueeze(-1) == 0, float("-inf")).max(1).values
    assert torch.allclose(mx.encode(texts), torch.nn.functional.normalize(h, dim=-1), atol=1e-5)
    assert not torch.allclose(mx.encode(texts), mean.encode(texts))


def test_sentence_chunking_pools_one_vector_per_sentence(tiny_bert):
    from test_encoders_hf import WORDS

    plain = load_encoder(f"hf:{tiny_bert}")
    sent = load_encoder(f"hf:{tiny_bert}?chunking=sentence")
    assert "chunking" not in plain.params and sent.params["chunking"] == "sentence"
    s1, s2 = " ".join(WORDS[:3]), " ".join(WORDS[3:8])
    note = f"{s1}. {s2}!"
    emb, _, rep = embed_visit_notes(sent, [[1]], lambda ids: {1: note}, overlap=4, progress=False)
    assert rep["chunks_embedded"] == 2
    expect = torch.nn.functional.normalize(sent.encode([f"{s1}.", f"{s2}!"]).mean(0), dim=0)
    assert torch.allclose(emb[0], expect, atol=1e-5)
    whole, _, rep1 = embed_visit_notes(plain, [[1]], lambda ids: {1: note}, overlap=4, progress=False)
    assert rep1["chunks_embedded"] == 1 and not torch.allclose(whole[0], emb[0])
    assert np.isclose(float(emb[0].norm()), 1.0, atol=1e-5)
