"""The task registry: a recipe's ``task`` names one of :data:`TASKS`, its ``task_args`` are the task's fields.

Every task implements :class:`tasks.base.Task`; synthesis, training, evaluation and ``--smoke`` build it
here, so they all render the same prompt. ``rankrl tasks`` prints :func:`describe_tasks`.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from core.hints import did_you_mean
from tasks.base import Parsed, Task, expand_rows

TASKS = {  # name -> "module:Class", imported when first used
    "listwise": "tasks.listwise:ListwiseTask",
    "setwise": "tasks.setwise:SetwiseTask",
    "pointwise": "tasks.pointwise:PointwiseTask",
    "rubric": "tasks.rubric:RubricTask",
    "yesno": "tasks.yesno:YesNoTask",
    "groupwise": "tasks.groupwise:GroupwiseTask",
    "math": "tasks.math:MathTask",
}

__all__ = ["TASKS", "Parsed", "Task", "describe_tasks", "expand_rows", "get_task", "task_class"]


def task_class(name: str) -> type:
    """The class registered as ``name``; an unknown name is a one-line ``ValueError`` with a hint."""
    if name not in TASKS:
        known = ", ".join(TASKS)
        raise ValueError(f"unknown task {name!r}{did_you_mean(name, TASKS)}; known tasks: {known}")
    module, _, attribute = TASKS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def get_task(name: str, **options: Any) -> Task:
    """The task ``name`` with its ``task_args`` ``options``; unknown options are one-line errors."""
    cls = task_class(name)
    fields = [f.name for f in dataclasses.fields(cls)]
    for key in options:
        if key not in fields:
            hint, known = did_you_mean(key, fields), ", ".join(fields)
            raise ValueError(f"task_args: unknown option {key!r} of task {name!r}{hint}; known: {known}")
    return cls(**options)


def describe_tasks() -> list[tuple[str, str, str]]:
    """``(name, row kind, summary)`` of every registered task, in registry order."""
    return [(name, task_class(name).row_kind, task_class(name).summary) for name in TASKS]
