"""Votes over discrete answers: self-consistency's majority and its score-weighted form.

Synthesis agrees on a unit's teacher samples with :func:`majority_vote` (setwise labels, final math
answers) and ``rankrl tts`` picks a problem's answer with either (Wang et al. 2022, self-consistency,
arXiv 2203.11171 §2: the most frequent final answer; weighted: the largest sum of the samples' scores).
``None`` abstains. A tie goes to the tied answer seen first, so the winner depends only on the order of
the samples, never on hashing.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

Answer = TypeVar("Answer", bound=Hashable)


def weighted_vote(answers: Sequence[Answer | None], weights: Sequence[float]) -> tuple[Answer, float] | None:
    """``(answer with the largest total weight, that total)`` over the non-None answers, ties to the one
    seen first; None when every answer abstains. Weights must be >= 0 (a reward in [0, 1] or a reward
    model's probability)."""
    if any(weight < 0 for weight in weights):
        raise ValueError(f"weighted voting needs non-negative weights, got {min(weights)}")
    totals: dict[Answer, float] = {}
    for answer, weight in zip(answers, weights, strict=True):
        if answer is not None:
            totals[answer] = totals.get(answer, 0) + weight
    if not totals:
        return None
    winner = max(totals, key=totals.__getitem__)  # the first maximal key: the earliest first occurrence
    return winner, totals[winner]


def majority_vote(answers: Sequence[Answer | None]) -> tuple[Answer, int] | None:
    """``(most frequent non-None answer, its count)``, ties to the one seen first; None without one."""
    result = weighted_vote(answers, [1] * len(answers))
    return None if result is None else (result[0], int(result[1]))
