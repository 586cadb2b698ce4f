"""A tiny deterministic text encoder for tests: records every text it is asked to embed."""
from __future__ import annotations

import zlib
from typing import Sequence

import torch

from mingle_bench.encoders.base import Encoder


class RecordingEncoder(Encoder):
    """Whitespace tokens hashed to ids; embeddings are a seeded projection of token counts."""

    identity = "test-recording-encoder@0"
    max_length = 64
    num_special_tokens = 0

    def __init__(self, dim: int = 8) -> None:
        self._dim = dim
        self.seen_texts: list[str] = []
        gen = torch.Generator().manual_seed(0)
        self._proj = torch.randn(1024, dim, generator=gen)

    @property
    def dim(self) -> int:
        return self._dim

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        self.seen_texts.extend(texts)
        return [[zlib.crc32(w.encode()) % 1024 for w in t.split()] for t in texts]

    def encode_tokens(self, token_lists: Sequence[Sequence[int]]) -> torch.Tensor:
        out = torch.zeros(len(token_lists), self._dim)
        for i, toks in enumerate(token_lists):
            if toks:
                out[i] = self._proj[list(toks)].sum(0)
        return torch.nn.functional.normalize(out + 1e-6, dim=1)
