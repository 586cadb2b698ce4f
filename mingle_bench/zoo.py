"""The model zoo: every registered model, imported from one explicit list.

:data:`MODEL_MODULES` names each module that registers models; importing this module imports them
all, so the lookups re-exported here see every model. This module sits above
``mingle_bench.models`` and ``mingle_bench.baselines`` in the layering: it imports both, and
neither imports it (nor ``models`` the baselines), so there is no import cycle.

Adding a model: write one module that decorates its class with
:func:`~mingle_bench.models.registry.register_model` (its family and display name included) and
add one line to :data:`MODEL_MODULES` (and to the imports below).

Public API: :func:`get_model`, :func:`list_models`, :func:`model_family`, :func:`display_name`,
:func:`model_entry`, :data:`FAMILIES`.
"""
from __future__ import annotations

from mingle_bench.baselines import (codes_notes_lr, gbm, gram, hypehr, hypergat, logreg, note_mlp, prior, retain,
                                   set_transformer, tfidf_lr)
from mingle_bench.models import mingle
from mingle_bench.models.registry import (
    FAMILIES,
    ModelEntry,
    display_name,
    get_model,
    list_models,
    model_entry,
    model_family,
)

#: every module that registers models, in registration order
MODEL_MODULES = (mingle, hypehr, retain, gram, hypergat, logreg, note_mlp, set_transformer, prior, tfidf_lr,
                 codes_notes_lr, gbm)

__all__ = ["FAMILIES", "MODEL_MODULES", "ModelEntry", "display_name", "get_model", "list_models",
           "model_entry", "model_family"]
