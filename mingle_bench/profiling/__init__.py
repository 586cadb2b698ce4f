"""Profilers: how fast the kernel, the models and the text encoders run, on generated inputs.

- :mod:`mingle_bench.profiling.kernel`: the fused segment-attention op against the unfused
  chains (``mingle-bench profile-kernel``, ``benchmarks/bench_ops.py``);
- :mod:`mingle_bench.profiling.models`: one full-graph training epoch, fused op vs reference
  (``mingle-bench profile-model``, ``benchmarks/bench_models.py``);
- :mod:`mingle_bench.profiling.encoders`: encoder throughput on generated concept names and
  notes (``mingle-bench profile-encoder``, ``benchmarks/bench_encoders.py``);
- :mod:`mingle_bench.profiling.random_task_data`: :func:`make_random_task_data`, a seeded
  random ``TaskData`` with real shapes and no real content, for the model profiler and tests.

Who may import this package: the CLI commands (``mingle_bench.commands``), ``benchmarks/`` and
``tests/``. Nothing in the training or data pipeline imports it; the profilers import the
pipeline, never the other way round. Importing the package itself loads none of its modules.
"""
