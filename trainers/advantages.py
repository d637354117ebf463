"""Advantage functions: what replaces GRPO's group-normalised advantages when a recipe sets ``advantage``.

:class:`trainers.trl_overrides.RankRLGRPOTrainer` hands an :data:`AdvantageFn` each generation batch as a
:class:`ScoredBatch` (its completions with their weighted reward) and trains on the advantages it returns.
``advantage: termination`` is MRT's termination baseline (Qu et al. 2025, "Optimizing Test-Time Compute via
Meta Reinforcement Fine-Tuning", arXiv 2503.07572; the authors' RL README gives the practical form
A = R − R_termination): :class:`TerminationBaseline` forces the policy to stop thinking and answer
(:data:`rewards.progress.STOP_TEMPLATE`) at a random episode boundary of each completion and
:func:`termination_advantages` credits the tokens after that boundary with R minus the forced answers'
success rate.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rewards.groups import Generate
from rewards.progress import distinct_success, termination_prefix


@dataclass(frozen=True)
class ScoredBatch:
    """This process's completions of one generation batch, scored, as an :data:`AdvantageFn` sees them.

    ``rewards``: each completion's reward as TRL sums it (Σ_f w_f r_f over the reward functions, NaN where
    every reward returned None); ``columns``: the dataset columns, one entry per completion; ``width``: T of
    the batch's padded (B, T) completion tensors; ``generate``: the policy sampler (collective: call it
    exactly once per batch on every process); ``seed``: distinct per step and process; ``log(name, value)``:
    a metric averaged into the next log entry.
    """

    prompts: list[Any]
    completions: list[str]
    completion_ids: list[list[int]]
    columns: dict[str, list[Any]]
    rewards: torch.Tensor
    width: int
    tokenizer: Any
    generate: Generate
    seed: str
    log: Callable[[str, float], None]


AdvantageFn = Callable[[ScoredBatch], torch.Tensor]
"""Advantages of a :class:`ScoredBatch`: one per completion (B,) or one per completion token (B, T)."""


def termination_advantages(
    rewards: torch.Tensor, baselines: torch.Tensor, starts: torch.Tensor, width: int
) -> torch.Tensor:
    """MRT's termination-baseline advantage (arXiv 2503.07572), one per completion token, (B, width):

        A_{i,t} = (R_i − b_i) · 1[t ≥ s_i],    b_i = J_r(μ(· | x_i, z_{i,0:j*}))

    with R_i the completion's reward, b_i the success rate of the meta-prover μ (the policy forced to stop
    thinking and answer) after the completion's first j* episodes, and s_i the first completion token after
    that prefix. GRPO's policy-gradient term on completion i is then −Σ_{t ≥ s_i} (R_i − b_i) ∇log π(y_t | x,
    y_<t): the tokens after the boundary are credited with how much continuing beat stopping there, the
    prefix, on which b_i depends, with nothing. A NaN reward (every reward returned None) gives 0, as TRL's
    advantages do; nothing is scaled.
    """
    gap = torch.nan_to_num(rewards - baselines, nan=0.0)
    after = torch.arange(width, device=gap.device)[None, :] >= starts.to(gap.device)[:, None]
    return gap[:, None] * after.to(gap.dtype)


def covering_tokens(tokenizer, ids: Sequence[int], prefix: str) -> int:
    """The fewest leading tokens of ``ids`` whose decoded text is as long as ``prefix`` (a prefix of their
    decoded text): the index of the first token after it, 0 for an empty prefix."""
    low, high = 0, len(ids)
    while low < high:
        middle = (low + high) // 2
        if len(tokenizer.decode(ids[:middle], skip_special_tokens=True)) >= len(prefix):
            high = middle
        else:
            low = middle + 1
    return low


class TerminationBaseline:
    """The ``advantage_fn`` of ``advantage: termination`` (see :func:`termination_advantages`).

    For each completion a boundary j* is drawn uniformly from its episodes
    (:func:`rewards.progress.termination_prefix`); the policy continues the prompt + z_{0:j*} +
    :data:`~rewards.progress.STOP_TEMPLATE` ``num_samples`` times and b is the share of answers equal to the
    reference (:func:`rewards.progress.distinct_success`: completions sharing a prompt and prefix, e.g. all
    those drawn at j* = 0, share the samples). Logs ``mrt/termination_baseline`` (mean b) and
    ``mrt/baseline_prefix_tokens`` (mean s).
    """

    def __init__(self, num_samples: int, temperature: float, top_p: float, max_new_tokens: int) -> None:
        self.settings = {
            "num_samples": num_samples,
            "temperature": temperature,
            "top_p": top_p,
            "max_new_tokens": max_new_tokens,
        }

    def __call__(self, batch: ScoredBatch) -> torch.Tensor:
        rng = random.Random(batch.seed)
        prefixes = [termination_prefix(text, rng) for text in batch.completions]
        references = [str(answer) for answer in batch.columns["answer"]]
        requests = list(zip(batch.prompts, prefixes, references, strict=True))
        baselines = distinct_success(batch.generate, requests, **self.settings)
        starts = [
            covering_tokens(batch.tokenizer, ids, prefix)
            for ids, prefix in zip(batch.completion_ids, prefixes, strict=True)
        ]
        batch.log("mrt/termination_baseline", float(np.mean(baselines)))
        batch.log("mrt/baseline_prefix_tokens", float(np.mean(starts)))
        as_tensor = torch.tensor(baselines, dtype=batch.rewards.dtype, device=batch.rewards.device)
        return termination_advantages(batch.rewards, as_tensor, torch.tensor(starts), batch.width)
