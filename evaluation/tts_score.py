"""Scores of sampled completions for best-of-N and weighted voting: a registered reward or a reward model.

A :data:`Scorer` maps (problem rows, their prompts, their samples) to one score per sample, scoring every
sample of every problem in one batched pass so that a sweep's prefixes reuse the scores.

- :func:`reward_scorer`: any reward of :mod:`rewards.registry` (a registered name or a dotted path), called
  the way TRL calls it: conversational ``completions``, the ``prompts`` and every dataset column (a
  problem's fields repeated for each of its samples). ``None`` (not applicable) scores 0. A reward that reads
  the reference (``answer_match``) makes best-of-N an oracle: pass@N.
- :func:`reward_model_scorer`: a ``transformers`` sequence-classification checkpoint (TRL's reward models):
  the chat-templated prompt and completion scored as ``sigmoid(logits[:, 0])``, a probability (the same
  argmax as the logit, and a non-negative weight for voting).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from core.generation import Messages
from evaluation.tts import Sample
from rewards.registry import get_reward

Scorer = Callable[
    [Sequence[Mapping[str, Any]], Sequence[Messages], Sequence[Sequence[Sample]]], list[list[float]]
]


def _flat(
    prompts: Sequence[Messages], samples: Sequence[Sequence[Sample]]
) -> tuple[list[int], list[Messages], list[list[dict[str, str]]]]:
    """Per sample: its problem's index, its prompt and its completion in conversational form."""
    owners = [i for i, problem in enumerate(samples) for _ in problem]
    completions = [[{"role": "assistant", "content": s.text}] for problem in samples for s in problem]
    return owners, [prompts[i] for i in owners], completions


def _regroup(values: Sequence[float], samples: Sequence[Sequence[Sample]]) -> list[list[float]]:
    out, start = [], 0
    for problem in samples:
        out.append([float(v) for v in values[start : start + len(problem)]])
        start += len(problem)
    return out


def reward_scorer(spec: str, args: Mapping[str, Any] | None = None) -> Scorer:
    """Score samples with the reward ``spec`` (factory ``args`` bound); see the module docstring."""
    reward = get_reward(spec, **dict(args or {}))

    def score(
        rows: Sequence[Mapping[str, Any]], prompts: Sequence[Messages], samples: Sequence[Sequence[Sample]]
    ) -> list[list[float]]:
        owners, flat_prompts, completions = _flat(prompts, samples)
        columns = {key: [rows[i][key] for i in owners] for key in rows[0]} if rows else {}
        values = reward(completions, prompts=flat_prompts, **columns)
        return _regroup([0.0 if v is None else v for v in values], samples)

    return score


def reward_model_scorer(path: str, batch_size: int = 16, dtype: str = "auto") -> Scorer:
    """Score samples with the sequence-classification model at ``path``; see the module docstring."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype).eval()
    if model.config.pad_token_id is None:  # a batch of several needs it to find each last token
        model.config.pad_token_id = tokenizer.pad_token_id
    if torch.cuda.is_available():
        model.to("cuda")

    @torch.no_grad()
    def score(
        rows: Sequence[Mapping[str, Any]], prompts: Sequence[Messages], samples: Sequence[Sequence[Sample]]
    ) -> list[list[float]]:
        _, flat_prompts, completions = _flat(prompts, samples)
        texts = [
            tokenizer.apply_chat_template([*prompt, *completion], tokenize=False)
            for prompt, completion in zip(flat_prompts, completions, strict=True)
        ]
        values: list[float] = []
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size], padding=True, return_tensors="pt", add_special_tokens=False
            ).to(model.device)
            values += torch.sigmoid(model(**batch).logits[:, 0].float()).tolist()
        return _regroup(values, samples)

    return score
