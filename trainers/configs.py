"""The training stages' own recipe keys (:class:`ScriptArguments`) and the TRL keys a recipe may not set.

Recipes are parsed by :mod:`core.recipe`; a training recipe's keys are :class:`ScriptArguments`', TRL's
``ModelConfig`` and the stage's ``SFTConfig`` / ``GRPOConfig``. Keys that rankrl sets from another key
(:data:`REPLACED_KEYS`) or would accept and not use (:data:`IGNORED_KEYS`) are refused with their reason
(:data:`REFUSED_KEYS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.recipe import RecipeError, build_configs, recipe_help

STAGES = {"sft": "trainers.sft", "grpo": "trainers.grpo", "score": "trainers.score"}  # stage -> entry module

REPLACED_KEYS = {  # TRL keys that rankrl sets itself from another recipe key
    "reward_weights": "set each reward's 'weight' in 'rewards' instead",
    "use_vllm": "set generation_backend: auto, vllm or hf instead",
}
_NO_TRL_EVALUATION = (
    "TRL's evaluation loop gets no eval_dataset; rankrl scores eval_dataset every eval_steps_ndcg steps"
)
IGNORED_KEYS = {  # fields of TRL's / transformers' configs that rankrl would accept and then not use
    "resume_from_checkpoint": "it resumes from the last checkpoint in output_dir (resume: true)",
    "model_init_kwargs": "it loads the policy itself from the ModelConfig keys (dtype, attn_implementation, "
    "model_revision, load_in_4bit, ...); TRL would apply them to the GRPO reference model only",
    "eval_strategy": f"{_NO_TRL_EVALUATION} (ranking_eval_config: a `rankrl eval` config for how)",
    "eval_steps": _NO_TRL_EVALUATION,
    "eval_on_start": _NO_TRL_EVALUATION,
    "per_device_eval_batch_size": _NO_TRL_EVALUATION,
    "trust_remote_code": "it loads the policy and its tokenizer without remote code (model types that "
    "transformers ships)",
    "do_train": "it always trains",
    "do_eval": "it evaluates when eval_dataset is set",
    "do_predict": "it runs no prediction",
}


REFUSED_KEYS = {
    **{key: f"is set by rankrl: {why}" for key, why in REPLACED_KEYS.items()},
    **{key: f"is ignored by rankrl: {why}" for key, why in IGNORED_KEYS.items()},
}


@dataclass
class ScriptArguments:
    """What to train on and how it is scored; the rest of a recipe is TRL's and ModelConfig's fields."""

    stage: str = field(
        default="sft",
        metadata={
            "help": "Training stage this recipe runs: 'sft', 'grpo' or 'score' (yes/no score learning)."
        },
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Training data: a .jsonl/.parquet file, a saved dataset folder or a Hub dataset id."
        },
    )
    dataset_split: str = field(
        default="train", metadata={"help": "Split to read from a dataset dict or Hub id."}
    )
    eval_dataset: str | None = field(
        default=None,
        metadata={"help": "Optional held-out ranking data for evaluation during and after training."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training rows (None: all)."}
    )
    task: str = field(
        default="listwise",
        metadata={"help": "Task (`rankrl tasks`): builds the examples, prompts, targets and the parser."},
    )
    task_args: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Options of the task, e.g. {use_system_prompt: false}."}
    )
    rewards: list[Any] | None = field(
        default=None,
        metadata={
            "help": "GRPO rewards: registered names, dotted paths or {name, weight, args} mappings "
            "(None: the task's default rewards)."
        },
    )
    launch: str | None = field(
        default=None,
        metadata={"help": "Accelerate config this recipe was tuned for; `rankrl train` launches with it."},
    )
    resume: bool = field(
        default=True, metadata={"help": "Resume from the last checkpoint in output_dir when there is one."}
    )
    generation_backend: str = field(
        default="auto",
        metadata={
            "help": "GRPO rollouts: 'vllm' (TRL's vLLM engine, vllm_mode colocate or server), 'hf' "
            "(transformers generate) or 'auto' (vLLM when it is installed and a GPU is visible, else HF)."
        },
    )
    group_by_query: bool = field(
        default=False,
        metadata={
            "help": "GRPO: keep every prompt of a query (dataset column query_id) in one generation batch, "
            "as cross-prompt rewards (erank_rr, retro_inter, retro_composite) need."
        },
    )
    rich_progress: bool = field(
        default=False,
        metadata={
            "help": "On a terminal, show a rich progress panel with the latest metrics instead of tqdm "
            "(a log that is not a terminal gets a plain progress line every 15 s either way)."
        },
    )
    eval_steps_ndcg: int = field(
        default=0, metadata={"help": "Evaluate held-out nDCG@10 every N steps during training (0: never)."}
    )
    ranking_eval_config: str | None = field(
        default=None,
        metadata={
            "help": "A `rankrl eval` config (YAML) whose strategy options rank the held-out rows during and "
            "after training with this recipe's task, so those numbers mean what the final evaluation's do; "
            "default: the task's strategy with its default options and eval_max_new_tokens."
        },
    )
    eval_max_samples: int = field(
        default=200, metadata={"help": "Held-out rows used by the in-training nDCG evaluation."}
    )
    eval_max_new_tokens: int = field(
        default=64,
        metadata={
            "help": "Generation budget of each completion of the held-out evaluation when no "
            "ranking_eval_config is set (with one, that config's budget or the task's paper default)."
        },
    )


def stage_config_types(stage: str) -> tuple[type, ...]:
    """The dataclasses a recipe of ``stage`` is split over; an unknown stage is a one-line error."""
    from trl import ModelConfig

    if stage not in STAGES:
        raise RecipeError(f"key 'stage' is {stage!r}; expected one of {', '.join(STAGES)}")
    if stage == "score":
        from trainers.score import ScoreConfig

        return (ScriptArguments, ScoreConfig, ModelConfig)
    if stage == "sft":
        from trainers.sft import RankRLSFTConfig

        return (ScriptArguments, RankRLSFTConfig, ModelConfig)
    from trainers.grpo import RankRLGRPOConfig

    return (ScriptArguments, RankRLGRPOConfig, ModelConfig)


def build_stage_configs(config: dict[str, Any], source: str) -> tuple[Any, ...]:
    """A flat training recipe as ``(ScriptArguments, SFTConfig | GRPOConfig, ModelConfig)``."""
    try:
        config_types = stage_config_types(str(config.get("stage", "sft")))
    except RecipeError as error:
        raise RecipeError(f"{source}: {error}") from None
    return build_configs(config, config_types, source, REFUSED_KEYS)


def stage_help(stage: str, usage: str) -> str:
    """The ``--help`` of a training stage: every recipe key with its help text and the refused keys."""
    return recipe_help(stage_config_types(stage), usage, REFUSED_KEYS)
