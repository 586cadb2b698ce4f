"""Prediction tasks (installed as ``mingle_bench.tasks``): a cohort in, labelled samples out.

What lives here: the task contract and note policies (:mod:`.base`), the name registry
(:mod:`.registry`), one module per task, and the phenotype definitions. Importing this package
registers every task, from the explicit list below; look them up with :func:`get_task` and
:func:`list_tasks`. Tasks import the cohort types of ``mingle_bench.data`` only; the feature,
model and training stages import tasks, never the other way round.

Adding a task: one module with a :class:`~.base.Task` subclass decorated by
:func:`~.registry.register_task`, plus its name in the import line below.
"""
from .base import Task, TaskSamples
from .registry import get_task, list_tasks, register_task
from . import cvd, los, mortality, phenotype, readmission  # noqa: E402,F401  (registers the tasks)

__all__ = ["Task", "TaskSamples", "get_task", "list_tasks", "register_task"]
