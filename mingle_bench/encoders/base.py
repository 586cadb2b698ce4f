"""The interface every text encoder implements.

An encoder turns texts into L2-normalised float32 vectors. It exposes its tokenizer as a
*hook* so that long clinical notes can be chunked by tokens before encoding
(:mod:`mingle_bench.encoders.notes`): :meth:`Encoder.tokenize` returns token units without
special tokens and :meth:`Encoder.encode_tokens` embeds lists of such units, each at most
:attr:`Encoder.max_input_tokens` long. For transformer backends the units are the model's
own token ids; for remote APIs they are an approximation documented by the backend.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any, Sequence

import torch

log = logging.getLogger(__name__)


class Encoder(ABC):
    """Base class of text encoders.

    Attributes:
        identity: the string that keys the embedding cache: model name or folder name plus
            the sha256 of its weights (local models) or the API model name and endpoint.
            Two encoders with the same identity and :attr:`params` produce the same vectors.
        params: settings that change the vectors (pooling, max length, precision); part of
            every cache key.
        max_length: model input length including special tokens.
        num_special_tokens: special tokens added around each input ([CLS] ... [SEP] = 2).
        default_batch_tokens: padded tokens per forward batch that suit the device.
        max_batch_size: upper bound on inputs per batch.
    """

    identity: str
    max_length: int
    num_special_tokens: int = 0
    default_batch_tokens: int = 4096
    max_batch_size: int = 256

    @property
    @abstractmethod
    def dim(self) -> int:
        """Embedding dimension."""

    @property
    def params(self) -> dict[str, Any]:
        return {}

    @property
    def max_input_tokens(self) -> int:
        """Content tokens (excluding special tokens) one model input can hold."""
        return self.max_length - self.num_special_tokens

    # -- tokenizer hook ----------------------------------------------------------------
    @abstractmethod
    def tokenize(self, texts: Sequence[str]) -> list[list]:
        """Token units of each text, without special tokens and without truncation."""

    @abstractmethod
    def encode_tokens(self, token_lists: Sequence[Sequence]) -> torch.Tensor:
        """Embed pre-tokenized inputs (each ``<= max_input_tokens`` units, no special tokens).

        Returns float32 ``[len(token_lists), dim]`` on the CPU, rows L2-normalised.
        """

    # -- convenience -------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed texts: float32 ``[len(texts), dim]``, rows L2-normalised.

        Texts longer than :attr:`max_input_tokens` are truncated to it (counted and logged;
        use :func:`~mingle_bench.encoders.notes.embed_visit_notes` to chunk long texts).
        This processes the texts in the given order; :func:`~mingle_bench.encoders.embed.embed_texts`
        adds deduplication, length-sorted batching, caching and a progress bar.
        """
        texts = check_texts(texts)
        if not texts:
            return torch.zeros(0, self.dim, dtype=torch.float32)
        toks = self.tokenize(texts)
        limit = self.max_input_tokens
        n_cut = sum(len(t) > limit for t in toks)
        if n_cut:
            log.warning("%d of %d texts exceed %d tokens and were truncated for %s",
                        n_cut, len(texts), limit, self.identity)
        toks = [t[:limit] for t in toks]
        out = []
        for batch in iter_token_batches(toks, self.default_batch_tokens, self.max_batch_size):
            out.append(self.encode_tokens([toks[i] for i in batch]))
        return torch.cat(out) if len(out) > 1 else out[0]

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for reports."""
        return {"identity": self.identity, "dim": self.dim, "max_length": self.max_length, **self.params}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.identity!r})"


def check_texts(texts: Sequence[str]) -> list[str]:
    """Validate that ``texts`` is a sequence of str; name the first bad index."""
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, got a single string")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise ValueError(f"texts[{i}] is {type(t).__name__}, expected str")
    return out


def iter_token_batches(token_lists: Sequence[Sequence], max_batch_tokens: int, max_batch_size: int):
    """Consecutive index batches whose padded size ``n * max_len`` stays within the budget.

    Feed it length-sorted inputs so that padding is minimal. Every batch holds at least one input.
    """
    batch: list[int] = []
    longest = 0
    for i, toks in enumerate(token_lists):
        n = max(len(toks), 1)
        new_longest = max(longest, n)
        if batch and ((len(batch) + 1) * new_longest > max_batch_tokens or len(batch) >= max_batch_size):
            yield batch
            batch, new_longest = [], n
        batch.append(i)
        longest = new_longest
    if batch:
        yield batch


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm; all-zero rows stay zero."""
    return torch.nn.functional.normalize(x.float(), p=2.0, dim=-1, eps=1e-12)
