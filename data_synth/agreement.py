"""Multi-sample agreement: the consensus pick over scores.

The majority vote over discrete answers (setwise labels, judgements, final math answers) is
:func:`tasks.voting.majority_vote`, the vote ``rankrl tts`` uses too; GroupRank's mean of score vectors is
:func:`tasks.groupwise.mean_scores`.

- :func:`consensus_index` / :func:`consensus_pick`: the sample whose score (or score vector, for GroupRank's
  per-passage scores) lies closest to the mean of the valid samples, as ERank (3 teacher samples; arXiv
  2509.00520 §3.2, App. C) and Retro* (8 samples; arXiv 2509.24869) keep their training sample. Distance is
  Euclidean; a tie goes to the earlier sample.

Hand-written because it is a few lines over the standard library; invalid samples are ``None`` and never
win.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Score = float | Sequence[float]


def _vector(score: Score) -> tuple[float, ...]:
    return (float(score),) if isinstance(score, (int, float)) else tuple(float(x) for x in score)


def consensus_index(scores: Sequence[Score | None]) -> int | None:
    """Index of the valid score closest to the mean of the valid scores; None when none is valid.

    Vector scores must all have the same length (GroupRank: one score per passage of the group).
    """
    valid = [(i, _vector(score)) for i, score in enumerate(scores) if score is not None]
    if not valid:
        return None
    width = len(valid[0][1])
    if any(len(vector) != width for _, vector in valid):
        raise ValueError("consensus_index: score vectors differ in length")
    mean = [sum(vector[d] for _, vector in valid) / len(valid) for d in range(width)]
    return min(valid, key=lambda item: (math.dist(item[1], mean), item[0]))[0]


def consensus_pick(samples: Sequence[tuple[str, Score | None]]) -> tuple[str, Score] | None:
    """The ``(text, score)`` sample closest to the mean score (as ERank, Retro*); None if none is valid."""
    index = consensus_index([score for _, score in samples])
    return None if index is None else samples[index]
