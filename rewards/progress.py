"""MRT's progress bonus (Qu et al. 2025, "Optimizing Test-Time Compute via Meta Reinforcement Fine-Tuning",
arXiv 2503.07572).

A reasoning trace z (the text before ``</think>``, or all of it) is split into episodes z_0..z_{k-1}
(:func:`segment_episodes`). The meta-prover μ is the policy itself, forced to stop thinking after a prefix
z_{0:j} by appending ``stop_template`` ("Time is up..."); J_j, its success probability after j episodes, is
estimated from ``num_samples`` (K) sampled continuations graded against the reference answer. Then

    r_j = J_j − J_{j−1} (j = 1..k),     reward = outcome + α · Σ_j r_j = outcome + α · (J_k − J_0),

with outcome ∈ {0, 1} whether the trace's own final answer is right (:mod:`rewards.answers`). The sum
telescopes, so only J_k and J_0 are sampled, not every J_j, and J_0 (the prompt alone) once per distinct
prompt: K samples per completion plus K per prompt instead of (k+1)·K per completion. J_0 is a per-prompt
constant, which GRPO's group-normalised advantage cancels; it is kept so the reward is exactly the value
above. The ``termination`` variant is MRT's README form A = R − R_termination: reward = outcome − α · J_j*
with j* a uniformly drawn episode boundary (0..k−1) of the completion, "continuing beat stopping here".
The same baseline as an advantage, A = R − J_j* on the tokens after z_{0:j*} (GRPO's ``advantage:
termination``, :mod:`trainers.grpo`), draws its prefix with :func:`termination_prefix` and estimates J with
:func:`distinct_success`.

The sampler is injected (``generate``, :class:`rewards.groups.Generate`): under rankrl's GRPO trainer it is
the policy being trained (HF ``generate`` or vLLM), called once per reward invocation on every process, with
each distinct (prompt, prefix, reference answer) of the process's batch once.
Paper settings: K = 8, temperature 0.7, top_p 0.95, max 4096 tokens, episodes merged by 10; α = 1.0 after the
authors' MRT-online card (the paper's α is unverified). Range: [−α, 1 + α].
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from rewards.answers import answer_match_reward
from rewards.groups import Generate
from rewards.listwise import _column, completion_text
from rewards.registry import register_reward
from tasks.answers import answers_match

STOP_TEMPLATE = (
    "Time is up.\n\nGiven the time I've spent and the approaches I've tried, I should stop thinking and "
    "formulate a final answer based on what I already have.\n</think>\n\n"
    "**Step-by-Step Explanation and Answer:**\n\n1. **"
)
MARKERS = (
    "Wait",
    "But wait",
    "Alternatively",
    "Is there another way to think about this?",
    "But let me double-check",
    "But hold on",
)
VARIANTS = ("progress", "termination")


def thinking_part(text: str) -> str:
    """The reasoning of a completion: the text before the first ``</think>``, or all of it."""
    end = text.find("</think>")
    return text if end < 0 else text[:end]


def segment_episodes(
    text: str, markers: Sequence[str] = MARKERS, min_gap: int = 2, group_size: int = 10
) -> list[str]:
    """MRT's episodes of a reasoning text (code: break_into_meta_steps_batched.ipynb).

    Paragraphs are split on blank lines (``\\n\\n``); a paragraph starting with one of ``markers`` opens a new
    episode unless it is fewer than ``min_gap`` paragraphs after the previous boundary; then every
    ``group_size`` consecutive episodes are merged into one. Joining the episodes with ``\\n\\n`` gives the
    text back. An empty text has no episode.
    """
    paragraphs = text.split("\n\n") if text else []
    starts = [0] if paragraphs else []
    for index, paragraph in enumerate(paragraphs[1:], start=1):
        if paragraph.lstrip().startswith(tuple(markers)) and index - starts[-1] >= min_gap:
            starts.append(index)
    bounds = [*starts[::group_size], len(paragraphs)] if starts else []
    return ["\n\n".join(paragraphs[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]


def episode_prefixes(episodes: Sequence[str]) -> list[str]:
    """z_{0:j} for j = 0..k: the text of the first j episodes, each ending with the blank line after it."""
    return ["".join(episode + "\n\n" for episode in episodes[:j]) for j in range(len(episodes) + 1)]


def estimate_success(
    generate: Generate,
    prompts: Sequence[Any],
    prefixes: Sequence[str],
    references: Sequence[str],
    *,
    stop_template: str = STOP_TEMPLATE,
    num_samples: int = 8,
    temperature: float = 0.7,
    top_p: float = 0.95,
    max_new_tokens: int = 4096,
) -> list[float]:
    """J for each (prompt, prefix): the share of K forced-termination continuations with the right answer.

    One ``generate`` call for all pairs (collective under distributed training).
    """
    samples = generate(
        list(prompts),
        [prefix + stop_template for prefix in prefixes],
        num_samples=num_samples,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
    )
    return [
        float(np.mean([answers_match(sample, reference) for sample in group])) if group else 0.0
        for group, reference in zip(samples, references, strict=True)
    ]


def distinct_success(
    generate: Generate, requests: Sequence[tuple[Any, str, str]], **settings: Any
) -> list[float]:
    """J for each ``(prompt, prefix, reference answer)`` request by :func:`estimate_success` (``settings`` are
    its keywords), sampling a request shared by several entries once."""
    distinct = {repr(request): request for request in requests}  # repr: chat prompts are unhashable lists
    success = estimate_success(
        generate,
        [prompt for prompt, _, _ in distinct.values()],
        [prefix for _, prefix, _ in distinct.values()],
        [reference for _, _, reference in distinct.values()],
        **settings,
    )
    by_request = dict(zip(distinct, success, strict=True))
    return [by_request[repr(request)] for request in requests]


def termination_prefix(
    text: str,
    rng: random.Random,
    markers: Sequence[str] = MARKERS,
    min_gap: int = 2,
    group_size: int = 10,
) -> str:
    """z_{0:j*} of a completion, j* drawn uniformly from its episode boundaries 0..k−1: where the meta-prover
    is forced to stop for the termination baseline. A prefix of ``text``; empty (j* = 0) when the reasoning
    has one episode or none."""
    episodes = segment_episodes(thinking_part(text), markers, min_gap, group_size)
    return episode_prefixes(episodes)[_boundary(episodes, rng)]


@register_reward("mrt_progress", uses_generator=True)
def mrt_progress_reward(
    completions: list[Any],
    *,
    generate: Generate,
    alpha: float = 1.0,
    variant: str = "progress",
    num_samples: int = 8,
    temperature: float = 0.7,
    top_p: float = 0.95,
    max_new_tokens: int = 4096,
    stop_template: str = STOP_TEMPLATE,
    markers: Sequence[str] = MARKERS,
    min_gap: int = 2,
    group_size: int = 10,
    seed: int = 0,
    **columns: Any,
) -> list[float]:
    """MRT's outcome + progress-bonus reward (see the module docstring); reference answers in ``answer``.

    ``variant``: ``progress`` (outcome + α·(J_k − J_0): K samples per completion for J_k, K per distinct
    prompt for J_0) or ``termination`` (outcome − α·J_j*: K samples per completion). A (prompt, prefix,
    answer) shared by several completions is sampled once. Logs ``mrt/J_first`` (J_0, or J_j*),
    ``mrt/J_last`` (J_k, or J_j*), ``mrt/bonus`` and ``mrt/episodes`` through TRL's ``log_metric`` when given.
    """
    if variant not in VARIANTS:
        raise ValueError(f"reward 'mrt_progress': unknown variant {variant!r}; expected one of {VARIANTS}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"reward 'mrt_progress': num_samples must be a positive int, got {num_samples!r}")
    size = len(completions)
    references = [str(value) for value in _column("mrt_progress", columns, "answer", size)]
    prompts = columns.get("prompts") or [""] * size
    texts = [completion_text(completion) for completion in completions]
    episodes = [segment_episodes(thinking_part(text), markers, min_gap, group_size) for text in texts]
    rng = random.Random(f"{seed}-{getattr(columns.get('trainer_state'), 'global_step', 0)}")
    needed = [
        (row, (prompts[row], prefix, references[row]))
        for row, parts in enumerate(episodes)
        for prefix in _prefixes(parts, variant, rng)
    ]
    success = distinct_success(
        generate,
        [request for _, request in needed],
        stop_template=stop_template,
        num_samples=num_samples,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
    )
    per_row: list[list[float]] = [[] for _ in range(size)]
    for (row, _), value in zip(needed, success, strict=True):
        per_row[row].append(value)
    outcomes = answer_match_reward(completions, answer=references)
    bonus = [j[-1] - j[0] if variant == "progress" else -j[0] for j in per_row]
    _log(columns.get("log_metric"), per_row, bonus, episodes)
    return [outcome + alpha * value for outcome, value in zip(outcomes, bonus, strict=True)]


def _prefixes(episodes: list[str], variant: str, rng: random.Random) -> list[str]:
    """The prefixes whose J the reward needs: z_{0:0} and z_{0:k} (``progress``: Σ_j r_j = J_k − J_0) or one
    z_{0:j*}, j* drawn from 0..k−1 (``termination``)."""
    options = episode_prefixes(episodes)
    return [options[0], options[-1]] if variant == "progress" else [options[_boundary(episodes, rng)]]


def _boundary(episodes: Sequence[str], rng: random.Random) -> int:
    """j* drawn uniformly from the episode boundaries 0..k−1 (0 when there is no episode)."""
    return rng.randrange(len(episodes) or 1)


def _log(log_metric: Any, success: list[list[float]], bonus: list[float], episodes: list[list[str]]) -> None:
    if not callable(log_metric) or not success:
        return
    log_metric("mrt/J_first", float(np.mean([j[0] for j in success])))
    log_metric("mrt/J_last", float(np.mean([j[-1] for j in success])))
    log_metric("mrt/bonus", float(np.mean(bonus)))
    log_metric("mrt/episodes", float(np.mean([len(parts) for parts in episodes])))
