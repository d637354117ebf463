"""Pointwise 0-10 relevance scoring in ERank's format (arXiv 2509.00520 §3, Fig. 5; HF model card examples).

The model sees one query and one document under ERank's prompt, with a relevance definition (``instruction``;
Table 7's BEIR / TREC one by default), and answers ``<think>...</think><answer>s</answer>``, s an integer in
0..10. An example is one (query, document) pair (:class:`tasks.pointwise_scoring.PairTask`: ERank §3.2 takes
1 positive + 19 negatives per query). The SFT target is the teacher's answer, or without one
``<think></think><answer>10</answer>`` for a relevant document (grade > 0) and ``...<answer>0</answer>``
otherwise. GRPO scores with ERank's r_RR (``erank_rr``, :mod:`rewards.erank`), which reads ``is_positive``
and the reference score ``ref_score``.

Inference (:class:`tasks.pointwise_scoring.Pointwise`, greedy, 4096 new tokens, with log-probabilities)
ranks by **s · p(s)**, p(s) the probability of the tokens spelling s at the answer's position (1 when the
backend gives no log-probabilities); a completion without a valid s scores 0 and counts as a fallback. A
stage with several samples averages s · p(s) over them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from core.generation import Generation, Messages, Sampling
from tasks.base import Parsed
from tasks.parsers_scores import int_tag_pattern, parse_int_answer
from tasks.pointwise_scoring import PairTask, mean_score, template_pieces
from tasks.strategy import passage_text

MAX_SCORE = 10
ERANK_USER = (  # ERank Fig. 5
    "Given a query and a document, please give a relevance score of 0 to 10. The goal or relevance "
    "definition is: {instruction}\n\nHere is the query: {query}\nHere is the document: {document}\n"
    "After thinking, directly choose a relevance score from [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].\n"
    "- 0 represents completely not related.\n- 10 means perfectly related.\nDesired output format:\n"
    "<think>put your thinking here</think><answer>Only allows an integer here</answer>\nYour output:"
)
ERANK_INSTRUCTION = "Given a query, retrieval relevant passage."  # ERank Table 7, BEIR / TREC


def erank_messages(query: str, document: str, instruction: str = ERANK_INSTRUCTION) -> Messages:
    """ERank's 0-10 pointwise prompt (a single user turn)."""
    content = ERANK_USER.format(instruction=instruction, query=query, document=document)
    return [{"role": "user", "content": content}]


def erank_score(generation: Generation) -> float | None:
    """ERank's s * p(s) of one completion, or None when no integer 0..10 answer parses."""
    value = parse_int_answer(generation.text, 0, MAX_SCORE).value
    if value is None:
        return None
    match = int_tag_pattern("answer").search(generation.text)
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


@dataclass(frozen=True)
class PointwiseTask(PairTask):
    """ERank's pointwise task: score one passage 0-10 under the relevance definition ``instruction``."""

    negatives_per_query: int = 19
    instruction: str = ERANK_INSTRUCTION

    name: ClassVar[str] = "pointwise"
    summary: ClassVar[str] = (
        "ERank: score one passage 0-10 after reasoning, <answer>7</answer>; ranks by s*p(s)"
    )
    default_rewards: ClassVar[tuple[Any, ...]] = ("erank_rr",)
    top_score: ClassVar[int] = MAX_SCORE
    user_template: ClassVar[str] = ERANK_USER
    default_sampling: ClassVar[Sampling] = Sampling(max_new_tokens=4096, logprobs=True)

    def prompt(self, example: Mapping[str, Any]) -> Messages:
        """ERank's prompt (one user turn) for the example's document cut to ``max_passage_words``."""
        document = passage_text(example["candidates"][0]["text"], self.max_passage_words)
        return erank_messages(example["query"], document, self.instruction)

    def target(self, example: Mapping[str, Any]) -> str:
        """SFT completion: the teacher's answer, or the label's score after an empty think (module
        docstring)."""
        if example.get("completion"):
            return example["completion"]
        return f"<think></think><answer>{self.label_score(example)}</answer>"

    def parse(self, example: Mapping[str, Any], text: str) -> Parsed:
        """The score s of ``<think>...</think><answer>s</answer>``, s in 0..10, else the parser's reason."""
        score = parse_int_answer(text, 0, MAX_SCORE, require_think=True)
        return Parsed(score.value) if score.valid else Parsed(reason=score.reason)

    def score(self, generations: Sequence[Generation]) -> tuple[float, int]:
        """The mean s * p(s) of one pair's completions (a failed one counts 0) and how many failed."""
        return mean_score([erank_score(generation) for generation in generations])

    def template_phrases(self) -> list[str]:
        """ERank's prompt text around the query and the document, instruction included."""
        return template_pieces(ERANK_USER, instruction=self.instruction)
