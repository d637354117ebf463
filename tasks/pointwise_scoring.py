"""Pointwise reranking, shared by ERank (arXiv 2509.00520, :mod:`tasks.pointwise`) and Retro* (arXiv
2509.24869, :mod:`tasks.rubric`): every (query, document) pair is one example and one prompt, scored alone.

Examples (:class:`PairTask`): a ranking row gives one example per chosen document, the row narrowed to that
one candidate and its label, ``example_id`` ``json.dumps([query_id, doc_id])``. The documents are the row's
first ``positives_per_query`` labelled positives and first ``negatives_per_query`` candidates graded 0 or
unlabelled (hardest first; ERank §3.2: 1 + 19, Retro* §4: 1 + 1); a row without either gives none
(``no_positive`` / ``no_negative``).

Ranking (:class:`Pointwise`): for each stage ``(depth, samples)`` of ``stages``, the current top ``depth``
documents are scored with ``samples`` completions each, all of a query's prompts in one request list (so,
with :func:`tasks.strategy.rerank_rows`, every pair of every query goes to the backend together), and
re-sorted by score; ties and the documents below ``depth`` keep their current order. One stage
``[(100, 1)]`` is plain pointwise reranking; Retro*'s multi-pass ``100@1 -> 30@16`` (§3.1) is
``[(100, 1), (30, 16)]``. The score of one pair is the task's: ``task.score(generations)`` returns the score
and how many of the generations failed to parse (counted as ``Ranked.fallbacks``). ``Ranked.scores`` holds
the scores of a single stage; the scores of different stages are not comparable, so with several stages only
the order is returned.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, Protocol

from core.data import labels_to_qrels
from core.generation import Generation, Messages, Sampling
from tasks.base import RankingTask, check_at_least_one, labelled_split
from tasks.strategy import QueryRun, Ranked, Request, StrategyOptions


def parse_stages(text: str) -> list[tuple[int, int]]:
    """``"100@1,30@16"`` -> ``[(100, 1), (30, 16)]`` (depth@samples, comma separated)."""
    stages = []
    for part in text.split(","):
        depth, sep, samples = part.strip().partition("@")
        if not (sep and depth.isdigit() and samples.isdigit() and int(depth) > 0 and int(samples) > 0):
            raise ValueError(f"pointwise stages {text!r}: expected depth@samples[,depth@samples...]")
        stages.append((int(depth), int(samples)))
    return stages


def pair_example(row: Mapping[str, Any], candidate: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` narrowed to ``candidate`` and its label; the teacher columns describe the whole list (or
    another task's teacher), so they are cleared."""
    labels = [label for label in row.get("labels") or [] if label["doc_id"] == candidate["doc_id"]]
    cleared = {"teacher_order": [], "reasoning": "", "teacher_scores": [], "completion": ""}
    return {**row, "candidates": [dict(candidate)], "labels": labels, **cleared}


def mean_score(values: Sequence[float | None]) -> tuple[float, int]:
    """The uniform mean of ``values`` with each None (a failed parse) counted as 0, and how many were None."""
    failures = sum(value is None for value in values)
    return sum(value or 0.0 for value in values) / max(len(values), 1), failures


class ScoringTask(Protocol):
    """What :class:`Pointwise` needs from a task."""

    name: ClassVar[str]
    user_template: ClassVar[str]

    def prompt(self, example: Mapping[str, Any]) -> Messages: ...

    def score(self, generations: Sequence[Generation]) -> tuple[float, int]: ...


@dataclass(frozen=True)
class Pointwise:
    """Pointwise reranking of ``task`` over the ``stages`` (module docstring); ``sampling.num_samples`` is
    set per stage."""

    task: ScoringTask
    stages: tuple[tuple[int, int], ...] = ((100, 1),)
    sampling: Sampling = field(default_factory=Sampling)

    name = "pointwise"

    def describe(self) -> dict[str, Any]:
        return {
            "strategy": self.name,
            "stages": [list(stage) for stage in self.stages],
            "task": self.task.name,
            "task_args": asdict(self.task),
            "template": {"user": self.task.user_template},
        }

    def rerank(self, row: Mapping[str, Any]) -> QueryRun:
        """Coroutine scoring one row's pairs stage by stage; yields all of a stage's prompts at once."""
        ranking, scores, fallbacks = list(row["candidates"]), None, 0
        for depth, samples in self.stages:
            top = ranking[:depth]
            sampling = replace(self.sampling, num_samples=samples)
            answers = yield [Request(self.task.prompt(pair_example(row, c)), sampling) for c in top]
            scored = [self.task.score(generations) for generations in answers]
            fallbacks += sum(failures for _, failures in scored)
            order = sorted(range(len(top)), key=lambda i: -scored[i][0])
            ranking = [top[i] for i in order] + ranking[depth:]
            scores = [scored[i][0] for i in order]
        single = len(self.stages) == 1 and len(scores or []) == len(ranking)
        return Ranked([c["doc_id"] for c in ranking], scores if single else None, fallbacks)


