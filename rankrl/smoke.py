"""Toy workspaces: toy data and a tiny model for ``--smoke`` runs of any recipe, the demo and tests.

``--smoke`` keeps a recipe's task, rewards, LoRA settings, strategy and trainer, and swaps in what makes it
run in seconds on a laptop: the toy corpus, a tiny model whose tokenizer knows the task's prompt text, a few
steps on CPU, no DeepSpeed, vLLM or trackers; synthesis asks the offline ``labels`` teacher, evaluation
reranks the held-out toy queries. Every ``--smoke`` command of one task and ``task_args`` shares one
workspace (built once under ``$RANKRL_SMOKE_DIR``), so a chain's stages read each other's outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from core.benchmark_files import BenchmarkFiles, write_benchmark
from core.data import load_dataset_file, write_dataset
from core.tiny import TinyModelSpec, build_tiny_model
from tasks import Task, expand_rows, get_task
from tasks.toy import overlooking_teacher

TOKENIZER_SAMPLE_ROWS = 2000
SMOKE_TRAIN_ROWS, SMOKE_HELDOUT_ROWS = 64, 8


@dataclass(frozen=True)
class ToyWorkspace:
    """Where a toy run's model and data live."""

    model_dir: Path
    train_path: Path
    heldout_path: Path

    @classmethod
    def under(cls, workdir: str | Path) -> ToyWorkspace:
        """The workspace layout under ``workdir``."""
        workdir = Path(workdir)
        return cls(workdir / "tiny-model", workdir / "data/train.jsonl", workdir / "data/heldout.jsonl")

    @property
    def benchmark(self) -> BenchmarkFiles:
        """The held-out ranking rows as a benchmark folder (written by :func:`shared_toy_workspace`)."""
        folder = self.heldout_path.parent / "benchmark"
        return BenchmarkFiles(
            folder, folder / "corpus.jsonl", folder / "topics.tsv", folder / "qrels.txt", folder / "run.txt"
        )


def prepare_toy_workspace(
    workdir: str | Path,
    task: Task,
    num_train: int,
    num_heldout: int,
    seed: int = 0,
    spec: TinyModelSpec | None = None,
    teacher_miss_rate: float | None = None,
) -> ToyWorkspace:
    """Write the task's toy train / held-out rows and build a tiny model whose tokenizer was trained on the
    task's prompts and targets, under ``workdir``.

    With ``teacher_miss_rate`` (ranking tasks) the training rows carry the order of a teacher that overlooks
    that share of partial matches (:func:`tasks.toy.overlooking_teacher`) as their SFT target; the tokenizer
    is still trained on the labels' targets, so the vocabulary does not depend on the teacher.
    """
    train_rows, heldout_rows = task.toy_splits(num_train, num_heldout, seed=seed)
    workspace = ToyWorkspace.under(workdir)
    workspace.train_path.parent.mkdir(parents=True, exist_ok=True)
    texts = tokenizer_texts(task, train_rows)
    if teacher_miss_rate is not None:
        train_rows = overlooking_teacher(train_rows, teacher_miss_rate, seed)
    write_dataset(train_rows, workspace.train_path, kind=task.row_kind)
    write_dataset(heldout_rows, workspace.heldout_path, kind=task.row_kind)
    build_tiny_model(workspace.model_dir, texts, spec, phrases=task.template_phrases(), seed=seed)
    return workspace


