"""What the SFT and GRPO entry scripts share: argument parsing, data, the task, training and saving."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import PrinterCallback, ProgressCallback, Trainer, set_seed
from trl import ModelConfig, get_peft_config

from core.data import load_dataset_file
from core.models import load_model, load_tokenizer
from core.recipe import RecipeError, apply_overrides, build_configs, read_yaml, recipe_help
from evaluation.config import load_strategy
from tasks import get_task
from trainers.collectives import describe_collective_failure, start_cpu_process_group
from trainers.configs import REFUSED_KEYS, ScriptArguments
from trainers.evaluate import RankingEvalCallback, evaluate_rankings, evaluate_with_strategy
from trainers.modeling import save_merged_base
from trainers.progress import progress_callbacks
from trainers.throughput import ThroughputCallback

logger = logging.getLogger("rankrl")


def parse_args(argv: Sequence[str], training_config_class: type) -> tuple[ScriptArguments, Any, ModelConfig]:
    """``RECIPE.yaml [key=value ...]`` into (script, training, model) configs; ``--help`` prints every key.

    A multi-process CPU run starts its process group first, with the recipe's ``ddp_timeout``
    (:func:`trainers.collectives.start_cpu_process_group`).
    """
    usage = "python -m trainers.<stage> RECIPE.yaml [key=value ...]"
    config_types = (ScriptArguments, training_config_class, ModelConfig)
    if "-h" in argv or "--help" in argv:
        print(recipe_help(config_types, usage, REFUSED_KEYS))
        raise SystemExit(0)
    if not argv or "=" in argv[0]:
        raise SystemExit(f"usage: {usage}")
    recipe, overrides = argv[0], argv[1:]
    config = apply_overrides(read_yaml(recipe), overrides)
    start_cpu_process_group(config)
    return build_configs(config, config_types, recipe, REFUSED_KEYS)


def setup(script_args: ScriptArguments, training_args: Any) -> tuple[Any, Dataset]:
    """Seed, logging, the task and the validated training rows."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(training_args.seed)
    if not script_args.dataset:
        raise RecipeError(
            "recipe: key 'dataset' is not set (a .jsonl/.parquet file, a dataset folder or a Hub id)"
        )
    rows = load_dataset_file(script_args.dataset, split=script_args.dataset_split)
    if script_args.max_train_samples:
        rows = rows.select(range(min(script_args.max_train_samples, len(rows))))
    return get_task(script_args.task, **script_args.task_args), rows


def policy(model_args: ModelConfig) -> dict[str, Any]:
    """The trainer arguments that describe the policy: model, tokenizer and optional LoRA config."""
    return {
        "model": load_model(model_args),
        "processing_class": load_tokenizer(model_args),
        "peft_config": get_peft_config(model_args),
    }


def train_and_save(trainer: Trainer, script_args: ScriptArguments, task: Any) -> dict[str, float]:
    """Train (resuming from the last checkpoint if asked), save model and tokenizer, then evaluate."""
    eval_rows = load_dataset_file(script_args.eval_dataset).to_list() if script_args.eval_dataset else []
    eval_rows = eval_rows[: script_args.eval_max_samples]
    strategy = load_strategy(script_args.ranking_eval_config) if script_args.ranking_eval_config else None
    if eval_rows and script_args.eval_steps_ndcg:
        every = script_args.eval_steps_ndcg
        trainer.add_callback(RankingEvalCallback(trainer, eval_rows, task, every, strategy=strategy))
    throughput = ThroughputCallback(trainer)
    trainer.add_callback(throughput)
    progress = progress_callbacks(script_args.stage, script_args.rich_progress)
    if progress:
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
    for callback in progress:
        trainer.add_callback(callback)
    output_dir = trainer.args.output_dir
    checkpoint = last_complete_checkpoint(output_dir) if script_args.resume else None
    if checkpoint:
        logger.info("resuming from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = {**result.metrics, **throughput.summary}
    save_merged_base(trainer, output_dir)
    trainer.save_model(output_dir)
    if eval_rows:
        model, tokenizer = trainer.model, trainer.processing_class
        final = (
            evaluate_with_strategy(model, tokenizer, eval_rows, strategy)
            if strategy
            else evaluate_rankings(model, tokenizer, eval_rows, task)
        )
        metrics["eval_ndcg@10"] = final.ndcg
        trainer.log({"eval_ndcg@10": final.ndcg, "eval_repaired": final.repaired})
    trainer.save_metrics("train", metrics)
    return metrics


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` in ``output_dir`` that was completely written, None if there is none.

    The Trainer writes ``trainer_state.json`` last, after model, optimizer, scheduler and RNG states, so a
    folder without it was cut short by a kill; it is skipped with a warning instead of failing the resume.
    """
    folder = Path(output_dir)
    found = [path for path in folder.glob("checkpoint-*") if path.is_dir() and path.name[11:].isdigit()]
    for checkpoint in sorted(found, key=lambda path: int(path.name[11:]), reverse=True):
        if (checkpoint / "trainer_state.json").is_file():
            return str(checkpoint)
        logger.warning(
            "skipping %s: incomplete (no trainer_state.json), probably killed while saving", checkpoint
        )
    return None


def run_cli(main: Any, training_config_class: type) -> None:
    """Entry point of ``python -m trainers.<stage>``: parse, then run ``main``; a failed collective exits
    with one line naming this rank (:func:`trainers.collectives.describe_collective_failure`)."""
    try:
        main(*parse_args(sys.argv[1:], training_config_class))
    except RuntimeError as error:
        message = describe_collective_failure(error)
        if message is None:
            raise
        raise SystemExit(message) from error
