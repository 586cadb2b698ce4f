"""mingle-bench: benchmarking and ablation toolkit for multimodal EHR prediction around MINGLE."""

__version__ = "0.2.0"
