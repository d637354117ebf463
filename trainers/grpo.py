"""GRPO for rerankers over TRL's ``GRPOTrainer``, with rewards resolved by name from the recipe.

Each of the task's examples becomes a prompt; its columns and the task's reward columns (candidates,
labels, teacher order, a gold label, ...) reach the reward functions as keyword arguments, one entry per
completion. The recipe's ``rewards`` (by default the task's) carry their weights (TRL's
``reward_weights``); TRL logs each reward as ``rewards/<name>/mean`` through ``report_to``. The trainer is
:class:`trainers.trl_overrides.RankRLGRPOTrainer`: group-aware and cross-prompt rewards are scored on the
batch gathered from all processes, and ``group_by_query: true`` keeps the prompts of a query in one
generation batch.

    rankrl train recipes/demo/grpo.yaml
    accelerate launch --config_file recipes/accelerate/zero2.yaml -m trainers.grpo RECIPE.yaml key=value
"""

from __future__ import annotations

import importlib.util
import logging

import torch
from datasets import Dataset
from trl import GRPOConfig, ModelConfig

from core.recipe import RecipeError
from rewards import resolve_rewards
from tasks import Task
from trainers.configs import ScriptArguments
from trainers.pipeline import policy, run_cli, setup, train_and_save
from trainers.trl_overrides import RankRLGRPOTrainer

BACKENDS = ("auto", "vllm", "hf")
logger = logging.getLogger("rankrl")


def main(
    script_args: ScriptArguments, training_args: GRPOConfig, model_args: ModelConfig
) -> RankRLGRPOTrainer:
    """Optimise the recipe's rewards with GRPO starting from ``model_args.model_name_or_path``."""
    task, examples = setup(script_args, training_args)
    reward_funcs, training_args.reward_weights = resolve_rewards(script_args.rewards or task.default_rewards)
    training_args.use_vllm = uses_vllm(script_args.generation_backend)
    trainer = RankRLGRPOTrainer(
        reward_funcs=reward_funcs,
        group_by_query=script_args.group_by_query,
        args=training_args,
        train_dataset=grpo_dataset(task, examples),
        **policy(model_args),
    )
    train_and_save(trainer, script_args, task)
    return trainer


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


if __name__ == "__main__":
    run_cli(main, GRPOConfig)
