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
from tasks.yesno import is_bare_judgement, parse_judgement

NAME = "yesno_match"


@register_reward(NAME)
def yesno_match_reward(completions: list[Any], *, format_weight: float = 0.0, **columns: Any) -> list[float]:
    """R = 1[judgement = label] + format_weight · 1[bare answer].

    The judgement is :func:`tasks.yesno.parse_judgement`'s (the first word after an optional think block,
    case-insensitive; an unparsable completion is no match). The bare-answer term counts a completion that is
    exactly one answer token (:func:`tasks.yesno.is_bare_judgement`, e.g. ``1`` but not ``1, because ...``).
    ProRank's stage-1 prompt-warmup reward (arXiv 2506.03487) combines relevance accuracy with format
    validity, an output in the allowed set {0, 1}; the paper's weights are not published, so
    ``format_weight`` is a documented choice (default 0: the accuracy term alone).
    Range: {0, format_weight, 1, 1 + format_weight}.
    """
    if not isinstance(format_weight, (int, float)) or isinstance(format_weight, bool):
        raise ValueError(f"reward {NAME!r}: format_weight must be a number, got {format_weight!r}")
    size = len(completions)
    golds = _column(NAME, columns, "gold_judgement", size)
    token_pairs = _column(NAME, columns, "answer_tokens", size)
    rewards = []
    for completion, gold, tokens in zip(completions, golds, token_pairs, strict=True):
        relevant, text = _gold(gold, tokens), completion_text(completion)
        parsed = parse_judgement(text, tokens)
        correct = 1.0 if parsed.ok and parsed.value == relevant else 0.0
        rewards.append(correct + (format_weight if is_bare_judgement(text, tokens) else 0.0))
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
