"""Baselines and reference models, installed as ``mingle_bench.baselines``.

Each model module (``retain``, ``gram``, ``hypergat``, ``hypehr``, ``logreg``, ``note_mlp``,
``set_transformer``, and the references ``prior``, ``tfidf_lr``, ``codes_notes_lr``, ``gbm``)
registers itself on import; :mod:`mingle_bench.zoo` lists and imports them. ``ontology`` (GRAM's
code ancestors), ``sequence`` (ragged batch views for the sequence and set models) and
``text_features`` (TF-IDF, bag of codes, code counts of the references) are helpers, not models.
Modules here may import ``mingle_bench.models.base``,
``.registry`` and ``.layers``; nothing in ``mingle_bench.models`` imports this package.
"""
