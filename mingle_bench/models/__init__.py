"""Models: the model contract (:mod:`.base`), the registry (:mod:`.registry`), MINGLE and its
ablations (:mod:`.mingle`), and the layers MINGLE and HyperGAT share (:mod:`.layers`).

Importing this package imports no model module and nothing of ``mingle_bench.baselines``. Every
registered model (MINGLE's variants here, the baselines in ``baselines/``) is imported by the one
explicit list in :mod:`mingle_bench.zoo`; the lookups ``get_model``, ``list_models``,
``model_family`` and ``display_name`` are imported from there.
"""
from __future__ import annotations

from mingle_bench.models.base import EHRModel
from mingle_bench.models.registry import FAMILIES, register_model

__all__ = ["EHRModel", "FAMILIES", "register_model"]
