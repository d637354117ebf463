"""Retro*'s rubric-score rewards (arXiv 2509.24869 §3.2.2) for TRL's GRPO trainer (task ``rubric``).

Each completion scores one (query, document) pair and ends with ``<score>N</score>``, N in 0..100, parsed by
:func:`tasks.parsers_scores.parse_score_tag`; :meth:`tasks.rubric.RubricTask.reward_columns` gives the
``is_positive`` column. The rewards compare completions with each other:

- ``retro_intra`` (scope ``group``) compares the G completions of one prompt, grouped by the ``group_ids``
  column of the group-aware protocol (:mod:`rewards.groups`).
- ``retro_inter`` (scope ``query``) pairs the completions of a query's positive and negative documents
  within the batch, read from the columns ``query_id`` (any hashable) and ``is_positive`` (bool or 0/1).
  Under rankrl's GRPO trainer the batch is gathered from all processes and the query-grouped sampler
  (``group_by_query: true``) keeps a query's documents together; see ``on_unpaired``.
- ``retro_composite`` (scope ``query``) = alpha · intra + (1 − alpha) · inter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from rewards.groups import group_rows
from rewards.listwise import _column, completion_text
from rewards.registry import register_reward
from tasks.parsers_scores import parse_score_tag

TIES = ("first", "all")
UNPAIRED = ("error", "none")


def retro_scores(completions: Sequence[Any]) -> list[int | None]:
    """Retro*'s 0-100 score of each completion, None where ``<score>N</score>`` does not parse."""
    return [parse_score_tag(completion_text(completion)).value for completion in completions]


def intra_rewards(
    scores: Sequence[float | None], tau: float = 20.0, ties: str = "first", invalid_reward: float = -1.0
) -> list[float]:
    """Retro*'s R_intra over the rollouts of one (query, document) prompt (paper Eq. 1).

    With s̄ the mean of the valid scores: +1 for the rollout closest to s̄, −1 for the furthest, 0 for the
    others, only if |s_far − s̄| >= tau; otherwise all 0. Deviations are compared as |N·s_i − Σ s|, exact for
    integer scores. Ties (design choice): ``first`` picks the first closest, then the first furthest among
    the rest; ``all`` rewards every tied rollout, and one tied for both gets 0. An invalid rollout (None)
    counts as infinitely far (design choice, not from the paper): it gets ``invalid_reward``, the gate
    holds, and the closest valid rollouts get +1; the other valid rollouts get 0.
    """
    rewards = [0.0 if score is not None else float(invalid_reward) for score in scores]
    valid = [index for index, score in enumerate(scores) if score is not None]
    if not valid:
        return rewards
    values = np.array([scores[index] for index in valid], dtype=float)
    deviation = np.abs(len(values) * values - values.sum())
    has_invalid = len(valid) < len(scores)
    if not has_invalid and deviation.max() < tau * len(values):
        return rewards
    closest = np.flatnonzero(deviation == deviation.min())
    furthest = [] if has_invalid else np.flatnonzero(deviation == deviation.max())
    if ties == "first":
        closest = closest[:1]
        furthest = [index for index in furthest if index != closest[0]][:1]
    for position in set(closest) - set(furthest):
        rewards[valid[position]] = 1.0
    for position in set(furthest) - set(closest):
        rewards[valid[position]] = -1.0
    return rewards


def inter_rewards(
    scores: Sequence[float | None], query_ids: Sequence[Hashable], positives: Sequence[bool]
) -> list[float | None]:
    """Retro*'s R_inter (paper Eq. 2): pairwise wins against the opposite documents of the same query.

    Positive rollout i: (1/|neg|) Σ_j 1[s_i⁺ > s_j⁻]; negative rollout j: (1/|pos|) Σ_i 1[s_j⁻ < s_i⁺], over
    all rollouts of the query's negative / positive documents in the batch (the paper has one of each).
    An invalid rollout (None) loses every comparison (design choice): it scores 0 and counts as beaten.
    None for a rollout whose query has no rollout of the opposite kind in the batch. Range [0, 1].
    """
    groups: dict[tuple[Hashable, bool], list[float | None]] = defaultdict(list)
    for score, query_id, positive in zip(scores, query_ids, positives, strict=True):
        groups[(query_id, positive)].append(score)
    sorted_valid = {key: np.sort([s for s in group if s is not None]) for key, group in groups.items()}
    rewards: list[float | None] = []
    for score, query_id, positive in zip(scores, query_ids, positives, strict=True):
        opponents = groups.get((query_id, not positive), [])
        if not opponents:
            rewards.append(None)
            continue
        if score is None:
            rewards.append(0.0)
            continue
        valid = sorted_valid[(query_id, not positive)]
        beaten = (
            np.searchsorted(valid, score, "left")
            if positive
            else len(valid) - np.searchsorted(valid, score, "right")
        )
        rewards.append(float(beaten + len(opponents) - len(valid)) / len(opponents))
    return rewards


