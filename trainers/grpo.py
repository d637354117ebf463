"""GRPO for rerankers over TRL's ``GRPOTrainer``, with rewards resolved by name from the recipe.

Each of the task's examples becomes a prompt; its columns and the task's reward columns (candidates,
labels, teacher order, a gold label, ...) reach the reward functions as keyword arguments, one entry per
completion. The recipe's ``rewards`` (by default the task's) carry their weights (TRL's
``reward_weights``); TRL logs each reward as ``rewards/<name>/mean`` through ``report_to``. The trainer is
:class:`trainers.trl_overrides.RankRLGRPOTrainer`: group-aware and cross-prompt rewards are scored on the
batch gathered from all processes, and ``group_by_query: true`` keeps the prompts of a query in one
generation batch.

``advantage: termination`` replaces GRPO's group-mean baseline by MRT's termination baseline (Qu et al. 2025,
arXiv 2503.07572; :mod:`trainers.advantages`).

    rankrl train recipes/demo/grpo.yaml
    accelerate launch --config_file recipes/accelerate/zero2.yaml -m trainers.grpo RECIPE.yaml key=value
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase
from trl import GRPOConfig, ModelConfig

from core.recipe import RecipeError, described
from rewards import resolve_rewards
from tasks import Task
from trainers.advantages import TerminationBaseline
from trainers.configs import ScriptArguments
from trainers.pipeline import policy, run_cli, setup, train_and_save
from trainers.trl_overrides import RankRLGRPOTrainer

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
