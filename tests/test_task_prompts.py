"""One prompt per task: synthesis, training (SFT and GRPO) and evaluation render the same messages.

For every registered task, the first example of its toy rows is rendered by the code each stage runs:
``rankrl synth``'s plan (the teacher's prompt before the recipe's ``teacher_suffix``), the SFT and GRPO
datasets the entry scripts train on, and the evaluation strategy's first request for a row holding exactly
that example's documents (``rankrl tts`` for math). The task is built from the same non-default
``task_args`` everywhere, so an option that one stage forgot would show here. Evaluation may only add an
assistant turn that pre-fills the answer (yes/no scoring opens the answer as its SFT target does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from datasets import Dataset

from core.data import write_dataset
from core.generation import Messages
from data_synth.config import SynthConfig
from data_synth.pipeline import make_plan
from tasks import TASKS, expand_rows, get_task
from tasks.strategy import StrategyOptions, rerank_rows
from tests.oracles import FunctionBackend
from trainers.grpo import grpo_dataset
from trainers.sft import sft_dataset

TASK_ARGS: dict[str, dict[str, Any]] = {  # one non-default option each, where the task has one
    "listwise": {"max_passage_words": 3, "use_system_prompt": False},
    "setwise": {"max_passage_words": 3, "negatives_per_query": 2},
    "pointwise": {"max_passage_words": 3},
    "rubric": {"max_passage_words": 3, "query_type": "question"},
    "yesno": {"max_passage_words": 3},
    "groupwise": {"max_passage_words": 3, "group_size": 3},
    "math": {"use_system_prompt": False},
}


def _eval_prompt(task: Any, example: dict) -> Messages:
    """The first prompt the task's strategy sends for a row holding just ``example``'s documents."""
    shown = len(example["candidates"])
    options = StrategyOptions(
        window=shown, num_child=max(shown - 1, 1), top_k=1, group_size=shown, shuffle_groups=False,
        stages=f"{shown}@1", max_new_tokens=4,
    )  # fmt: skip
    sent: list[Messages] = []
    backend = FunctionBackend(
        lambda messages: sent.append(messages) or "no answer",
        score=lambda messages, tokens: sent.append(messages) or [-1.0] * len(tokens),
    )
    rerank_rows([example], task.strategy(options), backend)
    return sent[0]


def _tts_prompt(folder: Path, task_args: dict, example: dict) -> Messages:
    """The first prompt ``rankrl tts`` sends for a dataset holding just ``example``."""
    from evaluation.tts_config import TTSConfig
    from evaluation.tts_run import run_tts

    write_dataset([example], folder / "problems.jsonl", kind="reasoning")
    sent: list[Messages] = []
    config = TTSConfig(
        dataset=str(folder / "problems.jsonl"), output_dir=str(folder / "tts"), task_args=task_args,
        n_values=[1], max_new_tokens=4, save_samples=False,
    )  # fmt: skip
    run_tts(config, FunctionBackend(lambda messages: sent.append(messages) or "<answer>1</answer>"))
    return sent[0]


@pytest.mark.parametrize("name", list(TASKS))
def test_synthesis_training_and_evaluation_render_one_prompt(tmp_path, name):
    task = get_task(name, **TASK_ARGS[name])
    rows, _ = task.toy_splits(6, 0, seed=3)
    examples, _ = expand_rows(task, rows)
    config = SynthConfig(
        task=name, task_args=TASK_ARGS[name], toy_queries=6, seed=3, model="teacher", teacher_suffix=""
    )
    plan = make_plan(config, config.task_object(), "teacher")
    synthesis = plan.requests[0].messages
    dataset = Dataset.from_list(examples)
    sft, grpo = sft_dataset(task, dataset)[0]["prompt"], grpo_dataset(task, dataset)[0]["prompt"]
    first = examples[0]
    if task.row_kind == "reasoning":
        evaluation = _tts_prompt(tmp_path, TASK_ARGS[name], first)
    else:
        evaluation = _eval_prompt(task, first)
    prefill = evaluation[len(synthesis) :]
    assert synthesis == sft == grpo == evaluation[: len(synthesis)]
    assert prefill == [] or (len(prefill) == 1 and prefill[0]["role"] == "assistant")
    assert task.target(first).startswith(prefill[0]["content"] if prefill else "")
    assert plan.units[0].example["example_id"] == first["example_id"]


@pytest.mark.parametrize("name", list(TASKS))
def test_synthesis_dry_run_prints_the_task_s_prompts_and_calls_no_teacher(tmp_path, capsys, name):
    from rankrl.cli import main

    recipe = tmp_path / "synth.yaml"
    settings = {"task": name, "task_args": TASK_ARGS[name], "toy_queries": 4, "model": "teacher"}
    recipe.write_text(yaml.safe_dump({**settings, "base_url": "http://127.0.0.1:9/v1", "samples": 2}))
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", str(recipe), f"output_dir={tmp_path / 'out'}", "--dry-run", "show_prompts=1"])
    shown = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    task = get_task(name, **TASK_ARGS[name])
    examples, _ = expand_rows(task, task.toy_splits(4, 0, seed=0)[0])
    prompts = len(examples)
    counts = f"task {name}: 4 input rows -> {prompts} prompts x 2 samples = {2 * prompts} requests (0 cached"
    assert exit_info.value.code == 0 and counts in shown
    assert " ".join(task.prompt(examples[0])[-1]["content"].split()) in shown
    assert not (tmp_path / "out/train.parquet").exists()
