"""Local transformers encoders: the bundled MiniLM (real weights) and ``hf:PATH`` folders (a tiny random BERT)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from mingle_bench.encoders import EmbeddingCache, embed_texts, embed_visit_notes, load_encoder
from mingle_bench.encoders.hf import HFEncoder, default_model_path

PINNED_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
WORDS = ("heart attack myocardial infarction fracture of femur chest pain patient the a stable "
         "admitted with fever cough sepsis renal failure").split()


# -- the real default model (loaded once per session) -------------------------------------------------
@pytest.fixture(scope="session")
def minilm():
    return load_encoder("default", device="cpu")


def test_default_weights_sha256_pinned():
    path = default_model_path() / "model.safetensors"
    h = hashlib.sha256(path.read_bytes()).hexdigest()
    assert h == PINNED_WEIGHTS_SHA256, f"{path} is not the all-MiniLM-L6-v2 release this toolkit pins"


def test_default_encoder_facts(minilm):
    assert minilm.dim == 384 and minilm.max_length == 256 and minilm.pooling == "mean"
    assert minilm.max_input_tokens == 254
    assert minilm.identity.startswith("hf:sentence-transformers/all-MiniLM-L6-v2@sha256:53aa51172d142c89")
    assert minilm.params == {"pooling": "mean", "max_length": 256, "precision": "float32"}


def test_related_medical_phrases_are_closer(minilm):
    triples = [("myocardial infarction", "heart attack", "fracture of femur"),
               ("Acute kidney failure, unspecified", "acute renal failure", "Closed fracture of neck of femur"),
               ("dyspnea", "shortness of breath", "skin rash")]
    flat = [t for tr in triples for t in tr]
    e = minilm.encode(flat)
    assert e.shape == (9, 384) and e.dtype == torch.float32
    assert torch.allclose(e.norm(dim=1), torch.ones(9), atol=1e-5)
    for k in range(3):
        a, rel, unrel = e[3 * k], e[3 * k + 1], e[3 * k + 2]
        assert float(a @ rel) > float(a @ unrel) + 0.2, triples[k]


def test_matches_plain_transformers_mean_pooling(minilm):
    """Our token-level path equals the textbook tokenizer(..., max_length=256) + masked mean pooling."""
    texts = ["Congestive heart failure, unspecified", "sepsis", " ".join(["chest pain with fever"] * 120)]
    tok, model = minilm.tokenizer, minilm.model
    enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        h = model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    ours = embed_texts(minilm, texts, progress=False)
    assert torch.allclose(ours, ref, atol=2e-5)


def test_batch_composition_does_not_change_embeddings(minilm):
    texts = ["heart failure", "a much longer description of a chronic kidney disease stage", "cough"]
    together = minilm.encode(texts)
    alone = torch.cat([minilm.encode([t]) for t in texts])
    assert torch.allclose(together, alone, atol=1e-5)


def test_thread_count_does_not_change_the_vectors(minilm):
    """What lets text encoding use every CPU while training keeps the reproducible mode's 2 threads
    (mathmode.encoding_threads): the same batches give bit-identical vectors with 1 and 2 threads."""
    texts = ["heart failure", "a much longer description of a chronic kidney disease stage " * 12, "cough",
             "Patient is DNR/DNI, lactate 4.1 mmol/L, HbA1c 9.2%. " * 20]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = minilm.encode(texts)
        torch.set_num_threads(2)
        two = minilm.encode(texts)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_exact_batching_makes_a_vector_independent_of_its_batch_and_the_cache(tmp_path):
    """``batching=exact``: only equal-length texts share a forward pass, so a text's vector is the
    one it gets alone, whatever else is embedded and whichever texts the cache already held. The
    default padded batching is what the committed results used (its own params, its own cache)."""
    enc = load_encoder("default?batching=exact")
    assert enc.params["batching"] == "exact" and "batching" not in load_encoder("default").params
    texts = ["heart failure", "a much longer description of a chronic kidney disease stage", "cough",
             "acute kidney injury", "type 2 diabetes mellitus without complications", "sepsis " * 40]
    alone = torch.cat([enc.encode([t]) for t in texts])
    assert torch.equal(enc.encode(texts), alone)
    cache = EmbeddingCache(tmp_path / "emb")
    embed_texts(enc, texts[::2], cache=cache, progress=False)  # a cache that holds half of them
    assert torch.equal(embed_texts(enc, texts, cache=cache, progress=False), alone)
    assert torch.equal(embed_texts(enc, texts[::-1], cache=None, progress=False), alone.flip(0))


def test_real_notes_chunked_pooled_and_cached(minilm, tmp_path):
    cardiac = ("Patient admitted with crushing chest pain radiating to the left arm, troponin elevated, "
               "ST elevations on ECG, taken for emergent cardiac catheterization. ") * 12
    ortho = "Fell at home, hip pain, x-ray shows displaced femoral neck fracture, orthopedics consulted. "
    notes = {1: cardiac, 2: ortho}
    read = lambda ids: {i: notes[i] for i in ids}  # noqa: E731
    cache = EmbeddingCache(tmp_path)
    emb, has, rep = embed_visit_notes(minilm, [[1], [2], []], read, cache=cache, progress=False)
    n_tok = len(minilm.tokenize([cardiac])[0])
    assert n_tok > 254 and rep["tokens_total"] == n_tok + len(minilm.tokenize([ortho])[0])
    assert rep["chunks_embedded"] == -(-(n_tok - 32) // (254 - 32)) + 1
    assert rep["tokens_embedded"] == rep["tokens_total"], "nothing truncated without a budget"
    assert has.tolist() == [True, True, False]
    concepts = minilm.encode(["acute myocardial infarction", "fracture of neck of femur"])
    sims = emb[:2] @ concepts.T
    assert sims[0, 0] > sims[0, 1] and sims[1, 1] > sims[1, 0]
    emb2, _, rep2 = embed_visit_notes(minilm, [[1], [2], []], read, cache=EmbeddingCache(tmp_path), progress=False)
    assert rep2["notes_embedded"] == 0 and rep2["notes_cached"] == 2 and torch.equal(emb, emb2)


# -- hf:PATH on a tiny random BERT ---------------------------------------------------------------------------
def make_tiny_bert(folder: Path, seed: int = 0, max_positions: int = 24) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + ["##s", "##ed"]
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(str(folder))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=max_positions)
    BertModel(cfg).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert")


def test_hf_folder_loads_with_pooling_options(tiny_bert):
    mean = load_encoder(f"hf:{tiny_bert}")
    cls = load_encoder(f"hf:{tiny_bert}?pooling=cls")
    assert mean.dim == 16 and mean.max_length == 24 and mean.num_special_tokens == 2
    assert mean.identity.startswith("hf:tiny-bert@sha256:") and mean.identity == cls.identity
    assert mean.params["pooling"] == "mean" and cls.params["pooling"] == "cls"
    texts = ["heart attack", "chest pain patient"]
    a, b = mean.encode(texts), cls.encode(texts)
    assert torch.allclose(a.norm(dim=1), torch.ones(2)) and not torch.allclose(a, b)
    # CLS pooling is the normalised first hidden state
    enc = cls.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        h0 = cls.model(**enc).last_hidden_state[:, 0]
    assert torch.allclose(b, torch.nn.functional.normalize(h0, dim=-1), atol=1e-5)
    assert load_encoder(f"hf:{tiny_bert}", pooling="cls", max_length=12).max_length == 12


def test_hf_identity_tracks_weights(tiny_bert, tmp_path):
    other = make_tiny_bert(tmp_path / "tiny-bert", seed=1)
    a, b = load_encoder(f"hf:{tiny_bert}"), load_encoder(f"hf:{other}")
    assert a.identity.split("/tok:")[0] != b.identity.split("/tok:")[0]
    assert not torch.allclose(a.encode(["fever"]), b.encode(["fever"]))


def test_hf_notes_chunk_with_the_model_tokenizer(tiny_bert):
    enc = load_encoder(f"hf:{tiny_bert}")  # 24 positions -> 22 content tokens per chunk
    text = " ".join(WORDS * 3)
    ids = enc.tokenize([text])[0]
    assert len(ids) == 3 * len(WORDS) and 1 not in ids  # every word is in the vocab
    emb, has, rep = embed_visit_notes(enc, [[7]], lambda n: {7: text}, overlap=4, progress=False)
    assert len(ids) == 60
    chunks = [ids[0:22], ids[18:40], ids[36:58], ids[54:60]]  # 22-token windows, stride 18
    expect = torch.nn.functional.normalize(enc.encode_tokens(chunks).mean(0), dim=0)
    assert rep["chunks_embedded"] == len(chunks) and torch.allclose(emb[0], expect, atol=1e-5)


def test_hf_sha256_pin_mismatch_is_an_error(tiny_bert):
    with pytest.raises(ValueError, match="does not match the pinned"):
        HFEncoder(tiny_bert, expected_sha256={"model.safetensors": "0" * 64})


def test_hf_path_errors(tmp_path, tiny_bert):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_encoder(f"hf:{tmp_path / 'nope'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no model"):
        load_encoder(f"hf:{empty}")
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(FileNotFoundError, match="no model weights"):
        load_encoder(f"hf:{no_weights}")
    with pytest.raises(ValueError, match="needs a model folder"):
        load_encoder("hf:")
    with pytest.raises(ValueError, match="not a folder"):
        load_encoder(f"hf:{tiny_bert / 'config.json'}")
    with pytest.raises(ValueError, match="pooling"):
        load_encoder(f"hf:{tiny_bert}?pooling=median")


def test_cli_reports_bad_hf_path_without_traceback(tmp_path, capsys):
    from mingle_bench.cli import main

    assert main(["profile-encoder", "--encoder", f"hf:{tmp_path / 'missing'}"]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_profile_encoder_json(tiny_bert, tmp_path, capsys):
    from mingle_bench.cli import main

    out = tmp_path / "prof.json"
    assert main(["profile-encoder", "--encoder", f"hf:{tiny_bert}", "--names", "8", "--notes", "3",
                 "--note-words", "30", "--repeats", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert list(res["precisions"]) == ["fp32"] and {"machine", "repeats", "workload"} <= set(res)
    block = res["precisions"]["fp32"]
    assert block["names"]["texts_per_s"] > 0 and block["notes_chunked"]["notes_per_s"] > 0
    assert block["encoder"]["identity"].startswith("hf:tiny-bert") and block["precision"] == "fp32"
    assert "names/s" in capsys.readouterr().out


@pytest.mark.cuda
def test_cuda_half_precision_close_to_cpu(minilm):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    gpu = load_encoder("default", device="cuda")
    assert gpu.params["precision"] in ("bfloat16", "float16") and gpu.identity == minilm.identity
    assert gpu.params != minilm.params, "precision is part of the cache key"
    texts = ["myocardial infarction", "heart attack", " ".join(["chest pain with fever"] * 80)]
    cos = (minilm.encode(texts) * gpu.encode(texts)).sum(1)
    assert float(cos.min()) > 0.99


def test_note_embeddings_deterministic_and_order_independent(tiny_bert):
    enc = load_encoder(f"hf:{tiny_bert}")
    rng = torch.Generator().manual_seed(0)
    notes = {i: " ".join(WORDS[j] for j in torch.randint(len(WORDS), (int(n),), generator=rng).tolist())
             for i, n in enumerate(torch.randint(3, 70, (20,), generator=rng).tolist())}
    visits = [[i, i + 1] for i in range(0, 20, 2)] + [[]]
    read = lambda ids: {i: notes[i] for i in ids}  # noqa: E731
    a, ha, _ = embed_visit_notes(enc, visits, read, overlap=4, progress=False)
    b, hb, _ = embed_visit_notes(enc, visits, read, overlap=4, progress=False)
    assert torch.equal(a, b) and torch.equal(ha, hb)
    perm = list(range(len(visits)))[::-1]
    c, hc, _ = embed_visit_notes(enc, [visits[p] for p in perm], read, overlap=4, read_batch_size=3, progress=False)
    assert torch.allclose(c, a[perm], atol=1e-5) and torch.equal(hc, ha[perm])
