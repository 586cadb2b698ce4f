"""mingle-bench: benchmarking and ablation toolkit for multimodal EHR prediction around MINGLE.

Data flows one way: source (``data/``) -> cohort -> task (``tasks/``) -> features
(``features.py``, ``encoders/``) -> model (``models/``, ``baselines/``, ``zoo.py``) -> training
-> metrics -> report (``report/``). ``pipeline.py`` is the facade over these stages that ``run``
(``runner.py``), ``tune`` (``tuning.py``) and ``reproduce`` (``reproduce.py``) use; the bottom
modules ``csr.py``, ``devices.py``, ``io.py``, ``progress.py`` and ``results.py`` may be imported
by anything. docs/architecture.md draws the layers; tests/test_architecture.py checks them.

Importing this package imports nothing else, so the CLI starts quickly.
"""

__version__ = "0.2.1"
