""":class:`ShardedEncoder`: an encoder whose cache misses are embedded by Ray actors.

``pipeline.open_encoder`` wraps the run's encoder in it under ``--executor ray``. Everything
that names the vectors is the wrapped encoder's (``identity``, ``params``, ``describe()``,
``dim``, ``max_length``, ``tokenize``), so the content-addressed embedding cache namespace is
the one a local run uses, and the driver still tokenizes, deduplicates, chunks and writes the
cache (:func:`~mingle_bench.encoders.embed.embed_texts`,
:func:`~mingle_bench.encoders.notes.embed_visit_notes`); only the forward passes move.

**Same batches.** The embedding loops sort the inputs by length and cut them into forward
batches with :func:`~mingle_bench.encoders.base.iter_token_batches` under the encoder's
``default_batch_tokens`` and ``max_batch_size``. This wrapper advertises unbounded batches, so
the loops hand it all their sorted inputs in one :meth:`encode_tokens` call (for notes: the
chunks of one ``read_batch_size`` group of notes), and it cuts them with the *wrapped*
encoder's budgets: exactly the batches, padding included, a local run feeds the model. Each
batch goes to one actor; the results come back in order. On CPU workers every actor runs with
``$MINGLE_RAY_CPUS_PER_ENCODER`` threads (default 1); the vectors are bit-identical to the
local ones in the tests (all-MiniLM-L6-v2 gives the same bits at 1 and 2 threads on the same
CPU; the test asserts ``torch.equal``). GPU workers embed in the wrapped encoder's dtype, so
they match a CPU run to rounding only (allclose, not bitwise), as a local GPU run would.

**Actors.** One per worker, created at the first sharded call and kept until :meth:`close`
(or until the wrapper is garbage-collected after the features stage): on a cluster with GPUs
one actor per GPU (``num_gpus=1``, device ``cuda``), else one per
``$MINGLE_RAY_CPUS_PER_ENCODER`` CPUs (capped by ``$MINGLE_RAY_ENCODER_WORKERS``). Each
loads the encoder once from its spec (``load_encoder(spec)``, or ``precision=`` when not
fp32) and refuses to work if its ``identity``/``params`` differ from the driver's, since its
vectors would be cached under the driver's namespace.

**Small jobs run locally.** A call with fewer than ``min_texts`` inputs (default 256,
``$MINGLE_RAY_MIN_TEXTS``) or a single forward batch is embedded in this process with the
wrapped encoder: starting actors costs more than it saves.

The cost of one call per pass: ``embed_texts`` writes the cache when the call returns (not
every 4096 texts), and its progress bar advances once; notes still write the cache per group
of notes.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from mingle_bench.distributed.cluster import ClusterError, _env_int, connect, import_ray, resources
from mingle_bench.encoders.base import Encoder, iter_token_batches

ENV_CPUS_PER_ENCODER = "MINGLE_RAY_CPUS_PER_ENCODER"
ENV_ENCODER_WORKERS = "MINGLE_RAY_ENCODER_WORKERS"
ENV_MIN_TEXTS = "MINGLE_RAY_MIN_TEXTS"
DEFAULT_MIN_TEXTS = 256
#: "no limit" for the loops that batch before calling encode_tokens
UNBOUNDED = 1 << 62


def load_worker_encoder(spec: str, precision: str, device: str, dtype: str | None) -> Encoder:
    """The encoder a worker embeds with: ``spec`` at ``precision`` on ``device``.

    Hugging Face backends get the device and, for fp32, the driver's dtype (``"float32"`` on a
    CPU driver: a GPU worker would otherwise pick bf16 and break the cache namespace)."""
    from mingle_bench.encoders import load_encoder
    from mingle_bench.encoders.registry import parse_spec

    kwargs: dict[str, Any] = {}
    if parse_spec(spec)[0] in ("default", "hf"):
        kwargs["device"] = device
        if precision == "fp32" and dtype:
            kwargs["dtype"] = dtype
    if precision != "fp32":
        kwargs["precision"] = precision
    return load_encoder(spec, **kwargs)


class _EncoderActor:
    """One model load; embeds forward batches on request."""

    def __init__(self, loader, spec, precision, device, dtype, threads, identity, params):
        torch.set_num_threads(int(threads))
        self.enc = loader(spec, precision, device, dtype)
        if self.enc.identity != identity or dict(self.enc.params) != dict(params):
            raise ValueError(f"a Ray worker's encoder {self.enc.identity} {self.enc.params} is not the driver's "
                             f"{identity} {params}; install the same encoder files on every node")

    def encode(self, batches: list) -> list:
        return [self.enc.encode_tokens(b).numpy() for b in batches]


class ShardedEncoder(Encoder):
    """``enc`` with :meth:`encode_tokens` sharded over Ray actors (see the module docstring).

    Args:
        enc: the encoder the driver loaded (its identity, params and tokenizer are used as is).
        spec: its ``--encoder`` spec; the actors load it.
        precision: ``fp32`` (default), ``bf16`` or ``auto`` (passed to ``load_encoder`` when not fp32).
        address: the Ray cluster (``None``: ``$RAY_ADDRESS``, else a local Ray).
        min_texts: fewer inputs than this in one call are embedded locally.
        workers: number of actors (default: one per GPU, else one per ``cpus_per_worker`` CPUs).
        cpus_per_worker: threads and Ray CPUs per CPU actor (default ``$MINGLE_RAY_CPUS_PER_ENCODER`` or 1).
        loader: ``(spec, precision, device, dtype) -> Encoder`` run in each actor (tests).
    """

    def __init__(self, enc: Encoder, spec: str, precision: str = "fp32", address: str | None = None, *,
                 min_texts: int | None = None, workers: int | None = None, cpus_per_worker: int | None = None,
                 loader: Callable[[str, str, str, str | None], Encoder] | None = None):
        import_ray()  # fail before the embedding work when Ray is missing
        self.inner = enc
        self.spec = spec
        self.precision = precision
        self.address = address
        self.identity = enc.identity
        self.max_length = enc.max_length
        self.num_special_tokens = enc.num_special_tokens
        self.default_batch_tokens = UNBOUNDED
        self.max_batch_size = UNBOUNDED
        self.min_texts = int(min_texts if min_texts is not None else (_env_int(ENV_MIN_TEXTS) or DEFAULT_MIN_TEXTS))
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.loader = loader or load_worker_encoder
        self._actors: list = []
        self._ray = None
        #: counts for tests and reports: calls and batches embedded by the actors / locally
        self.stats = {"sharded_calls": 0, "sharded_batches": 0, "local_calls": 0, "local_batches": 0, "actors": 0}

    # -- what names the vectors: the wrapped encoder's ---------------------------------------
    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def params(self) -> dict[str, Any]:
        return self.inner.params

    @property
    def max_input_tokens(self) -> int:
        return self.inner.max_input_tokens

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def tokenize(self, texts: Sequence[str]) -> list[list]:
        return self.inner.tokenize(texts)

    def __repr__(self) -> str:
        return f"ShardedEncoder({self.inner!r})"

    # -- the forward passes ------------------------------------------------------------------
    def encode_tokens(self, token_lists: Sequence[Sequence]) -> torch.Tensor:
        token_lists = [list(t) for t in token_lists]
        if not token_lists:
            return torch.zeros(0, self.dim, dtype=torch.float32)
        batches = list(iter_token_batches(token_lists, self.inner.default_batch_tokens, self.inner.max_batch_size))
        if len(token_lists) < self.min_texts or len(batches) < 2:
            self.stats["local_calls"] += 1
            self.stats["local_batches"] += len(batches)
            out = [self.inner.encode_tokens([token_lists[i] for i in b]) for b in batches]
            return torch.cat(out) if len(out) > 1 else out[0]
        actors = self._pool()
        ray = self._ray
        # batch k goes to actor k mod n; each actor gets its batches in one call (one round trip)
        n = len(actors)
        refs = [actors[a].encode.remote([[token_lists[i] for i in b] for b in batches[a::n]]) for a in range(n)]
        try:
            results = ray.get(refs)
        except ray.exceptions.RayError as exc:
            self.close()
            raise ClusterError(f"embedding on Ray failed ({type(exc).__name__}: "
                               f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''})") from None
        out: list = [None] * len(batches)
        for a, res in enumerate(results):
            for j, arr in enumerate(res):
                out[a + j * n] = torch.from_numpy(arr.copy())  # Ray hands back read-only buffers
        self.stats["sharded_calls"] += 1
        self.stats["sharded_batches"] += len(batches)
        return torch.cat(out)

    def _pool(self) -> list:
        if self._actors:
            return self._actors
        ray = self._ray = connect(self.address)
        res = resources(ray)
        if res["gpus"] >= 1:
            n, opts, device, threads = int(res["gpus"]), {"num_gpus": 1, "num_cpus": 1}, "cuda", 1
        else:
            threads = int(self.cpus_per_worker or _env_int(ENV_CPUS_PER_ENCODER) or 1)
            n, opts, device = max(1, int(res["cpus"] // threads)), {"num_cpus": threads}, "cpu"
        n = int(self.workers or _env_int(ENV_ENCODER_WORKERS) or n)
        dtype = self.inner.params.get("precision") if isinstance(self.inner.params, dict) else None
        cls = ray.remote(_EncoderActor).options(max_restarts=0, **opts)
        self._actors = [cls.remote(self.loader, self.spec, self.precision, device, dtype, threads,
                                   self.identity, dict(self.inner.params)) for _ in range(n)]
        self.stats["actors"] = n
        return self._actors

    def close(self) -> None:
        """Stop the actors (they hold their CPUs or GPUs until then)."""
        actors, self._actors = self._actors, []
        if actors and self._ray is not None and self._ray.is_initialized():
            for a in actors:
                try:
                    self._ray.kill(a)
                except Exception:  # noqa: BLE001 - already gone
                    pass

    def __del__(self):  # the features stage drops the encoder: give the actors' resources back to the cells
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


__all__ = ["ShardedEncoder", "load_worker_encoder", "ENV_CPUS_PER_ENCODER", "ENV_ENCODER_WORKERS", "ENV_MIN_TEXTS"]
