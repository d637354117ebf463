"""What the SFT and GRPO entry scripts share: argument parsing, the task and its examples, training, saving
and the held-out evaluation."""

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
from tasks import Task, expand_rows, get_task
from tasks.strategy import Strategy, StrategyOptions, strategy_options
from trainers.collectives import describe_collective_failure, end_process_group, start_cpu_process_group
from trainers.configs import REFUSED_KEYS, ScriptArguments
from trainers.evaluate import RankingEvalCallback, evaluate_with_strategy
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


def setup(script_args: ScriptArguments, training_args: Any) -> tuple[Task, Dataset]:
    """Seed, logging, the recipe's task and its training examples (rows that give none are counted)."""
    task = setup_task(script_args, training_args)
    examples = load_examples(task, script_args.dataset, script_args.dataset_split)
    if script_args.max_train_samples:
        examples = examples[: script_args.max_train_samples]
    return task, Dataset.from_list(examples)


def setup_task(script_args: ScriptArguments, training_args: Any) -> Task:
    """Seed, logging and the recipe's task; a recipe without ``dataset`` is a one-line error."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(training_args.seed)
    if not script_args.dataset:
        raise RecipeError(
            "recipe: key 'dataset' is not set (a .jsonl/.parquet file, a dataset folder or a Hub id)"
        )
    return get_task(script_args.task, **script_args.task_args)


def load_examples(task: Task, path: str, split: str = "train") -> list[dict[str, Any]]:
    """The ``task``'s examples of the dataset at ``path``; rows that give none are logged by reason."""
    rows = load_dataset_file(path, kind=task.row_kind, split=split)
    examples, dropped = expand_rows(task, rows.to_list(), path)  # a list iterates 2.5x faster
    for reason, count in dropped.items():
        logger.warning("%s: %d rows give no %s example (%s)", path, count, task.name, reason)
    if not examples:
        raise RecipeError(f"{path}: no {task.name} examples (rows without any: {dropped})")
    return examples


def evaluation_strategy(script_args: ScriptArguments, task: Task) -> Strategy | None:
    """How held-out rows are ranked: the task's strategy with the options of ``ranking_eval_config`` (a
    ``rankrl eval`` config) or the defaults with ``eval_max_new_tokens``; None for a task that ranks
    nothing (math, evaluated by ``rankrl tts``)."""
    path = script_args.ranking_eval_config
    if path:
        config = read_yaml(path)
        if config.get("task", task.name) != task.name:
            raise RecipeError(f"{path}: key 'task' is {config['task']!r} but the recipe trains {task.name!r}")
        return task.strategy(strategy_options(config, path))
    return task.strategy(StrategyOptions(max_new_tokens=script_args.eval_max_new_tokens))


def policy(model_args: ModelConfig) -> dict[str, Any]:
    """The trainer arguments that describe the policy: model, tokenizer and optional LoRA config."""
    return {
        "model": load_model(model_args),
        "processing_class": load_tokenizer(model_args),
        "peft_config": get_peft_config(model_args),
    }


def train_and_save(trainer: Trainer, script_args: ScriptArguments, task: Task) -> dict[str, float]:
    """Train (resuming from the last checkpoint if asked), save model and tokenizer, then evaluate."""
    strategy = evaluation_strategy(script_args, task)
    eval_rows = []
    if script_args.eval_dataset and strategy is not None:
        eval_rows = load_dataset_file(script_args.eval_dataset).to_list()[: script_args.eval_max_samples]
    elif script_args.eval_dataset:
        logger.warning("task %r ranks nothing: evaluate its output with `rankrl tts`", task.name)
    if eval_rows and script_args.eval_steps_ndcg:
        trainer.add_callback(RankingEvalCallback(trainer, eval_rows, strategy, script_args.eval_steps_ndcg))
    throughput = ThroughputCallback(trainer)
    trainer.add_callback(throughput)
    progress = progress_callbacks(script_args.stage, script_args.rich_progress)
    if progress:
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
    for callback in progress:
        trainer.add_callback(callback)
    output_dir = trainer.args.output_dir
    save_merged_base(trainer, output_dir)  # before training: every checkpoint's adapter points at it
    checkpoint = last_complete_checkpoint(output_dir) if script_args.resume else None
    if checkpoint:
        logger.info("resuming from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    metrics = {**result.metrics, **throughput.summary}
    trainer.save_model(output_dir)
    every = script_args.eval_steps_ndcg
    if eval_rows and not (every and trainer.state.global_step % every == 0):  # else the callback just did
        final = evaluate_with_strategy(trainer.model, trainer.processing_class, eval_rows, strategy)
        trainer.log({"eval_ndcg@10": final.ndcg, "eval_repaired": final.repaired})
    logged = [entry["eval_ndcg@10"] for entry in trainer.state.log_history if "eval_ndcg@10" in entry]
    if logged:  # the last step's held-out nDCG, from the callback or the evaluation above
        metrics["eval_ndcg@10"] = logged[-1]
    trainer.save_metrics("train", metrics)
    trainer.save_state()  # OUTPUT_DIR/trainer_state.json: the run's whole log history
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
    end_process_group()
