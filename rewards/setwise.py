"""Setwise reranking reward (Rank-R1) for TRL's GRPO trainer.

The model sees a query and passages labelled ``[1]..[n]`` and answers with the label of the most relevant
one: ``<think>...</think> <answer>[k]</answer>``. Dataset column, one entry per completion:

- ``gold_label``: the label of the relevant passage, an int k >= 1 or the string ``"[k]"`` (Rank-R1's
  ``ground_truth`` column holds the string).

Rewards are finite floats for any completion text; a malformed dataset row raises ValueError.
"""

from __future__ import annotations

import re
from typing import Any

from rewards.listwise import _column, completion_text
from rewards.registry import register_reward
from tasks.parsers import parse_setwise_label

_GOLD_LABEL = re.compile(r"\[([1-9][0-9]{0,8})\]")


@register_reward("rank_r1_setwise")
def rank_r1_setwise_reward(completions: list[Any], *, lowercase: bool = False, **columns: Any) -> list[float]:
    """Rank-R1's exact-match reward (arXiv 2503.06034; code Rank-R1/train_grpo.py ``reward_func_setwise``).

    R = 1.0 if the completion matches ``<think>.*?</think>\\s*<answer>(.*?)</answer>`` (DOTALL, searched)
    and ``answer.strip() == "[k*]"`` for the gold label k*, else 0.0. There is no separate format reward.
    Both constants (1 / 0) are the paper's. ``lowercase=False`` follows the training code, which matches
    the tags case-sensitively; ``True`` follows Rank-R1's inference parser, which lowercases first.
    Range: {0.0, 1.0}.
    """
    golds = [
        _gold_label(value) for value in _column("rank_r1_setwise", columns, "gold_label", len(completions))
    ]
    rewards = []
    for completion, gold in zip(completions, golds, strict=True):
        label = parse_setwise_label(completion_text(completion), lowercase=lowercase).label
        rewards.append(1.0 if label == gold else 0.0)
    return rewards


def _gold_label(value: Any) -> int:
    """The 1-based gold label of an int k >= 1 or a string "[k]"; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    match = _GOLD_LABEL.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"reward 'rank_r1_setwise': gold_label must be an int >= 1 or '[k]', got {value!r}")
    return int(match.group(1))
