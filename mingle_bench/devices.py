"""The one place that turns a device argument into a torch device.

Used by the pipeline facade (``--device`` of run, tune and reproduce), the trainer, the text
encoders and the profilers. Imports nothing of the package, so anything may import it.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def resolve_device(device: "str | torch.device | None", what: str = "--device") -> "torch.device":
    """``auto`` (or ``None``) -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cpu`` and
    ``cuda[:N]`` are checked. ``what`` names the argument in the error (a ``ValueError``)."""
    import torch

    spec = "auto" if device is None else str(device)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", spec):
        if not torch.cuda.is_available():
            raise ValueError(f"{what} {spec}: no CUDA device is visible to torch (use cpu or auto)")
        return torch.device(spec)
    raise ValueError(f"{what} must be auto, cpu or cuda[:N], got {spec!r}")