@register_reward("retro_intra", scope="group")
def retro_intra_reward(
    completions: list[Any],
    *,
    tau: float = 20.0,
    ties: str = "first",
    invalid_reward: float = -1.0,
    **columns: Any,
) -> list[float]:
    """Retro*'s intra-document consistency reward over the completions of each group (``group_ids``).

    R = :func:`intra_rewards` of the group's scores. Paper constants: tau = 20, the values +1 / −1 / 0.
    Design choices (not from the paper): ``ties`` and ``invalid_reward`` (−1, "treated as furthest").
    Range {−1, 0, 1} ∪ {invalid_reward}.
    """
    _check_intra_options("retro_intra", tau, ties)
    scores = retro_scores(completions)
    rewards = [0.0] * len(scores)
    for rows in group_rows("retro_intra", columns, len(scores)):
        for row, value in zip(
            rows, intra_rewards([scores[r] for r in rows], tau, ties, invalid_reward), strict=True
        ):
            rewards[row] = value
    return rewards


@register_reward("retro_inter", scope="query")
def retro_inter_reward(
    completions: list[Any], *, on_unpaired: str = "error", **columns: Any
) -> list[float | None]:
    """Retro*'s inter-document reward: :func:`inter_rewards` over the batch, by ``query_id``/``is_positive``.

    ``on_unpaired``: a completion whose query has no opposite document in the batch raises ValueError
    (``error``) or gets None (``none``; TRL ignores None in the weighted sum). Range [0, 1] (or None).
    """
    return _inter("retro_inter", completions, columns, on_unpaired)


@register_reward("retro_composite", scope="query")
def retro_composite_reward(
    completions: list[Any],
    *,
    alpha: float = 0.75,
    tau: float = 20.0,
    ties: str = "first",
    invalid_reward: float = -1.0,
    on_unpaired: str = "error",
    **columns: Any,
) -> list[float | None]:
    """Retro*'s reward R = alpha · R_intra + (1 − alpha) · R_inter (arXiv 2509.24869 §3.2.2, Eq. 1-2).

    Paper constants: alpha = 0.75, tau = 20. See :func:`retro_intra_reward` and :func:`retro_inter_reward`
    for the arguments; a completion without an inter reward (``on_unpaired="none"``) gets None. Range with
    the defaults: [−0.75, 1].
    """
    if not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"reward 'retro_composite': alpha must be in [0, 1], got {alpha!r}")
    inter = _inter("retro_composite", completions, columns, on_unpaired)
    intra = retro_intra_reward(completions, tau=tau, ties=ties, invalid_reward=invalid_reward, **columns)
    return [None if b is None else alpha * a + (1.0 - alpha) * b for a, b in zip(intra, inter, strict=True)]


def _inter(
    name: str, completions: list[Any], columns: Mapping[str, Any], on_unpaired: str
) -> list[float | None]:
    if on_unpaired not in UNPAIRED:
        raise ValueError(f"reward {name!r}: unknown on_unpaired {on_unpaired!r}; expected error or none")
    query_ids = _column(name, columns, "query_id", len(completions))
    positives = [_flag(name, value) for value in _column(name, columns, "is_positive", len(completions))]
    try:
        rewards = inter_rewards(retro_scores(completions), query_ids, positives)
    except TypeError as error:
        raise ValueError(f"reward {name!r}: 'query_id' values must be hashable ({error})") from None
    missing = [row for row, reward in enumerate(rewards) if reward is None]
    if missing and on_unpaired == "error":
        raise ValueError(
            f"reward {name!r}: query {query_ids[missing[0]]!r} (row {missing[0]}) has no "
            f"{'negative' if positives[missing[0]] else 'positive'} document in the batch; keep a query's "
            "positive and negative documents in one batch, or set on_unpaired: none"
        )
    return rewards


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)) or value in (0, 1):
        return bool(value)
    raise ValueError(f"reward {name!r}: 'is_positive' must be a bool or 0/1, got {value!r}")


def _check_intra_options(name: str, tau: float, ties: str) -> None:
    if not (isinstance(tau, (int, float)) and tau >= 0):
        raise ValueError(f"reward {name!r}: tau must be a number >= 0, got {tau!r}")
    if ties not in TIES:
        raise ValueError(f"reward {name!r}: unknown ties {ties!r}; expected first or all")
