"""Rewards for the group-protocol tests: real group / query rewards that also record what they saw.

Each call appends one JSON line to ``$RANKRL_RECORD_DIR/rank<RANK>.jsonl``: the gathered batch (completions,
group ids, query ids, candidates) and the values computed for the whole batch, so a test can recompute
the rewards in one process and compare.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from rewards.consensus import group_consensus_reward
from rewards.listwise import completion_text
from rewards.progress import mrt_progress_reward


def _record(name: str, completions: list[Any], values: list[float], columns: dict[str, Any]) -> None:
    folder = os.environ.get("RANKRL_RECORD_DIR")
    if not folder:
        return
    entry = {
        "reward": name,
        "step": getattr(columns.get("trainer_state"), "global_step", None),
        "completions": completions,
        "values": values,
        **{key: columns.get(key) for key in ("group_ids", "query_id", "candidates")},
    }
    with (Path(folder) / f"rank{os.environ.get('RANK', '0')}.jsonl").open("a") as handle:
        handle.write(json.dumps(entry) + "\n")


def as_answers(completions: list[Any]) -> list[str]:
    """Each completion's text as the answer of a well-formed think/answer output."""
    return [f"<think></think><answer>{completion_text(c)}</answer>" for c in completions]


def recorded_consensus(completions: list[Any], **columns: Any) -> list[float]:
    """``group_consensus`` on :func:`as_answers` with lenient parsing (varied values on an untrained
    model's text), recorded."""
    values = group_consensus_reward(as_answers(completions), mode="lenient", **columns)
    _record("recorded_consensus", completions, values, columns)
    return values


recorded_consensus.reward_scope = "group"


def length_rank(completions: list[Any], query_ids: list[Any]) -> list[float]:
    """Cross-prompt: the share of the query's other completions (any prompt) with a shorter text."""
    lengths = [len(completion_text(c)) for c in completions]
    values = []
    for length, query in zip(lengths, query_ids, strict=True):
        others = [other for other, q in zip(lengths, query_ids, strict=True) if q == query]
        values.append(sum(other < length for other in others) / max(len(others) - 1, 1))
    return values


def recorded_length_rank(completions: list[Any], **columns: Any) -> list[float]:
    """:func:`length_rank` over the query's completions, recorded."""
    values = length_rank(completions, columns["query_id"])
    _record("recorded_length_rank", completions, values, columns)
    return values


recorded_length_rank.reward_scope = "query"


def text_length(completions: list[Any], **columns: Any) -> list[float]:
    """Characters in the completion / 100: a reward that varies on any text, so GRPO always updates."""
    return [len(completion_text(c)) / 100 for c in completions]


def stall_on_rank_one(completions: list[Any], **columns: Any) -> list[float]:
    """Sleeps 60 s on rank 1 only, so rank 0 waits in the next collective until ``ddp_timeout``."""
    if os.environ.get("RANK") == "1":
        time.sleep(60)
    return [0.0] * len(completions)


def progress_bonus(completions: list[Any], *, generate: Any, **columns: Any) -> list[float]:
    """MRT's progress bonus with the reference answer "1", cheap settings (K = 2, 4 new tokens)."""
    settings = {"num_samples": 2, "max_new_tokens": 4, "group_size": 1, "min_gap": 1}
    answers = ["1"] * len(completions)
    return mrt_progress_reward(completions, generate=generate, answer=answers, **settings, **columns)


progress_bonus.uses_generator = True
