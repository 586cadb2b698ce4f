"""Prediction tasks (installed as ``mingle_bench.tasks``): one module per task, looked up by
name with :func:`get_task`; :func:`list_tasks` lists them."""
from .base import Task, TaskSamples
from .registry import get_task, list_tasks, register_task

__all__ = ["Task", "TaskSamples", "get_task", "list_tasks", "register_task"]
