"""Batch views for sequence and set models: ragged gathers and padding, all vectorised.

``TaskData`` keeps every ragged structure as CSR (``indptr`` + flat values). These helpers turn a
batch of sample indices into padded tensors without Python loops over samples.

The sequence models (RETAIN, GRAM) read each sample's visits up to and including the index
visit; the hypergraph models read the index visit's hyperedge only. :func:`index_only` makes the
same sequence model see what the hypergraph models see: a sequence of length one, the index
visit, with its time set to 0 (registered as ``retain-index`` and ``gram-index``).
"""
from __future__ import annotations

from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor


def ragged_gather(indptr: Tensor, values: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """Concatenate ``values[indptr[r]:indptr[r+1]]`` for each ``r`` in ``rows``.

    Returns ``(flat [sum(len)], lengths [len(rows)])``.
    """
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return values.new_empty(0), lengths
    offsets = torch.cumsum(lengths, 0) - lengths
    pos = torch.arange(total, device=values.device) - torch.repeat_interleave(offsets, lengths, output_size=total)
    return values[torch.repeat_interleave(starts, lengths, output_size=total) + pos], lengths


def pad_ragged(flat: Tensor, lengths: Tensor, pad_value: float | int = 0) -> tuple[Tensor, Tensor]:
    """Pad a ragged batch: ``flat [sum(len), *f]`` -> ``(padded [B, T, *f], mask bool [B, T])``."""
    B = lengths.numel()
    T = int(lengths.max()) if B else 0
    mask = torch.arange(T, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
    padded = flat.new_full((B, T, *flat.shape[1:]), pad_value)
    padded[mask] = flat
    return padded, mask


def bag_embed(weight: Tensor, indptr: Tensor, codes: Tensor, rows: Tensor) -> Tensor:
    """Sum of ``weight`` rows over each row's codes (a multi-hot times ``weight``): [len(rows), d].

    ``F.embedding_bag`` keeps it one kernel and differentiable in ``weight``; empty rows give 0.
    """
    flat, lengths = ragged_gather(indptr, codes, rows)
    offsets = torch.cumsum(lengths, 0) - lengths
    return F.embedding_bag(flat, weight, offsets, mode="sum")


def visit_sequences(data_seq_indptr: Tensor, seq_visits: Tensor, seq_times: Tensor,
                    idx: Tensor, history: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Each sample's visits in time order, padded.

    Returns ``(visits int64 [B, T] (0 where padded), times float [B, T], mask bool [B, T],
    lengths int64 [B])``; position ``lengths[b]-1`` is the index visit. With ``history=False``
    only the index visit, at time 0: ``T = 1``, ``lengths`` all 1.
    """
    lengths = data_seq_indptr[idx + 1] - data_seq_indptr[idx]
    if bool((lengths == 0).any()):
        bad = int(idx[(lengths == 0).nonzero()[0, 0]])
        raise ValueError(f"sample {bad} has an empty visit sequence (TaskData.seq_visit_indptr)")
    if not history:
        visits = seq_visits[data_seq_indptr[idx + 1] - 1].unsqueeze(1)      # the last visit is the index visit
        ones = torch.ones_like(lengths)
        return visits, torch.zeros(visits.shape, dtype=seq_times.dtype, device=visits.device), ones.bool().unsqueeze(1), ones
    flat_v, lengths = ragged_gather(data_seq_indptr, seq_visits, idx)
    flat_t, _ = ragged_gather(data_seq_indptr, seq_times, idx)
    visits, mask = pad_ragged(flat_v, lengths, 0)
    times, _ = pad_ragged(flat_t, lengths, 0.0)
    return visits, times, mask, lengths


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row's first ``lengths[b]`` steps (padding stays at the end): [B, T, *]."""
    B, T = x.shape[:2]
    pos = torch.arange(T, device=x.device).unsqueeze(0).expand(B, T)
    rev = lengths.unsqueeze(1) - 1 - pos
    src = torch.where(rev >= 0, rev, pos)
    index = src.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


M = TypeVar("M", bound=type)


def model_reads_history(cls: type) -> bool:
    """Whether model class ``cls`` reads the visits before the index visit: its class attribute
    ``reads_history`` (RETAIN, GRAM, ``gbm``'s code counts; absent: ``False``), unless the class
    fixes ``history=False`` (an :func:`index_only` variant)."""
    return bool(getattr(cls, "reads_history", False)) and bool(getattr(cls, "default_hparams", {}).get("history", True))


def index_only(cls: M) -> M:
    """``cls`` (a sequence model) with the hyperparameter ``history``: ``False`` reads the index
    visit alone (:func:`visit_sequences` with ``history=False``). The registered variant fixes
    ``history=False`` on the returned class (``retain-index`` in ``baselines/retain.py``).

    The switch is declared on this subclass, not on ``cls``: the hyperparameters of ``cls`` (part
    of every cell's ``input_hash``) stay as they were, and so do the hashes of its committed cells.
    """
    attrs: dict[str, Any] = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__,
                             "default_hparams": {"history": False}}
    return type(cls.__name__, (cls,), attrs)
