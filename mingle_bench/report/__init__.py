"""The report layer: reads finished results folders and writes what people read.

- :mod:`.finalize`: a run folder's comparison, tables, ROC/PR curves and learning curves;
- :mod:`.paper`: the paper's main, ablation and relative-improvement tables from ``paper.json``.

It reads ``mingle_bench.results`` folders and asks the model registry (``mingle_bench.zoo``)
for display names and families; it never trains and never imports the runner, tuning or the
pipeline facade, which import it.
"""
