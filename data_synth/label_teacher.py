"""The ``labels`` teacher: every synthesis prompt is answered with the task's label-derived target, no model.

Label-only data through the synthesis pipeline: the same units, prompts, cache, agreement, filters, dataset
and card as a model teacher, with each answer being :meth:`tasks.base.Task.target` of the unit's example
built from its labels alone (ReasonRank's ideal order, Rank-R1's most relevant passage, ERank's graded
score, the reference answer of a problem). It is the teacher of ``--smoke`` chains (offline, seconds) and
of label-only baselines: the student learns the answer format and the labels, without a reasoning chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from data_synth.teachers import Completion, OnDone, RequestStats, TeacherCall, TokenBudget


class LabelTeacher:
    """Answers each call with the target of the example it was made for, looked up by the call's key."""

    teacher_id = "labels"

    def __init__(self, answers: Mapping[str, str], budget: TokenBudget | None = None) -> None:
        self.answers, self.budget, self.stats = dict(answers), budget or TokenBudget(), RequestStats()

    def settings(self) -> dict[str, Any]:
        return {"kind": "labels", "model": "labels"}

    async def generate(self, requests: Sequence[TeacherCall], on_done: OnDone) -> None:
        for request in requests:
            text = self.answers[request.key]
            completion = Completion(text, completion_tokens=len(text.split()))
            self.stats.requests += 1
            self.stats.count(completion)
            on_done(request, completion)
        await asyncio.sleep(0)
