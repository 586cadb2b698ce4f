"""The bf16 encoder path: ``precision=fp32|bf16|auto`` on local encoders, identity and cache keys,
``auto`` resolution, the OpenAI backend's refusal, and ``profile-encoder --precision``."""
from __future__ import annotations

import json
import logging

import pytest
import torch

from mingle_bench.cli import main
from mingle_bench.encoders import embed_texts, load_encoder
from mingle_bench.encoders import hf
from mingle_bench.encoders.cache import namespace_id
from mingle_bench.encoders.embed import text_cache_params
from mingle_bench.encoders.notes import note_cache_params
from mingle_bench.profiling.encoders import clinical_notes, concept_names
from test_encoders_hf import make_tiny_bert

#: what the default encoder described itself as, and its cache namespaces, before precisions
#: existed (computed at commit 843ab52). Committed results hash describe() into their input
#: digests, so an fp32 encoder must keep these byte for byte.
FP32_DESCRIBE = ('{"identity": "hf:sentence-transformers/all-MiniLM-L6-v2@sha256:53aa51172d142c89/tok:bec8c24b9903", '
                 '"dim": 384, "max_length": 256, "pooling": "mean", "precision": "float32"}')
FP32_TEXT_NAMESPACE = "fe3e9de75b30be5fef1523b3"
FP32_NOTE_NAMESPACE = "fa100c325cb7355cbb953b0e"  # chunk 254, overlap 32, mean pooling, no max_tokens

REAL_NOTES = [
    "Pt is a 67 yo M with h/o CHF (EF 25%), CKD stage III, DM2 on insulin who presents with 3 days of "
    "worsening dyspnea, orthopnea and 10 lb weight gain. Exam: JVP to angle of jaw, bibasilar crackles, "
    "2+ pitting edema. BNP 2340, Cr 2.4 (baseline 1.8). CXR with pulmonary edema. Started on lasix gtt.",
    "Respiratory care: patient remains intubated on AC 500x14, PEEP 8, FiO2 40%. ABG 7.38/42/98. "
    "Suctioned for moderate thick tan secretions. Plan to attempt SBT in the morning if stable.",
    "Nursing progress note 0700-1900. Neuro: alert, oriented x2, follows commands. CV: afib rate 90-110, "
    "SBP 100-120 on no pressors. GI: tolerating tube feeds at goal. Skin: stage II sacral ulcer, dressed.",
    "Discharge summary: admitted for community acquired pneumonia, treated with ceftriaxone and "
    "azithromycin, defervesced on hospital day 2, discharged home on oral cefpodoxime to complete 7 days.",
]


@pytest.fixture(scope="module")
def minilm32():
    return load_encoder("default", device="cpu")


@pytest.fixture(scope="module")
def minilm16():
    return load_encoder("default", device="cpu", precision="bf16")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert")


# -- identity and cache keys -----------------------------------------------------------------------
@pytest.mark.parametrize("precision", [None, "fp32"])
def test_fp32_identity_params_and_namespaces_unchanged(precision):
    enc = load_encoder("default", device="cpu", precision=precision)
    assert enc.precision == "fp32"
    assert json.dumps(enc.describe()) == FP32_DESCRIBE
    assert namespace_id(enc.identity, text_cache_params(enc)) == FP32_TEXT_NAMESPACE
    assert namespace_id(enc.identity, note_cache_params(enc, 254, 32, "mean", None)) == FP32_NOTE_NAMESPACE
    assert all(p.dtype == torch.float32 for p in enc.model.parameters())


def test_bf16_has_its_own_cache_namespace(minilm32, minilm16):
    assert minilm16.precision == "bf16" and minilm16.identity == minilm32.identity
    assert minilm16.params == {**minilm32.params, "autocast": "bfloat16"}
    assert minilm16.describe()["autocast"] == "bfloat16"
    assert namespace_id(minilm16.identity, text_cache_params(minilm16)) != FP32_TEXT_NAMESPACE
    assert (namespace_id(minilm16.identity, note_cache_params(minilm16, 254, 32, "mean", None))
            != FP32_NOTE_NAMESPACE)


def test_bf16_and_fp32_vectors_do_not_mix_in_the_cache(tmp_path, minilm32, minilm16):
    from mingle_bench.encoders import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "emb")
    texts = ["sepsis", "acute kidney failure"]
    a = embed_texts(minilm32, texts, cache=cache, progress=False)
    b = embed_texts(minilm16, texts, cache=cache, progress=False)
    assert cache.stats()["hits"] == 0 and len(cache.info()["namespaces"]) == 2
    assert not torch.equal(a, b)


# -- accuracy --------------------------------------------------------------------------------------
def test_bf16_close_to_fp32_on_notes_and_names(minilm32, minilm16):
    texts = REAL_NOTES + clinical_notes(8, 200) + concept_names(32)
    a = embed_texts(minilm32, texts, progress=False)
    b = embed_texts(minilm16, texts, progress=False)
    assert b.dtype == torch.float32 and torch.allclose(b.norm(dim=1), torch.ones(len(texts)), atol=1e-5)
    cos = (a * b).sum(1)
    assert float(cos.min()) >= 0.999, float(cos.min())
    assert not torch.equal(a, b), "bf16 must actually compute in bf16"


def test_bf16_keeps_fp32_weights_except_prepacked_linears(minilm16):
    for name, mod in minilm16.model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            assert mod.weight.dtype == torch.bfloat16, name
        elif isinstance(mod, (torch.nn.LayerNorm, torch.nn.Embedding)):
            assert mod.weight.dtype == torch.float32, name


