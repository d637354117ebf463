"""Relevance-judgement reward (monoT5 / Qwen3-Reranker / ProRank style yes-no answers) for TRL's GRPO trainer.

The model judges one (query, document) pair by answering with one of two answer tokens (relevant, not
relevant), e.g. ``yes`` / ``no`` or ``1`` / ``0``. Dataset columns, one entry per completion (written by
:meth:`tasks.yesno.YesNoTask.reward_columns`):

- ``gold_judgement``: the answer token of the label (``"yes"`` when the document is relevant).
- ``answer_tokens``: the pair ``[relevant, not relevant]`` the completion is parsed with.

Rewards are finite floats for any completion text; a malformed dataset row raises ValueError.
"""

from __future__ import annotations

from typing import Any

from rewards.listwise import _column, completion_text
from rewards.registry import register_reward
from tasks.yesno import parse_judgement

NAME = "yesno_match"


@register_reward(NAME)
def yesno_match_reward(completions: list[Any], **columns: Any) -> list[float]:
    """R = 1.0 when the completion's judgement (:func:`tasks.yesno.parse_judgement`: the first word after an
    optional think block, case-insensitive) is the label's, else 0.0, an unparsable completion included.

    This is the accuracy term of ProRank's stage-1 prompt-warmup reward (arXiv 2506.03487; the paper's
    weights and its format term are not published and not included). Range: {0.0, 1.0}.
    """
    size = len(completions)
    golds = _column(NAME, columns, "gold_judgement", size)
    token_pairs = _column(NAME, columns, "answer_tokens", size)
    rewards = []
    for completion, gold, tokens in zip(completions, golds, token_pairs, strict=True):
        relevant = _gold(gold, tokens)
        parsed = parse_judgement(completion_text(completion), tokens)
        rewards.append(1.0 if parsed.ok and parsed.value == relevant else 0.0)
    return rewards


def _gold(gold: Any, tokens: Any) -> bool:
    """Whether ``gold`` is the relevant token of the pair ``tokens``; ValueError on a malformed row."""
    if not (
        isinstance(tokens, (list, tuple)) and len(tokens) == 2 and all(isinstance(t, str) for t in tokens)
    ):
        raise ValueError(f"reward {NAME!r}: answer_tokens must be two strings, got {tokens!r}")
    if gold not in tokens:
        raise ValueError(
            f"reward {NAME!r}: gold_judgement {gold!r} is not one of answer_tokens {list(tokens)}"
        )
    return gold == tokens[0]
