"""Tasks: a prompt builder, an SFT target and an inference parser that a recipe names by ``task``.

Later tasks (setwise, pointwise, groupwise, reasoning) register here under their names.
"""

from __future__ import annotations

import dataclasses
import difflib

from tasks.listwise import ListwiseTask

TASKS = {"listwise": ListwiseTask}


def get_task(name: str, **kwargs) -> ListwiseTask:
    """Instantiate the task registered as ``name`` with its options from the recipe."""
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown task {name!r}{hint}; known tasks: {', '.join(sorted(TASKS))}")
    options = [f.name for f in dataclasses.fields(TASKS[name])]
    for key in kwargs:
        if key not in options:
            close = difflib.get_close_matches(key, options, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(options)
            raise ValueError(f"task_args: unknown option {key!r} of task {name!r}{hint}; known: {known}")
    return TASKS[name](**kwargs)
