"""Benchmark: the per-step time of rankrl's GRPO and SFT paths against plain TRL trainers, same run.

What it measures, per stage (``--stages``, default both), on the demo recipe (``recipes/demo/<stage>.yaml``)
with the toy data and tiny model of ``--smoke`` runs (:mod:`rankrl.smoke`), on CPU in fp32:

- rankrl: ``trainers.<stage>.main``, unchanged: GRPO through
  :class:`trainers.trl_overrides.RankRLGRPOTrainer` (epoch-seeded sampler, reward protocol, phase timers),
  SFT through TRL's ``SFTTrainer``, both with :func:`trainers.pipeline.train_and_save` adding the
  :class:`trainers.throughput.ThroughputCallback` and logging every step.
- baseline: plain ``trl.GRPOTrainer`` / ``trl.SFTTrainer`` built from the identical ``GRPOConfig`` /
  ``SFTConfig``, the same model and tokenizer (loaded by :func:`trainers.pipeline.policy`), the same dataset
  rows and prompt column, and for GRPO the same reward functions and weights.

A step is the wall time between two consecutive ``on_step_end`` callbacks (data, generation, rewards,
forward, backward, optimizer, every callback and the per-step logging), so each run's first (warm-up) step
is never counted. The two arms alternate, ``--rounds`` rounds of ``--steps`` steps each, in the order
A B, B A, A B, ... so machine noise and drift hit both. The script prints each arm's median step time and
the ratio rankrl / TRL: the median over rounds of the ratio of the two runs' median step times (pairing
runs made seconds apart cancels slower changes in the machine's load). Target: ratio <= 1.05 for both
stages. Torch runs ``--threads`` intra-op threads (default 1): on a small machine shared with other jobs,
2 threads on 2 busy cores made single steps up to 20x slower at random, drowning the difference measured.

Run: ``HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/step_overhead.py [--stages grpo sft] [--rounds 6]
[--steps 8] [--batch-size 16] [--num-generations 8] [--completion-length 32] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from trl import GRPOTrainer, SFTTrainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.recipe import apply_overrides, read_yaml  # noqa: E402
from rankrl.smoke import ToyWorkspace, prepare_toy_workspace, smoke_overrides  # noqa: E402
from rewards import resolve_rewards  # noqa: E402
from tasks import get_task  # noqa: E402
from trainers.configs import STAGES, build_stage_configs  # noqa: E402
from trainers.pipeline import policy, setup  # noqa: E402

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "demo"
TARGET = 1.05


class StepTimer(TrainerCallback):
    """Per run, the wall times between consecutive ``on_step_end`` calls: whole steps, the first excluded."""

    def __init__(self) -> None:
        self.runs: list[list[float]] = []
        self._last: float | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Start a new run's list, so no interval spans two runs."""
        self.runs.append([])
        self._last = None

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Record the time since the previous step ended."""
        now = time.perf_counter()
        if self._last is not None:
            self.runs[-1].append(now - self._last)
        self._last = now


def stage_config(stage: str, workspace: ToyWorkspace, output_dir: Path, args: argparse.Namespace) -> dict:
    """The flat recipe both arms of ``stage`` are built from: the demo recipe on the toy workspace."""
    config = {
        **read_yaml(RECIPES / f"{stage}.yaml"),
        **smoke_overrides(stage, workspace, output_dir),
        "max_steps": args.steps,
        "per_device_train_batch_size": args.batch_size,
        "eval_dataset": None,
        "rich_progress": False,
        "disable_tqdm": True,
    }
    if stage == "grpo":
        config.update(num_generations=args.num_generations, max_completion_length=args.completion_length)
    return apply_overrides(config, [])


def run_rankrl(stage: str, config: dict, timer: StepTimer) -> None:
    """Train with ``trainers.<stage>.main`` as ``rankrl train`` does, with ``timer`` added to its trainer."""
    module = importlib.import_module(STAGES[stage])
    train_and_save = module.train_and_save

    def timed(trainer: Any, *rest: Any) -> Any:
        trainer.add_callback(timer)
        return train_and_save(trainer, *rest)

    with mock.patch.object(module, "train_and_save", timed):
        module.main(*build_stage_configs(config, f"{stage}.yaml"))


def run_trl(stage: str, config: dict, timer: StepTimer) -> None:
    """Train the plain TRL trainer of ``stage`` built from the same configs, model, data and rewards."""
    script_args, training_args, model_args = build_stage_configs(config, f"{stage}.yaml")
    task, rows = setup(script_args, training_args)
    common = {"args": training_args, "callbacks": [timer], **policy(model_args)}
    if stage == "grpo":
        reward_funcs, training_args.reward_weights = resolve_rewards(script_args.rewards)
        dataset = rows.map(lambda row: {"prompt": task.prompt(row)})
        trainer = GRPOTrainer(reward_funcs=reward_funcs, train_dataset=dataset, **common)
    else:
        dataset = rows.map(
            lambda row: {
                "prompt": task.prompt(row),
                "completion": [{"role": "assistant", "content": task.target(row)}],
            },
            remove_columns=rows.column_names,
        )
        trainer = SFTTrainer(train_dataset=dataset, **common)
    trainer.train()


def compare(stage: str, workspace: ToyWorkspace, workdir: Path, args: argparse.Namespace) -> None:
    """Alternate the two arms of ``stage`` for ``args.rounds`` rounds; print their medians and ratio."""
    arms = {"rankrl": run_rankrl, "trl": run_trl}
    timers = {name: StepTimer() for name in arms}
    for round_index in range(args.rounds):
        order = list(arms) if round_index % 2 == 0 else list(arms)[::-1]
        for name in order:
            config = stage_config(stage, workspace, workdir / f"{stage}-{name}", args)
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                arms[name](stage, config, timers[name])  # quiet: both arms log every step
    summarise(stage, timers)


def summarise(stage: str, timers: dict[str, StepTimer]) -> None:
    """Print each arm's median step time and the median over rounds of the paired ratio rankrl / TRL."""
    steps = {name: [step for run in timer.runs for step in run] for name, timer in timers.items()}
    medians = {name: statistics.median(values) for name, values in steps.items()}
    round_ratios = [
        statistics.median(ours) / statistics.median(theirs)
        for ours, theirs in zip(timers["rankrl"].runs, timers["trl"].runs, strict=True)
    ]
    ratio = statistics.median(round_ratios)
    print(
        f"{stage.upper():<4}  rankrl {medians['rankrl'] * 1e3:7.1f} ms/step   TRL {medians['trl'] * 1e3:7.1f}"
        f" ms/step (medians of {len(steps['trl'])} steps each)   ratio rankrl/TRL {ratio:.3f}, median of "
        f"{len(round_ratios)} rounds ({'meets' if ratio <= TARGET else 'misses'} target <= {TARGET})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", choices=sorted(STAGES), default=["grpo", "sft"])
    parser.add_argument("--rounds", type=int, default=6, help="runs of each arm, alternating")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run (the first not timed)")
    parser.add_argument("--batch-size", type=int, default=16, help="per-device batch (GRPO: completions)")
    parser.add_argument("--num-generations", type=int, default=8, help="GRPO completions per prompt")
    parser.add_argument("--completion-length", type=int, default=32, help="GRPO max_completion_length")
    parser.add_argument("--train-rows", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step of every run is not timed")
    torch.set_num_threads(args.threads)

    config = read_yaml(RECIPES / "grpo.yaml")
    task = get_task(config["task"], **config.get("task_args", {}))
    with tempfile.TemporaryDirectory() as workdir:
        workspace = prepare_toy_workspace(Path(workdir) / "toy", task, args.train_rows, num_heldout=8)
        print(f"tiny model, toy data, CPU fp32, {args.threads} thread(s); ", end="")
        print(f"{args.rounds} rounds x {args.steps} steps per arm, alternating")
        for stage in args.stages:
            compare(stage, workspace, Path(workdir), args)


if __name__ == "__main__":
    main()
