"""EHR cohort sources.

- :mod:`~mingle_bench.data.cohort`: the :class:`Cohort` tables every later stage reads.
- :mod:`~mingle_bench.data.sources`: ``load_source(spec)`` / ``data_id(spec)`` with the content-keyed cache.
- :mod:`~mingle_bench.data.mimic3`, :mod:`~mingle_bench.data.mimic4`: PhysioNet folders through DuckDB.
- :mod:`~mingle_bench.data.synthetic`: the MIMIC-III-shaped synthetic generator and its data card.
- :mod:`~mingle_bench.data.build`, :mod:`~mingle_bench.data.csvio`, :mod:`~mingle_bench.data.report`:
  shared cleaning SQL, CSV reading with counted rejects, and the load report.

The first stage: modules here import only each other and the bottom modules (``io``,
``progress``); every later stage may import them, and nothing here imports a later stage.
"""
