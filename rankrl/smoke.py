"""Toy workspaces: toy data and a tiny model for ``--smoke`` runs of any recipe, the demo and tests.

``--smoke`` keeps a recipe's task, rewards, LoRA settings and trainer, and swaps in what makes it run in
seconds on a laptop: the toy corpus, a tiny model whose tokenizer knows the task's prompt text, a few steps
on CPU, no DeepSpeed, vLLM or trackers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.data import write_dataset
from core.tiny import TinyModelSpec, build_tiny_model
from tasks import Task, expand_rows

TOKENIZER_SAMPLE_ROWS = 2000


@dataclass(frozen=True)
class ToyWorkspace:
    """Where a toy run's model and data live."""

    model_dir: Path
    train_path: Path
    heldout_path: Path


def prepare_toy_workspace(
    workdir: str | Path,
    task: Task,
    num_train: int,
    num_heldout: int,
    seed: int = 0,
    spec: TinyModelSpec | None = None,
) -> ToyWorkspace:
    """Write the task's toy train / held-out rows and build a tiny model whose tokenizer was trained on the
    task's prompts and targets, under ``workdir``."""
    workdir = Path(workdir)
    train_rows, heldout_rows = task.toy_splits(num_train, num_heldout, seed=seed)
    workspace = ToyWorkspace(
        workdir / "tiny-model", workdir / "data/train.jsonl", workdir / "data/heldout.jsonl"
    )
    workspace.train_path.parent.mkdir(parents=True, exist_ok=True)
    write_dataset(train_rows, workspace.train_path, kind=task.row_kind)
    write_dataset(heldout_rows, workspace.heldout_path, kind=task.row_kind)
    examples, _ = expand_rows(task, train_rows[:TOKENIZER_SAMPLE_ROWS])
    texts = [
        "\n".join(m["content"] for m in task.prompt(example) if m["role"] == "user") + task.target(example)
        for example in examples
    ]
    build_tiny_model(workspace.model_dir, texts, spec, phrases=task.template_phrases(), seed=seed)
    return workspace


def smoke_overrides(stage: str, workspace: ToyWorkspace, output_dir: Path) -> dict[str, Any]:
    """Recipe keys that turn any recipe of ``stage`` into a seconds-long run on the toy workspace."""
    overrides: dict[str, Any] = {
        "model_name_or_path": str(workspace.model_dir),
        "dataset": str(workspace.train_path),
        "dataset_split": "train",
        "eval_dataset": str(workspace.heldout_path),
        "eval_max_samples": 8,
        "eval_steps_ndcg": 0,
        "max_train_samples": None,
        "output_dir": str(output_dir),
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "bf16": False,
        "fp16": False,
        "use_cpu": not torch.cuda.is_available(),
        "activation_checkpointing": False,
        "deepspeed": None,
        "dtype": "float32",
        "attn_implementation": None,
        "load_in_4bit": False,
        "load_in_8bit": False,
        "resume": False,
    }
    if stage == "grpo":
        overrides.update(
            num_generations=2,
            generation_batch_size=None,
            steps_per_generation=None,
            max_completion_length=32,
            generation_backend="hf",
        )
    elif stage == "score":
        overrides.update(max_length=512)
    else:
        overrides.update(max_length=512, packing=False)
    return overrides
