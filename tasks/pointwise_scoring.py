"""Pointwise reranking: every (query, document) pair scored on its own (ERank; Retro*, arXiv 2509.24869 §3.1).

Algorithm: for each stage ``(depth, samples)`` in ``stages``, the current top ``depth`` documents are scored
with ``samples`` completions each, all of a query's prompts in one request list (so, with the driver, every
pair of every query goes to the backend together, in ``batch_size`` chunks), and re-sorted by score; ties
and the documents below ``depth`` keep their current order. One stage ``[(100, 1)]`` is plain pointwise
reranking; Retro*'s multi-pass ``100@1 -> 30@16`` is ``[(100, 1), (30, 16)]``.

Scorers:

- ``erank``: greedy ``<think>...</think><answer>s</answer>`` with s in 0..10; the score is **s * p(s)**, p(s)
  the probability of the tokens spelling s at that position (from the backend's log-probabilities; 1 when
  the backend gives none). A completion without a valid s scores 0 and counts as a fallback.
- ``retro``: K samples (temperature 0.6, top-k 40) each ending ``<score>N</score>``, N in 0..100; the score is
  the uniform mean of the K values, a failed parse counting 0 (Retro*'s code) and as a fallback.

``Ranked.scores`` holds the final scores for a single stage; with several stages the scores of different
stages are not comparable, so only the order is returned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from core.generation import Generation, Sampling
from tasks.parsers_scores import _int_tag_pattern, parse_int_answer, parse_score_tag
from tasks.prompts import (
    ERANK_INSTRUCTION,
    ERANK_USER,
    RETRO_USER,
    Messages,
    erank_messages,
    retro_definition,
    retro_messages,
)
from tasks.strategy import QueryRun, Ranked, Request, passage_text

SCORERS = ("erank", "retro")


def parse_stages(text: str) -> list[tuple[int, int]]:
    """``"100@1,30@16"`` -> ``[(100, 1), (30, 16)]`` (depth@samples, comma separated)."""
    stages = []
    for part in text.split(","):
        depth, sep, samples = part.strip().partition("@")
        if not (sep and depth.isdigit() and samples.isdigit() and int(depth) > 0 and int(samples) > 0):
            raise ValueError(f"pointwise stages {text!r}: expected depth@samples[,depth@samples...]")
        stages.append((int(depth), int(samples)))
    return stages


def erank_score(generation: Generation) -> float | None:
    """ERank's s * p(s) of one greedy completion, or None when no integer 0..10 answer parses."""
    value = parse_int_answer(generation.text, 0, 10).value
    if value is None:
        return None
    match = _int_tag_pattern("answer").search(generation.text)
    if match is None or not generation.token_logprobs:
        return float(value)
    return value * math.exp(_span_logprob(generation, *match.span(1)))


def _span_logprob(generation: Generation, start: int, end: int) -> float:
    """Sum of the log-probabilities of the tokens overlapping characters ``[start, end)`` of the text."""
    total, offset = 0.0, 0
    for piece, logprob in zip(generation.token_texts, generation.token_logprobs, strict=True):
        if offset < end and offset + len(piece) > start:
            total += logprob
        offset += len(piece)
    return total


def retro_score(samples: Sequence[Generation]) -> tuple[float, int]:
    """Retro*'s mean-score@K of one pair and how many samples failed to parse (each counted as 0)."""
    values = [parse_score_tag(sample.text).value for sample in samples]
    failures = sum(value is None for value in values)
    return sum(value or 0 for value in values) / max(len(values), 1), failures


@dataclass(frozen=True)
class Pointwise:
    """Pointwise scoring with ``scorer`` in :data:`SCORERS` over the ``stages`` (module docstring)."""

    scorer: str = "erank"
    stages: tuple[tuple[int, int], ...] = ((100, 1),)
    instruction: str = ""
    max_passage_words: int = 300
    sampling: Sampling = field(default_factory=Sampling)

    name = "pointwise"

    def __post_init__(self) -> None:
        if self.scorer not in SCORERS:
            raise ValueError(f"pointwise scorer {self.scorer!r}; expected one of {', '.join(SCORERS)}")

    @classmethod
    def paper_defaults(cls, scorer: str, max_new_tokens: int = 4096, **kwargs: Any) -> Pointwise:
        """ERank: greedy with log-probabilities; Retro*: temperature 0.6, top-k 40."""
        if scorer == "retro":
            sampling = Sampling(max_new_tokens=max_new_tokens, temperature=0.6, top_k=40)
        else:
            sampling = Sampling(max_new_tokens=max_new_tokens, logprobs=True)
        return cls(scorer=scorer, sampling=sampling, **kwargs)

    def describe(self) -> dict[str, Any]:
        template = RETRO_USER if self.scorer == "retro" else ERANK_USER
        return {
            "strategy": self.name,
            "scorer": self.scorer,
            "stages": [list(stage) for stage in self.stages],
            "instruction": self._instruction(),
            "max_passage_words": self.max_passage_words,
            "template": {"user": template},
        }

    def _instruction(self) -> str:
        return self.instruction or (retro_definition() if self.scorer == "retro" else ERANK_INSTRUCTION)

    def prompt(self, query: str, text: str) -> Messages:
        """ERank's or Retro*'s prompt over the passage cut to ``max_passage_words``."""
        doc = passage_text(text, self.max_passage_words)
        if self.scorer == "retro":
            return retro_messages(query, doc, self._instruction())
        return erank_messages(query, doc, self._instruction())

    def rerank(self, row: Mapping[str, Any]) -> QueryRun:
        """Coroutine scoring one row's pairs stage by stage; yields all of a stage's prompts at once."""
        ranking, scores, fallbacks = list(row["candidates"]), None, 0
        for depth, samples in self.stages:
            top = ranking[:depth]
            sampling = replace(self.sampling, num_samples=samples)
            answers = yield [Request(self.prompt(row["query"], c["text"]), sampling) for c in top]
            stage_scores, failures = self._scores(answers)
            fallbacks += failures
            order = sorted(range(len(top)), key=lambda i: -stage_scores[i])
            ranking = [top[i] for i in order] + ranking[depth:]
            scores = [stage_scores[i] for i in order]
        single = len(self.stages) == 1 and len(scores or []) == len(ranking)
        return Ranked([c["doc_id"] for c in ranking], scores if single else None, fallbacks)

    def _scores(self, answers: list[list[Generation]]) -> tuple[list[float], int]:
        if self.scorer == "retro":
            pairs = [retro_score(samples) for samples in answers]
            return [score for score, _ in pairs], sum(failed for _, failed in pairs)
        values = [erank_score(samples[0]) for samples in answers]
        return [value or 0.0 for value in values], sum(value is None for value in values)
