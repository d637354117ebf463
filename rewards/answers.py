"""The outcome reward of reasoners: 1.0 when the final answer of a completion is equivalent to the reference.

Answer extraction and equivalence are :mod:`tasks.answers` (the math task's own, shared with synthesis and
``rankrl tts``): the final answer is read from what the completion writes after its last ``</think>``
(``####``, the last ``\\boxed{}``, ``<answer>`` tags, a ``Final answer:`` line, else that whole text) and
matches when the normal forms agree or math-verify finds the two equal within its time bound.
"""

from __future__ import annotations

from typing import Any

from rewards.listwise import _column, completion_text
from rewards.registry import register_reward
from tasks.answers import END_THINK, answers_match


@register_reward("answer_match")
def answer_match_reward(completions: list[Any], **columns: Any) -> list[float]:
    """1.0 when the final answer after the last ``</think>`` (or of the whole text) is equivalent to the
    ``answer`` column, else 0.0."""
    references = _column("answer_match", columns, "answer", len(completions))
    answers = [completion_text(completion).rsplit(END_THINK, 1)[-1] for completion in completions]
    return [float(answers_match(a, str(r))) for a, r in zip(answers, references, strict=True)]
