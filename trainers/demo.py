"""``rankrl demo``: train a tiny listwise reranker from scratch with SFT, then GRPO, on a toy task.

The toy task (``data_synth.toy``): a query of one or two made-up words and 5–8 passages of one or two
words; a passage's relevance is the number of query words it contains. Held-out queries are word sets never
seen in training. The demo evaluates held-out nDCG@10 before training, after SFT and after GRPO, next to
a random ordering, through the same recipes, entry scripts and evaluation a 7B run uses.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console

from trainers.configs import ScriptArguments, apply_overrides, build_configs, read_yaml
from trainers.data import load_dataset_file
from trainers.evaluate import evaluate_rankings, random_order_ndcg
from trainers.smoke import prepare_toy_workspace
from trainers.tasks import get_task

RECIPES = Path(__file__).resolve().parent.parent / "recipes" / "demo"
NUM_TRAIN = 25_600
NUM_HELDOUT = 1000


def _stage_configs(recipe: Path, overrides: dict[str, Any]) -> tuple[Any, ...]:
    from trl import GRPOConfig, ModelConfig, SFTConfig

    config = apply_overrides(read_yaml(recipe), [f"{k}={v}" for k, v in overrides.items()])
    training_config = GRPOConfig if config.get("stage") == "grpo" else SFTConfig
    return build_configs(config, (ScriptArguments, training_config, ModelConfig), str(recipe))


def _evaluate(label: str, model_dir: Path, rows: list[dict], task: Any, console: Console) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    result = evaluate_rankings(model, tokenizer, rows, task)
    console.print(
        f"  held-out nDCG@10 {label}: [bold]{result.ndcg:.3f}[/] (answers repaired: {result.repaired:.1%})"
    )
    return result.ndcg


def run_demo(output_dir: Path, seed: int = 0) -> dict[str, float]:
    """Run the demo end to end; return held-out nDCG@10 per stage (and the random-order baseline)."""
    from trainers import grpo, sft

    console = Console()
    start = time.time()
    sft_recipe = read_yaml(RECIPES / "sft.yaml")
    task = get_task(sft_recipe["task"], **sft_recipe.get("task_args", {}))
    console.rule("[bold]rankrl demo[/]: a tiny listwise reranker trained from scratch")
    workspace = prepare_toy_workspace(output_dir, task, NUM_TRAIN, NUM_HELDOUT, seed)
    heldout = load_dataset_file(workspace.heldout_path).to_list()
    scores = {"random order": random_order_ndcg(heldout, seed=seed)}
    console.print(f"toy data and tiny model in {output_dir} ({time.time() - start:.0f} s)")
    scores["before training"] = _evaluate("before training", workspace.model_dir, heldout, task, console)

    paths = dict(dataset=workspace.train_path, eval_dataset=workspace.heldout_path, seed=seed)
    console.rule("stage 1: SFT")
    sft_dir = output_dir / "sft"
    sft_trainer = sft.main(
        *_stage_configs(
            RECIPES / "sft.yaml", dict(paths, model_name_or_path=workspace.model_dir, output_dir=sft_dir)
        )
    )
    scores["after SFT"] = _evaluate("after SFT", sft_dir, heldout, task, console)

    console.rule("stage 2: GRPO")
    grpo_dir = output_dir / "grpo"
    grpo_trainer = grpo.main(
        *_stage_configs(RECIPES / "grpo.yaml", dict(paths, model_name_or_path=sft_dir, output_dir=grpo_dir))
    )
    scores["after GRPO"] = _evaluate("after GRPO", grpo_dir, heldout, task, console)

    from trainers.demo_report import plot_history, results_table

    plot_path = plot_history(
        sft_trainer.state.log_history, grpo_trainer.state.log_history, output_dir / "demo.png"
    )
    console.print(results_table(scores, len(heldout)))
    console.print(f"final checkpoint: {grpo_dir}\nplot: {plot_path}\ntotal time: {time.time() - start:.0f} s")
    return scores
