"""An OpenAI-compatible embeddings endpoint (OpenAI, Azure-style proxies, vLLM, TEI, Ollama).

``POST {OPENAI_BASE_URL}/embeddings`` with ``{"model": MODEL, "input": [texts...]}``; the
base URL defaults to ``https://api.openai.com/v1`` (as in the OpenAI SDK, the base URL
includes ``/v1``). ``OPENAI_API_KEY`` is sent as a bearer token when set; it is required for
api.openai.com and optional for local servers. The key is never logged, never written to a
cache or report, and never part of an error message.

Requests are batched (``batch_size`` inputs, default 256, and at most ~``max_request_tokens``
approximate tokens each). HTTP 429, 5xx and connection errors are retried with exponential
backoff (``backoff_s * 2**attempt``, plus jitter, honouring ``Retry-After``) up to
``max_retries`` times; 401/403 raise at once with a message about the key. An endpoint that
cannot be reached at all fails fast, naming the URL: a DNS failure raises at once, a refused
connection is retried once after at most 0.5 s (a local server restarting) and then raises.
Timeouts and resets keep the full retry policy.

**Token approximation.** Chunking needs a tokenizer, but the remote model's tokenizer is
not available offline. This backend therefore counts *approximate tokens*: each
whitespace-separated word is split into pieces of at most 4 characters (a common rule of
thumb for BPE tokenizers on English text, about 0.75 words per token), the piece keeping
any whitespace that follows it. Concatenating pieces restores the text exactly, so a chunk
of N approximate tokens is a contiguous slice of the note. ``max_length`` (default 8191,
ada-002's window) is counted in the same units; real token counts of clinical text are
usually a little higher, so keep chunks well below the window (the default chunk is 256).
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Sequence

import torch

from mingle_bench.encoders.base import Encoder, l2_normalize

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: Output dimensions of well-known embedding models (others are probed with one request).
KNOWN_DIMS = {"text-embedding-ada-002": 1536, "text-embedding-3-small": 1536, "text-embedding-3-large": 3072}
_PIECE = re.compile(r"\s+|\S{1,4}\s*")


def approx_tokenize(text: str) -> list[str]:
    """Split text into ~token-sized pieces (<= 4 non-space chars, trailing whitespace attached).

    ``"".join(approx_tokenize(t)) == t`` for every string.
    """
    return _PIECE.findall(text)


class OpenAIError(RuntimeError, ValueError):
    """The embeddings endpoint failed in a way retries cannot fix.

    Also a ``ValueError``, so that the CLI reports it in one line (it is a configuration or
    availability problem of the endpoint, not a bug to debug from a traceback)."""


class OpenAIEncoder(Encoder):
    """Embeddings from an OpenAI-compatible HTTP endpoint.

    Args:
        model: the model name sent in each request (e.g. ``text-embedding-ada-002``).
        base_url: default ``$OPENAI_BASE_URL`` or ``https://api.openai.com/v1``.
        api_key: default ``$OPENAI_API_KEY``.
        dimensions: optional output size for models that support it (text-embedding-3-*).
        batch_size: inputs per request.
        max_request_tokens: approximate tokens per request.
        max_length: the model's input window in approximate tokens.
        max_retries, backoff_s, timeout_s: retry policy and per-request timeout.
    """

    num_special_tokens = 0

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 dimensions: int | None = None, batch_size: int = 256, max_request_tokens: int = 250_000,
                 max_length: int = 8191, max_retries: int = 6, backoff_s: float = 1.0, timeout_s: float = 120.0):
        if not model:
            raise ValueError("encoder spec 'openai:' needs a model name, e.g. openai:text-embedding-ada-002")
        base = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        parsed = urllib.parse.urlsplit(base)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"OPENAI_BASE_URL must be an http(s) URL such as {DEFAULT_BASE_URL}, got {base!r}")
        if parsed.username or parsed.password:
            raise ValueError("OPENAI_BASE_URL must not contain credentials; put the key in OPENAI_API_KEY")
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY") or None
        if self._api_key is None and parsed.hostname == "api.openai.com":
            raise ValueError("openai encoder: OPENAI_API_KEY is not set (required for api.openai.com)")
        self.model_name = model
        self.base_url = base
        self.url = base + "/embeddings"
        self.dimensions = int(dimensions) if dimensions else None
        self.batch_size = int(batch_size)
        self.max_request_tokens = int(max_request_tokens)
        self.max_length = int(max_length)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.timeout_s = float(timeout_s)
        self.default_batch_tokens = self.max_request_tokens
        self.max_batch_size = self.batch_size
        self._dim = self.dimensions or KNOWN_DIMS.get(model)
        host = "" if parsed.hostname == "api.openai.com" else f"@{parsed.netloc}{parsed.path}"
        self.identity = f"openai:{model}{host}"
        self.requests_sent = 0
        self.retries = 0

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIEncoder(model={self.model_name!r}, url={self.url!r})"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._post(["dimension probe"]).shape[1])
        return self._dim

    @property
    def params(self) -> dict[str, Any]:
        return {"dimensions": self.dimensions, "max_length": self.max_length, "tokens": "approx4"}

    # -- tokenizer hook --------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        return [approx_tokenize(t) for t in texts]

    def encode_tokens(self, token_lists: Sequence[Sequence[str]]) -> torch.Tensor:
        texts = ["".join(t) for t in token_lists]
        out = []
        for batch in self._request_batches(token_lists):
            out.append(self._post([texts[i] for i in batch]))
        if not out:
            return torch.zeros(0, self.dim, dtype=torch.float32)
        return torch.cat(out) if len(out) > 1 else out[0]

    def _request_batches(self, token_lists: Sequence[Sequence[str]]):
        batch: list[int] = []
        tokens = 0
        for i, t in enumerate(token_lists):
            n = max(len(t), 1)
            if batch and (len(batch) >= self.batch_size or tokens + n > self.max_request_tokens):
                yield batch
                batch, tokens = [], 0
            batch.append(i)
            tokens += n
        if batch:
            yield batch

    # -- HTTP --------------------------------------------------------------------------------
    def _post(self, texts: list[str]) -> torch.Tensor:
        # Empty strings are rejected by some servers; a single space embeds "nothing".
        payload: dict[str, Any] = {"model": self.model_name, "input": [t if t else " " for t in texts]}
        if self.dimensions:
            payload["dimensions"] = self.dimensions
        body = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = "Bearer " + self._api_key
        attempt = 0
        while True:
            req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            self.requests_sent += 1
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    data = json.loads(resp.read().decode("utf-8"))
                return self._parse(data, len(texts))
            except urllib.error.HTTPError as exc:
                status = exc.code
                detail = _error_detail(exc)
                if self._api_key:  # a server may echo the key back; never let it reach a message
                    detail = detail.replace(self._api_key, "***")
                if status in (401, 403):
                    raise OpenAIError(
                        f"embeddings endpoint {self.url} refused the request (HTTP {status}: {detail}); "
                        "check OPENAI_API_KEY (and OPENAI_BASE_URL)") from None
                retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                if status == 429 or status >= 500:
                    reason = f"HTTP {status}"
                else:
                    raise OpenAIError(f"embeddings endpoint {self.url} rejected the request "
                                      f"(HTTP {status}: {detail})") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                cause = getattr(exc, "reason", exc)
                unreachable = _unreachable(cause)
                if unreachable == "dns" or (unreachable == "refused" and attempt >= 1):
                    what = "its host name does not resolve" if unreachable == "dns" else "the connection was refused"
                    raise OpenAIError(
                        f"cannot reach the embeddings endpoint {self.url}: {what} ({cause}); "
                        "is the server running, and is OPENAI_BASE_URL right?") from None
                if unreachable == "refused":  # one short retry: a local server may be restarting
                    reason, retry_after = f"connection refused ({cause})", min(self.backoff_s, 0.5)
                else:
                    reason, retry_after = f"connection error ({cause})", None
            except (ValueError, KeyError, TypeError) as exc:
                raise OpenAIError(f"embeddings endpoint {self.url} returned an invalid response: {exc}") from None
            if attempt >= self.max_retries:
                raise OpenAIError(f"embeddings endpoint {self.url} failed after {attempt + 1} attempts: {reason}")
            delay = retry_after if retry_after is not None else self.backoff_s * (2 ** attempt)
            delay = min(delay, 60.0) * (1.0 + 0.1 * random.random())
            log.warning("embeddings request to %s failed (%s); retry %d/%d in %.1fs",
                        self.url, reason, attempt + 1, self.max_retries, delay)
            self.retries += 1
            attempt += 1
            time.sleep(delay)

    def _parse(self, data: dict, n: int) -> torch.Tensor:
        items = data["data"]
        if len(items) != n:
            raise ValueError(f"expected {n} embeddings, got {len(items)}")
        items = sorted(items, key=lambda d: d.get("index", 0))
        emb = torch.tensor([d["embedding"] for d in items], dtype=torch.float32)
        if emb.ndim != 2 or (self._dim is not None and emb.shape[1] != self._dim):
            raise ValueError(f"embedding shape {tuple(emb.shape)} does not match dim {self._dim}")
        if not torch.isfinite(emb).all():
            raise ValueError("embeddings contain NaN or inf")
        return l2_normalize(emb)


def _unreachable(cause: object) -> str | None:
    """``"dns"`` or ``"refused"`` when a connection error means the endpoint cannot be reached at all."""
    if isinstance(cause, socket.gaierror):
        return "dns"
    if isinstance(cause, ConnectionRefusedError):
        return "refused"
    return None


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read().decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - the body is only used for the message
        return exc.reason or ""
    try:
        msg = json.loads(raw).get("error", {})
        if isinstance(msg, dict):
            msg = msg.get("message", "")
        raw = str(msg) or raw
    except (ValueError, AttributeError):
        pass
    return raw.strip()[:300]


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