@dataclass(frozen=True)
class PairTask(RankingTask):
    """What the pointwise tasks share: examples, reward columns, the strategy, synthesis and toy rows.

    A subclass sets ``name``, ``summary``, ``default_rewards``, ``top_score`` (its scale's maximum, the score
    a positive's label-built target gets; a negative's is 0), ``user_template`` and ``default_sampling`` (its
    paper's inference decoding), and implements ``prompt``, ``target``, ``parse``, ``score`` and
    ``template_phrases``.
    """

    positives_per_query: int = 1
    negatives_per_query: int = 1
    max_passage_words: int = 300

    agreement: ClassVar[str] = "consensus"
    top_score: ClassVar[int]
    default_sampling: ClassVar[Sampling]

    def __post_init__(self) -> None:
        check_at_least_one(self, "positives_per_query", "negatives_per_query", "max_passage_words")

    def examples(self, row: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """One example per chosen (query, document) pair (module docstring)."""
        positives, negatives, reason = labelled_split(row, self.positives_per_query, self.negatives_per_query)
        return [
            {
                **pair_example(row, candidate),
                "task": self.name,
                "example_id": json.dumps([row["query_id"], candidate["doc_id"]], ensure_ascii=False),
            }
            for candidate in positives + negatives
        ], reason

    def relevance(self, example: Mapping[str, Any]) -> int:
        """The grade of the example's document (0 when unlabelled)."""
        qrels = labels_to_qrels(example.get("labels") or [])
        return qrels.get(example["candidates"][0]["doc_id"], 0)

    def label_score(self, example: Mapping[str, Any]) -> int:
        """The score a target built from the labels states: ``top_score`` for a relevant document (grade > 0),
        0 otherwise (both papers train on one positive against negatives, so grades are not scaled)."""
        return self.top_score if self.relevance(example) > 0 else 0

    def reward_columns(self, example: Mapping[str, Any]) -> dict[str, Any]:
        """``is_positive`` (grade > 0) and ``relevance`` (the grade), which ERank's and Retro*'s rewards pair
        by ``query_id``, and ``ref_score``: ERank's reference score t, the teacher's score when the example
        has one, else :meth:`label_score` (Retro*'s rewards do not read it)."""
        teacher = example.get("teacher_scores") or []
        reference = float(teacher[0]) if teacher else float(self.label_score(example))
        relevance = self.relevance(example)
        return {"is_positive": relevance > 0, "relevance": relevance, "ref_score": reference}

    def strategy(self, options: StrategyOptions) -> Pointwise:
        """Pointwise reranking over ``options.stages`` with the paper's decoding unless overridden."""
        stages = tuple(parse_stages(options.stages))
        return Pointwise(self, stages, options.sampling(self.default_sampling))

    def accept(self, example: Mapping[str, Any], value: Any) -> str | None:
        """Any parsed score: both papers keep the teacher sample closest to the mean (``consensus``)."""
        return None

    def teacher_example(
        self, example: Mapping[str, Any], text: str, value: Any, values: Sequence[Any]
    ) -> dict[str, Any]:
        """The example with the teacher's answer as its SFT target and its score as ``teacher_scores``."""
        return {**example, "completion": text.strip(), "teacher_scores": [float(value)]}


def template_pieces(template: str, **constants: str) -> list[str]:
    """The constant stretches of ``template`` rendered with ``constants``, its other fields left out (the
    phrases a tiny test tokenizer keeps whole)."""
    fields = {name: "\0" for name in ("query", "document", "doc")} | constants
    pieces = template.format(**fields).split("\0")
    return sorted({piece.strip(" \n") for piece in pieces if len(piece.strip()) > 1})
