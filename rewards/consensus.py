"""Group-consensus rewards: agreement of each listwise completion with the consensus of its group.

For the G completions of one prompt (scope ``group``, :mod:`rewards.groups`), the valid rankings (both of
ReasonRank's gates passed in ``mode``) are aggregated with Borda's count: a ranking of n documents gives
n − r points to the document at rank r (0-based); the consensus orders documents by total points, ties in
prompt order. Each valid completion is rewarded by its agreement with that consensus:

- ``kendall``: Kendall's τ-a between the two rankings of the n candidates, in [−1, 1]
  (:func:`rewards.metrics.kendall_tau`);
- ``rbo``: rank-biased overlap with persistence ``rbo_p`` (:func:`rewards.metrics.rbo`), in [0, 1].

A completion that fails a gate gets ``invalid_reward`` (−1) and does not vote. The consensus includes the
completion being scored (with G = 8 each vote is 1/8 of it). This is a label-free, self-consistency style
signal (cf. test-time RL's majority-vote rewards); weight it against a ranking-metric reward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rewards.groups import group_rows
from rewards.listwise import _doc_ids, _gate_or_rank
from rewards.metrics import kendall_tau, rbo
from rewards.registry import register_reward

AGREEMENTS = ("kendall", "rbo")


def borda_consensus(rankings: Sequence[Sequence[str]], doc_ids: Sequence[str]) -> list[str]:
    """Borda aggregate of full rankings of ``doc_ids``; ties keep the order of ``doc_ids``."""
    points = dict.fromkeys(doc_ids, 0)
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking):
            points[doc_id] += len(ranking) - rank
    return sorted(doc_ids, key=lambda doc_id: -points[doc_id])


@register_reward("group_consensus", scope="group")
def group_consensus_reward(
    completions: list[Any],
    *,
    agreement: str = "kendall",
    rbo_p: float = 0.9,
    mode: str = "strict",
    invalid_reward: float = -1.0,
    **columns: Any,
) -> list[float]:
    """Agreement of each completion's ranking with its group's Borda consensus (see the module docstring)."""
    if agreement not in AGREEMENTS:
        raise ValueError(
            f"reward 'group_consensus': unknown agreement {agreement!r}; expected kendall or rbo"
        )
    gates, rankings = _gate_or_rank(
        "group_consensus", completions, columns, mode, invalid_reward, invalid_reward
    )
    rewards = [float(invalid_reward)] * len(completions)
    for rows in group_rows("group_consensus", columns, len(completions)):
        voters = [row for row in rows if gates[row] is None]
        if not voters:
            continue
        doc_ids = _doc_ids("group_consensus", columns["candidates"][voters[0]])
        consensus = borda_consensus([rankings[row] for row in voters], doc_ids)
        for row in voters:
            ranking = rankings[row]
            rewards[row] = (
                kendall_tau(ranking, consensus)
                if agreement == "kendall"
                else rbo(ranking, consensus, p=rbo_p)
            )
    return rewards
