"""Sparse structure: the CSR of one message-passing direction, its transpose and its checks.

This is the bottom of the package: it may be imported by anything (``incidence``, ``ops``,
``ops_reference``, models, baselines) and imports nothing of ``mingle_bench`` itself, so no
import cycle can run through it. The ops over a CSR live in :mod:`mingle_bench.ops`
(``ops.softmax_aggregate(csr, ...)``, ``ops.aggregate(csr, ...)``).

A CSR of ``S`` segments over ``N`` source rows with ``nnz`` entries:

* ``indptr``  int64 [S+1]: segment ``s`` owns entries ``indptr[s] .. indptr[s+1]-1``;
* ``indices`` int64 [nnz]: the source row of each entry, in ``[0, N)``;
* ``t_indptr`` int64 [N+1], ``t_indices`` int64 [nnz], ``t_perm`` int64 [nnz]: the transpose,
  i.e. for source ``n`` the entries ``t_perm[t_indptr[n]:t_indptr[n+1]]`` (positions into
  ``indices``, ascending) and their segments ``t_indices[...]``. The fused op's backward walks
  it to give gradients for source rows without atomics or scatter-add (deterministic).

Public names: :class:`CSR`, :func:`transpose_csr`, :func:`segment_ids`, and the validators
:func:`check_index_tensor` (metadata: type, dtype, rank) and :func:`check_csr_data` (reads the
data: monotone ``indptr`` from 0 to nnz, ``indices`` in range). Errors are ``TypeError`` /
``ValueError`` naming the argument and, for data, the first bad position.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["CSR", "transpose_csr", "segment_ids", "check_index_tensor", "check_csr_data"]


# ----------------------------------------------------------------------------- validation
def check_index_tensor(t: Tensor, name: str) -> None:
    """Require ``t`` to be a 1-D int64 tensor; the error names ``name``."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype != torch.int64:
        raise ValueError(f"{name}: expected dtype torch.int64, got {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"{name}: expected a 1-D tensor, got shape {tuple(t.shape)}")


def check_csr_data(indptr: Tensor, indices: Tensor, num_sources: int) -> None:
    """Data checks of a CSR: ``indptr`` [S+1] monotone with ``indptr[0] = 0`` and
    ``indptr[-1] = nnz``, ``indices`` [nnz] in ``[0, num_sources)``.

    Reads the tensors (one host sync on GPU). Raises ``ValueError`` naming the argument and the
    first bad position.
    """
    nnz = indices.numel()
    if indptr.numel() < 1:
        raise ValueError("indptr: must have at least one element (S+1 with S >= 0)")
    first, last = int(indptr[0]), int(indptr[-1])
    if first != 0:
        raise ValueError(f"indptr: indptr[0] must be 0, got {first}")
    if last != nnz:
        raise ValueError(f"indptr: indptr[-1] must equal len(indices)={nnz}, got {last}")
    if indptr.numel() > 1:
        dec = indptr[1:] < indptr[:-1]
        if bool(dec.any()):
            pos = int(dec.nonzero()[0, 0])
            raise ValueError(f"indptr: not monotone at position {pos + 1} "
                             f"({int(indptr[pos])} > {int(indptr[pos + 1])})")
    if nnz:
        bad = (indices < 0) | (indices >= num_sources)
        if bool(bad.any()):
            pos = int(bad.nonzero()[0, 0])
            raise ValueError(f"indices: value {int(indices[pos])} at position {pos} is outside [0, {num_sources})")


# ----------------------------------------------------------------------------- structure
def segment_ids(indptr: Tensor, nnz: int) -> Tensor:
    r"""Segment of every entry: int64 [nnz], ``seg[i] = s`` for ``indptr[s] <= i < indptr[s+1]``.

    No host sync (the output size ``nnz`` is given).
    """
    counts = indptr[1:] - indptr[:-1]
    return torch.repeat_interleave(torch.arange(indptr.numel() - 1, device=indptr.device), counts,
                                   output_size=nnz)


def transpose_csr(indptr: Tensor, indices: Tensor, num_sources: int) -> tuple[Tensor, Tensor, Tensor]:
    """Transpose a CSR: returns ``(t_indptr [N+1], t_indices [nnz], t_perm [nnz])``.

    ``t_perm`` lists entry positions grouped by source (stable, so ascending within a source);
    ``t_indices`` gives the segment of each. Uses only sorts and ``searchsorted`` (no
    data-dependent shapes, no host sync, deterministic on every device).
    """
    seg = segment_ids(indptr, indices.numel())
    sorted_src, t_perm = torch.sort(indices, stable=True)
    t_indices = seg.index_select(0, t_perm)
    t_indptr = torch.searchsorted(
        sorted_src, torch.arange(num_sources + 1, device=indices.device, dtype=indices.dtype)
    )
    return t_indptr, t_indices, t_perm


@dataclass(frozen=True, eq=False)
class CSR:
    """One direction of an incidence: segments over sources, plus its transpose.

    Shapes: ``indptr`` [S+1], ``indices`` [nnz] in ``[0, N)``, ``t_indptr`` [N+1],
    ``t_indices`` [nnz] in ``[0, S)``, ``t_perm`` [nnz]; all int64 on one device.
    ``validated``: the index data was checked once (ops given this object skip their per-call
    data checks, in Python and in the compiled op).
    """

    indptr: Tensor
    indices: Tensor
    num_segments: int
    num_sources: int
    t_indptr: Tensor
    t_indices: Tensor
    t_perm: Tensor
    validated: bool = True
    _seg: list = field(default_factory=list, repr=False)

    @classmethod
    def from_csr(cls, indptr: Tensor, indices: Tensor, num_sources: int, validate: bool = True) -> "CSR":
        """Build from ``indptr``/``indices``, deriving the transpose.

        With ``validate=True`` (default) the structure is checked once (:func:`check_csr_data`)
        and ops given this object skip their per-call data checks.
        """
        check_index_tensor(indptr, "indptr")
        check_index_tensor(indices, "indices")
        if indptr.numel() < 1:
            raise ValueError("indptr: must have at least one element (S+1 with S >= 0)")
        if validate:
            check_csr_data(indptr, indices, int(num_sources))
        t_indptr, t_indices, t_perm = transpose_csr(indptr, indices, int(num_sources))
        return cls(indptr, indices, indptr.numel() - 1, int(num_sources), t_indptr, t_indices, t_perm, validate)

    @property
    def nnz(self) -> int:
        return int(self.indices.numel())

    @property
    def segment_ids(self) -> Tensor:
        """Segment of every entry, int64 [nnz] (computed once, cached)."""
        if not self._seg:
            self._seg.append(segment_ids(self.indptr, self.nnz))
        return self._seg[0]

    @property
    def counts(self) -> Tensor:
        """Members per segment, int64 [S]."""
        return self.indptr[1:] - self.indptr[:-1]

    def transpose(self) -> "CSR":
        """The opposite direction (segments become sources), sharing tensors where possible."""
        inv_perm = torch.empty_like(self.t_perm)
        inv_perm[self.t_perm] = torch.arange(self.nnz, device=self.t_perm.device)
        return CSR(self.t_indptr, self.t_indices, self.num_sources, self.num_segments,
                   self.indptr, self.indices, inv_perm, self.validated)

    def to(self, device: torch.device | str) -> "CSR":
        """A copy on ``device``."""
        return CSR(*(getattr(self, k).to(device) for k in ("indptr", "indices")),
                   self.num_segments, self.num_sources,
                   *(getattr(self, k).to(device) for k in ("t_indptr", "t_indices", "t_perm")),
                   self.validated)
