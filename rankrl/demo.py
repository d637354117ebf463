"""``rankrl demo``: train a tiny listwise reranker from scratch with SFT, then GRPO, on a toy task.

The toy task (``tasks.toy``): a query of one or two made-up words and 5–8 passages of one or two
words; a passage's relevance is the number of query words it contains. Held-out queries are word sets never
seen in training. As in ReasonRank's pipeline, SFT imitates a teacher and GRPO optimises the metric on the
labels: the toy teacher overlooks half of the passages that match only part of the query
(:func:`tasks.toy.overlooking_teacher`), and the GRPO reward credits them. The demo evaluates held-out
nDCG@10 before training, after SFT and after GRPO, next to a random ordering, through the same recipes,
entry scripts and evaluation a 7B run uses.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType
from typing import Any

import datasets
from rich.console import Console
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from core.data import load_dataset_file
from core.recipe import apply_overrides, read_yaml
from rankrl.demo_report import plot_history, results_table
from rankrl.smoke import prepare_toy_workspace
from tasks import get_task
from tasks.strategy import StrategyOptions
from trainers import grpo, sft
from trainers.configs import build_stage_configs
from trainers.evaluate import evaluate_with_strategy, random_order_ndcg

RECIPES = Path(__file__).resolve().parent.parent / "recipes" / "demo"
NUM_TRAIN = 25_600
NUM_HELDOUT = 1000
SMOKE_TRAIN, SMOKE_HELDOUT = 256, 32
TEACHER_MISS_RATE = 0.5  # the share of partial matches the SFT teacher leaves out (README, "The demo")
EVAL_BATCH = 250  # prompts a generate call: the tiny model's decoding is per-call overhead, not FLOPs
SMOKE_OVERRIDES = {
    "max_steps": 4,
    "eval_steps_ndcg": 2,
    "eval_max_samples": 16,
    "save_steps": 2,
    "logging_steps": 1,
}


def _train_stage(stage: ModuleType, recipe: Path, overrides: dict[str, Any]) -> Any:
    """Run one entry script on a demo recipe with the demo's paths and seed; return its trainer."""
    config = apply_overrides({**read_yaml(recipe), **overrides}, [])
    return stage.main(*build_stage_configs(config, str(recipe)))


def _evaluate(label: str, model_dir: Path, rows: list[dict], task: Any, console: Console) -> float:
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    strategy = task.strategy(StrategyOptions(max_new_tokens=64))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    result = evaluate_with_strategy(model, tokenizer, rows, strategy, batch_size=EVAL_BATCH)
    console.print(f"  held-out nDCG@10 {label}: [bold]{result.ndcg:.3f}[/] (repaired: {result.repaired:.1%})")
    return result.ndcg


def run_demo(output_dir: Path, seed: int = 0, smoke: bool = False) -> dict[str, float]:
    """Run the demo end to end; return held-out nDCG@10 per stage and of the random ordering.

    ``smoke`` runs every step of the demo on 256 rows for 4 steps a stage: a seconds-long check that the
    install and the pipeline work, whose numbers mean nothing.
    """
    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()
    console, start = Console(), time.time()
    recipe = read_yaml(RECIPES / "sft.yaml")
    task = get_task(recipe["task"], **recipe.get("task_args", {}))
    console.rule("[bold]rankrl demo[/]: a tiny listwise reranker trained from scratch")
    num_train, num_heldout = (SMOKE_TRAIN, SMOKE_HELDOUT) if smoke else (NUM_TRAIN, NUM_HELDOUT)
    workspace = prepare_toy_workspace(
        output_dir, task, num_train, num_heldout, seed, teacher_miss_rate=TEACHER_MISS_RATE
    )
    heldout = load_dataset_file(workspace.heldout_path).to_list()
    console.print(f"toy data and a {num_train}-example training set in {output_dir}")
    scores = {"random order": random_order_ndcg(heldout, seed=seed)}
    scores["before training"] = _evaluate("before training", workspace.model_dir, heldout, task, console)
    common = dict(dataset=str(workspace.train_path), eval_dataset=str(workspace.heldout_path), seed=seed)
    common.update(SMOKE_OVERRIDES if smoke else {})

    console.rule("stage 1: SFT")
    sft_dir = output_dir / "sft"
    sft_overrides = dict(common, model_name_or_path=str(workspace.model_dir), output_dir=str(sft_dir))
    sft_trainer = _train_stage(sft, RECIPES / "sft.yaml", sft_overrides)
    scores["after SFT"] = _evaluate("after SFT", sft_dir, heldout, task, console)

    console.rule("stage 2: GRPO")
    grpo_dir = output_dir / "grpo"
    grpo_overrides = dict(common, model_name_or_path=str(sft_dir), output_dir=str(grpo_dir))
    grpo_trainer = _train_stage(grpo, RECIPES / "grpo.yaml", grpo_overrides)
    scores["after GRPO"] = _evaluate("after GRPO", grpo_dir, heldout, task, console)

    histories = (sft_trainer.state.log_history, grpo_trainer.state.log_history)
    plot_path = plot_history(*histories, output_dir / "demo.png")
    console.print(results_table(scores, len(heldout)))
    console.print(f"final checkpoint: {grpo_dir}\nplot: {plot_path}\ntotal time: {time.time() - start:.0f} s")
    return scores