def test_prepacked_linears_equal_plain_autocast(minilm32, minilm16):
    """Casting the linear weights once at load gives exactly what autocast computes from fp32 weights."""
    enc = minilm32.tokenizer(REAL_NOTES[:2], padding=True, return_tensors="pt")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = minilm32.model(**enc).last_hidden_state
        ours = minilm16.model(**enc).last_hidden_state
    assert torch.equal(plain, ours)


# -- auto resolution ---------------------------------------------------------------------------------
@pytest.mark.parametrize("has_bf16,want", [(True, "bf16"), (False, "fp32")])
def test_auto_follows_cpu_bf16_support(monkeypatch, tiny_bert, has_bf16, want):
    monkeypatch.setattr(hf, "cpu_supports_bf16", lambda: has_bf16)
    assert hf.resolve_precision("auto", torch.device("cpu")) == want
    enc = load_encoder(f"hf:{tiny_bert}", device="cpu", precision="auto")
    assert enc.precision == want and ("autocast" in enc.params) == (want == "bf16")


def test_auto_on_cuda_follows_bf16_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert hf.resolve_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert hf.resolve_precision("auto", torch.device("cuda")) == "fp32"


def test_explicit_bf16_without_native_support_warns_and_runs(monkeypatch, tiny_bert, caplog):
    monkeypatch.setattr(hf, "cpu_supports_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="mingle_bench.encoders.hf"):
        enc = load_encoder(f"hf:{tiny_bert}", device="cpu", precision="bf16")
    assert enc.precision == "bf16" and "without native bf16" in caplog.text
    assert enc.encode(["chest pain"]).shape == (1, 16)


def test_cpu_bf16_probe_falls_back_to_cpuinfo_flags(monkeypatch, tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512bw\n")
    assert hf._cpuinfo_flags(str(info)) >= {"avx512_bf16", "avx2"}
    assert hf._cpuinfo_flags(str(tmp_path / "missing")) == set()
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    monkeypatch.setattr(hf, "_cpuinfo_flags", lambda path="/proc/cpuinfo": {"avx2", "avx512f"})
    hf.cpu_supports_bf16.cache_clear()
    try:
        assert hf.cpu_supports_bf16() is False
        monkeypatch.setattr(hf, "_cpuinfo_flags", lambda path="/proc/cpuinfo": {"amx_bf16"})
        hf.cpu_supports_bf16.cache_clear()
        assert hf.cpu_supports_bf16() is True
    finally:
        hf.cpu_supports_bf16.cache_clear()


# -- options and errors -------------------------------------------------------------------------------
def test_precision_in_spec_and_bad_values(tiny_bert):
    assert load_encoder(f"hf:{tiny_bert}?precision=bf16", device="cpu").precision == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        load_encoder(f"hf:{tiny_bert}", precision="fp16")
    with pytest.raises(ValueError, match="cannot be combined with dtype"):
        load_encoder(f"hf:{tiny_bert}", precision="bf16", dtype="float16")


def test_openai_is_fp32_only(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    base = load_encoder("openai:text-embedding-3-small")
    for p in ("fp32", "auto"):
        enc = load_encoder("openai:text-embedding-3-small", precision=p)
        assert enc.identity == base.identity and enc.params == base.params
    with pytest.raises(ValueError, match="bf16 applies to local models only"):
        load_encoder("openai:text-embedding-3-small", precision="bf16")


# -- profile-encoder --precision -----------------------------------------------------------------------
def test_profile_encoder_precisions_json(tiny_bert, capsys):
    assert main(["profile-encoder", "--encoder", f"hf:{tiny_bert}", "--precision", "fp32,bf16", "--names", "6",
                 "--notes", "3", "--note-words", "30", "--repeats", "1", "--threads", "1", "--json", "-"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert list(res["precisions"]) == ["fp32", "bf16"] and {"machine", "repeats", "workload"} <= set(res)
    fp32, bf16 = res["precisions"]["fp32"], res["precisions"]["bf16"]
    for block in (fp32, bf16):
        assert {"names", "notes_window", "notes_chunked", "encoder", "precision"} <= set(block)
        assert block["names"]["texts_per_s"] > 0 and block["notes_window"]["texts_per_s"] > 0
        assert block["notes_chunked"]["notes_per_s"] > 0
    assert "min_cosine_vs_fp32" not in fp32 and fp32["encoder"]["precision"] == "float32"
    assert bf16["precision"] == "bf16" and bf16["encoder"]["autocast"] == "bfloat16"
    assert 0.99 <= bf16["min_cosine_vs_fp32"] <= 1.0 + 1e-6 and "notes_window" in bf16["cosine_over"]
    assert bf16["speedup_vs_fp32"]["notes_window_texts_per_s"] > 0


def test_profile_encoder_table_names_the_precisions(tiny_bert, capsys):
    assert main(["profile-encoder", "--encoder", f"hf:{tiny_bert}", "--precision", "fp32,auto", "--names", "4",
                 "--notes", "2", "--note-words", "20", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "fp32" in out and "auto" in out and "names/s" in out


@pytest.mark.parametrize("argv,culprit", [
    (["profile-encoder", "--precision", "fp64"], "--precision"),
    (["profile-encoder", "--precision", "fp32,fp32"], "twice"),
    (["profile-encoder", "--precision", ","], "--precision"),
    (["run", "--precision", "fp64"], "--precision"),
])
def test_bad_precision_is_one_line(capsys, argv, culprit):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's choices (run/tune/reproduce) exit with status 2
        code = exc.code
    assert code != 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert "Traceback" not in err and len(lines) == 1 and culprit in lines[0], err
