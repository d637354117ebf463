"""GRPO for rerankers over TRL's ``GRPOTrainer``, with rewards resolved by name from the recipe.

Each of the task's examples becomes a prompt; its columns and the task's reward columns (candidates,
labels, teacher order, a gold label, ...) reach the reward functions as keyword arguments, one entry per
completion. The recipe's ``rewards`` (by default the task's) carry their weights (TRL's
``reward_weights``); TRL logs each reward as ``rewards/<name>/mean`` through ``report_to``. The trainer is
:class:`trainers.trl_overrides.RankRLGRPOTrainer`: group-aware and cross-prompt rewards are scored on the
batch gathered from all processes, and ``group_by_query: true`` keeps the prompts of a query in one
generation batch.

``advantage: termination`` replaces GRPO's group-mean baseline by MRT's termination baseline (Qu et al. 2025,
"Optimizing Test-Time Compute via Meta Reinforcement Fine-Tuning", arXiv 2503.07572; the authors' RL README
gives the practical form A = R − R_termination): :class:`TerminationBaseline` forces the policy to stop
thinking and answer (:data:`rewards.progress.STOP_TEMPLATE`) at a random episode boundary of each completion
and :func:`termination_advantages` credits the tokens after that boundary with R minus the forced answers'
success rate.

    rankrl train recipes/demo/grpo.yaml
    accelerate launch --config_file recipes/accelerate/zero2.yaml -m trainers.grpo RECIPE.yaml key=value
"""

from __future__ import annotations

import importlib.util
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase
from trl import GRPOConfig, ModelConfig

from core.recipe import RecipeError, described
from rewards import resolve_rewards
from rewards.progress import distinct_success, termination_prefix
from tasks import Task
from trainers.configs import ScriptArguments
from trainers.pipeline import policy, run_cli, setup, train_and_save
from trainers.trl_overrides import RankRLGRPOTrainer, ScoredBatch

BACKENDS = ("auto", "vllm", "hf")
ADVANTAGES = ("group_mean", "termination")
logger = logging.getLogger("rankrl")


@dataclass
class RankRLGRPOConfig(GRPOConfig):
    """TRL's ``GRPOConfig`` plus the GRPO stage's own keys."""

    advantage: str = described(
        "Each completion's advantage: 'group_mean' (TRL's GRPO: the reward minus the mean of its prompt's "
        "G completions, scaled per scale_rewards) or 'termination' (MRT, Qu et al. 2025, arXiv 2503.07572, "
        "A = R - R_termination: the reward minus the success rate of termination_samples rollouts of the "
        "policy forced to stop thinking and answer at a random episode boundary of the completion, given "
        "to the tokens after that boundary, unscaled; reads the reference from the dataset column 'answer').",
        "group_mean",
    )
    termination_samples: int = described(
        "advantage termination: forced-termination rollouts (K) estimating R_termination, sampled at the "
        "GRPO temperature and top_p (8: the MRT code's meta-prover estimate).",
        8,
    )
    termination_max_new_tokens: int | None = described(
        "advantage termination: tokens per forced-termination rollout, at most max_completion_length "
        "(None: max_completion_length)."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"advantage is {self.advantage!r}; expected one of {', '.join(ADVANTAGES)}")
        if self.termination_samples < 1:
            raise ValueError(f"termination_samples is {self.termination_samples}; expected >= 1")


def main(
    script_args: ScriptArguments, training_args: RankRLGRPOConfig, model_args: ModelConfig
) -> RankRLGRPOTrainer:
    """Optimise the recipe's rewards with GRPO starting from ``model_args.model_name_or_path``."""
    task, examples = setup(script_args, training_args)
    reward_funcs, training_args.reward_weights = resolve_rewards(script_args.rewards or task.default_rewards)
    training_args.use_vllm = uses_vllm(script_args.generation_backend)
    trainer = RankRLGRPOTrainer(
        reward_funcs=reward_funcs,
        group_by_query=script_args.group_by_query,
        advantage_fn=advantage_fn(training_args, examples.column_names),
        args=training_args,
        train_dataset=grpo_dataset(task, examples),
        **policy(model_args),
    )
    warn_if_targets_are_cut(task, examples, trainer.processing_class, training_args.max_completion_length)
    train_and_save(trainer, script_args, task)
    return trainer


def warn_if_targets_are_cut(
    task: Task, examples: Dataset, tokenizer: PreTrainedTokenizerBase, max_tokens: int, sample: int = 16
) -> bool:
    """Warn (and return True) when even the shortest SFT target of the first ``sample`` examples is longer
    than ``max_completion_length``: then rollouts are cut before their answer and every reward fails, with
    nothing in the logs but a zero reward (SmolLM2 spells Qwen's one-token ``<think></think>`` in 8)."""
    rows = examples.select(range(min(sample, len(examples))))
    lengths = [len(tokenizer(task.target(row), add_special_tokens=False)["input_ids"]) for row in rows]
    if not lengths or min(lengths) <= max_tokens:
        return False
    logger.warning(
        "max_completion_length %d is shorter than every one of the first %d SFT targets (the shortest is %d "
        "tokens): completions will be cut before their answer; raise max_completion_length",
        max_tokens,
        len(lengths),
        min(lengths),
    )
    return True


def grpo_dataset(task: Task, examples: Dataset) -> Dataset:
    """The examples with the task's prompt and the columns its rewards read."""
    return examples.map(lambda example: {"prompt": task.prompt(example), **task.reward_columns(example)})


def uses_vllm(backend: str) -> bool:
    """Whether GRPO rolls out with TRL's vLLM engine for ``generation_backend`` (auto / vllm / hf)."""
    if backend not in BACKENDS:
        raise RecipeError(f"recipe: generation_backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    available = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()
    if backend == "vllm" and not available:
        raise RecipeError(
            "recipe: generation_backend 'vllm' needs vllm and a CUDA GPU (pip install 'rankrl[vllm]'); "
            "'auto' falls back to HF generation"
        )
    use = backend == "vllm" or (backend == "auto" and available)
    logger.info("GRPO rollouts with %s", "vLLM" if use else "HF generate")
    return use


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


def advantage_fn(args: RankRLGRPOConfig, columns: Sequence[str]) -> TerminationBaseline | None:
    """The trainer's ``advantage_fn`` for ``args.advantage`` (None: TRL's group-mean advantages)."""
    if args.advantage == "group_mean":
        return None
    if "answer" not in columns:
        raise RecipeError("recipe: advantage 'termination' grades forced answers against an 'answer' column")
    budget = min(args.termination_max_new_tokens or args.max_completion_length, args.max_completion_length)
    return TerminationBaseline(args.termination_samples, args.temperature, args.top_p, budget)


if __name__ == "__main__":
    run_cli(main, RankRLGRPOConfig)
