"""Groupwise scoring with shuffled repeats (GroupRank, arXiv 2511.11653 §3.1; Diver ``rerank_groupwise.py``).

Algorithm, for n candidates, group size c and t repeats:

1. For each repeat r = 1..t, order the candidates (a seeded shuffle per query and repeat when ``shuffle``,
   else the first-stage order) and cut them into ⌈n / c⌉ consecutive groups of at most c.
2. One prompt per group, rendered by :meth:`tasks.groupwise.GroupwiseTask.prompt` (the prompt training and
   synthesis use), asks for a 0-10 score of each of its documents, answered as
   ``<reason>...</reason><answer>```json {"[1]": 7, ...}```</answer>`` and parsed by
   :func:`tasks.parsers_scores.parse_group_scores`; each score is divided by 10.
3. A document's final score is the mean of its t scores (test-time scaling by reshuffling); documents are
   sorted by it, ties in first-stage order.

All groups of all repeats of a query go out in one request list. A group whose answer does not parse gives
all its documents 0 (GroupRank's code) and counts one fallback; a label the answer leaves out scores 0.
The shuffle seed is derived from ``seed``, the query id and the repeat, so a query's groups do not depend on
which other queries are evaluated with it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from core.generation import Sampling
from tasks.groupwise import GROUPRANK_SYSTEM, GROUPRANK_USER, INFERENCE_SAMPLING, MAX_SCORE, GroupwiseTask
from tasks.parsers_scores import parse_group_scores
from tasks.strategy import QueryRun, Ranked, Request


@dataclass(frozen=True)
class Groupwise:
    """GroupRank scoring; ``group_size`` c, ``repeats`` t, ``shuffle`` for random grouping."""

    group_size: int = 20
    repeats: int = 1
    shuffle: bool = True
    seed: int = 0
    sampling: Sampling = INFERENCE_SAMPLING
    task: GroupwiseTask = field(default_factory=GroupwiseTask)

    name = "groupwise"

    def __post_init__(self) -> None:
        if self.group_size < 1 or self.repeats < 1:
            raise ValueError(
                f"groupwise group_size and repeats must be >= 1, got {self.group_size}, {self.repeats}"
            )

    def describe(self) -> dict[str, Any]:
        params = {key: value for key, value in asdict(self).items() if key not in ("sampling", "task")}
        template = {"system": GROUPRANK_SYSTEM, "user": GROUPRANK_USER}
        return {"strategy": self.name, **params, "task": asdict(self.task), "template": template}

    def groups(self, query_id: str, n: int) -> list[list[int]]:
        """Candidate positions of every group of every repeat, repeat by repeat."""
        groups = []
        for repeat in range(self.repeats):
            order = list(range(n))
            if self.shuffle:
                random.Random(f"{self.seed}:{query_id}:{repeat}").shuffle(order)
            groups += [order[i : i + self.group_size] for i in range(0, n, self.group_size)]
        return groups

    def rerank(self, row: Mapping[str, Any]) -> QueryRun:
        """Coroutine scoring one row; yields every group prompt of every repeat at once."""
        candidates = list(row["candidates"])
        groups = self.groups(str(row["query_id"]), len(candidates))
        prompts = (
            self.task.prompt({"query": row["query"], "candidates": [candidates[p] for p in group]})
            for group in groups
        )
        requests = [Request(messages, self.sampling) for messages in prompts]
        answers = yield requests
        totals, fallbacks = [0.0] * len(candidates), 0
        for group, samples in zip(groups, answers, strict=True):
            parsed = parse_group_scores(samples[0].text, len(group))
            fallbacks += not parsed.valid
            for label, position in enumerate(group, 1):
                totals[position] += (parsed.scores or {}).get(label, 0.0) / MAX_SCORE
        means = [total / self.repeats for total in totals]
        order = sorted(range(len(candidates)), key=lambda p: -means[p])
        return Ranked([candidates[p]["doc_id"] for p in order], [means[p] for p in order], fallbacks)