def tokenizer_texts(task: Task, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The user prompt and target of each of ``task``'s examples of the first rows: what a tiny model's
    tokenizer is trained on."""
    examples, _ = expand_rows(task, rows[:TOKENIZER_SAMPLE_ROWS])
    return [
        "\n".join(m["content"] for m in task.prompt(example) if m["role"] == "user") + task.target(example)
        for example in examples
    ]


def prepare_multitask_workspace(
    workdir: str | Path,
    tasks: Sequence[Task],
    num_train: int,
    num_heldout: int,
    seed: int = 0,
    spec: TinyModelSpec | None = None,
) -> ToyWorkspace:
    """One workspace for several ranking tasks (``rankrl compare``): the toy ranking rows every ranking task
    shares, the held-out rows also as a benchmark, and one tiny model whose tokenizer was trained on every
    task's prompts, targets and template phrases, so each task starts from the same model."""
    if other := [task.name for task in tasks if task.row_kind != "ranking"]:
        raise ValueError(f"a multi-task toy workspace holds ranking tasks only; {other[0]!r} is not one")
    train_rows, heldout_rows = tasks[0].toy_splits(num_train, num_heldout, seed=seed)
    workspace = ToyWorkspace.under(workdir)
    workspace.train_path.parent.mkdir(parents=True, exist_ok=True)
    write_dataset(train_rows, workspace.train_path, kind="ranking")
    write_dataset(heldout_rows, workspace.heldout_path, kind="ranking")
    write_benchmark(heldout_rows, workspace.benchmark.folder, tag="toy")
    texts = [text for task in tasks for text in tokenizer_texts(task, train_rows)]
    phrases = list(dict.fromkeys(phrase for task in tasks for phrase in task.template_phrases()))
    build_tiny_model(workspace.model_dir, texts, spec, phrases=phrases, seed=seed)
    return workspace


def smoke_root() -> Path:
    """Where ``--smoke`` runs write: ``$RANKRL_SMOKE_DIR``, else ``outputs/smoke``."""
    return Path(os.environ.get("RANKRL_SMOKE_DIR", "outputs/smoke"))


def shared_toy_workspace(task: Task) -> ToyWorkspace:
    """The toy workspace of ``task`` (name and options) under :func:`smoke_root`, built once, atomically,
    with the held-out rows also written as a benchmark for ranking tasks."""
    key = json.dumps([task.name, asdict(task)], sort_keys=True, default=str)
    folder = smoke_root() / f"toy-{task.name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    if not folder.is_dir():
        partial = folder.with_name(f"{folder.name}.part-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        workspace = prepare_toy_workspace(partial, task, SMOKE_TRAIN_ROWS, SMOKE_HELDOUT_ROWS)
        if task.row_kind == "ranking":
            heldout = load_dataset_file(workspace.heldout_path, kind="ranking")
            write_benchmark(heldout, workspace.benchmark.folder, tag="toy")
        partial.replace(folder)
    return ToyWorkspace.under(folder)


def smoke_output(recipe: str | Path) -> Path:
    """Where ``--smoke`` runs of ``recipe`` write: ``smoke_root()/<recipe's folder>/<recipe name>``, so two
    papers' recipes of the same name (``reasonrank/qwen2.5-7b-sft.yaml``, ...) keep separate outputs."""
    path = Path(recipe)
    return smoke_root() / path.parent.name / path.stem


def smoke_settings(command: str, config: Mapping[str, Any], recipe: str) -> dict[str, Any]:
    """Recipe keys that turn ``rankrl COMMAND RECIPE`` (train, synth, eval or tts) into a seconds-long
    offline run on its task's shared toy workspace, writing under :func:`smoke_output`."""
    default_task = "math" if command == "tts" else "listwise"
    task = get_task(config.get("task") or default_task, **(config.get("task_args") or {}))
    workspace, output = shared_toy_workspace(task), smoke_output(recipe)
    if command == "train":
        stage = str(config.get("stage", "sft"))
        overrides = smoke_overrides(stage, workspace, output / stage)
        if config.get("group_by_query"):  # 8 prompts x 2 samples: the toy queries of 8 (or 4, 2) pairs fit
            overrides["per_device_train_batch_size"] = 16
        return overrides
    if command == "synth":
        return synth_smoke_overrides(workspace, output / "synth")
    if command == "eval":
        return eval_smoke_overrides(workspace, output / "eval")
    return tts_smoke_overrides(workspace, output / "tts")


def synth_smoke_overrides(workspace: ToyWorkspace, output_dir: Path) -> dict[str, Any]:
    """Synthesis on the workspace's training rows with the ``labels`` teacher."""
    inputs = {"beir": None, "trec_run": None, "rankllm": None, "toy_queries": 0}
    return {
        **inputs,
        "dataset": str(workspace.train_path),
        "dataset_split": "train",
        "teacher": "labels",
        "model": "labels",
        "samples": 1,
        "token_budget": 0,
        "output_dir": str(output_dir),
    }


def eval_smoke_overrides(workspace: ToyWorkspace, output_dir: Path) -> dict[str, Any]:
    """Reranking of the held-out toy queries by the workspace's tiny model (or the chain's ``model``)."""
    bench = workspace.benchmark
    return {
        "model": str(workspace.model_dir),
        "run": str(bench.run),
        "topics": str(bench.topics),
        "corpus": str(bench.corpus),
        "qrels": str(bench.qrels),
        "requests": None,
        "compare_run": None,
        "robustness": [],
        "engine": "hf",
        "dtype": "float32",
        "batch_size": 8,
        "max_new_tokens": 48,
        "output_dir": str(output_dir),
    }


def tts_smoke_overrides(workspace: ToyWorkspace, output_dir: Path) -> dict[str, Any]:
    """Test-time scaling on four held-out toy problems, two samples each, short completions."""
    return {
        "model": str(workspace.model_dir),
        "dataset": str(workspace.heldout_path),
        "problem_field": "problem",
        "answer_field": "answer",
        "max_problems": 4,
        "n_values": [1, 2],
        "max_new_tokens": 16,
        "budgets": [],
        "reward_model": None,
        "batch_size": 8,
        "dtype": "float32",
        "output_dir": str(output_dir),
    }


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
