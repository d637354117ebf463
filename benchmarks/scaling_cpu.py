"""Benchmark: training samples/s of 1 vs 2 processes on one CPU machine, under DDP and DeepSpeed ZeRO-2.

What it measures, per stage (``--stages``, default SFT) and engine: a short run of the demo recipe
(``recipes/demo/<stage>.yaml``) on the toy data and tiny model of ``--smoke`` runs, launched the way users
launch it, ``python -m rankrl.cli train RECIPE --launch CONFIG key=value ...``, with the 2-process launch
configs ``recipes/accelerate/cpu_ddp2.yaml`` and ``recipes/accelerate/cpu_zero2.yaml`` and copies of them
with ``num_processes: 1``; ``OMP_NUM_THREADS=1``, so each process has one core. Per-device batch
``--batch-size`` (GRPO: completions) is the same in both, so 2 processes train twice the samples per step.

samples/s = global batch / median step time. The global batch is the Trainer's "Total train batch size",
checked to equal per-device batch x processes (a launch that silently ran one process fails). A step time
is rank 0's ``throughput/step_time_s`` from :class:`trainers.throughput.ThroughputCallback`, read from the
``trainer_state.json`` of the checkpoint saved at the last step; the first (warm-up) step is left out.
The script prints samples/s for 1 and 2 processes and the speedup 2 / 1 (ideal 2.0 on 2 free cores). No
target: this is a report, and on a 2-core machine shared with other jobs the numbers are noisy.

DeepSpeed's CPU ops JIT-compile on first use; ``TORCH_EXTENSIONS_DIR`` defaults to the cache the
multi-process tests use (``~/.cache/rankrl/torch_extensions``), so that cost is paid once per machine.

Run: ``HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/scaling_cpu.py [--stages sft grpo]
[--engines ddp zero2] [--steps 10] [--batch-size 8]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.recipe import read_yaml  # noqa: E402
from rankrl.smoke import ToyWorkspace, prepare_toy_workspace  # noqa: E402
from tasks import get_task  # noqa: E402

ENGINES = {"ddp": "cpu_ddp2", "zero2": "cpu_zero2"}
CACHE_HOME = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
RUN_TIMEOUT_S = 600


def launch_config(engine: str, processes: int, workdir: Path) -> Path:
    """A copy of the engine's 2-process CPU launch config with ``num_processes: processes``."""
    raw = read_yaml(ROOT / "recipes" / "accelerate" / f"{ENGINES[engine]}.yaml")
    path = workdir / f"{engine}-{processes}.yaml"
    path.write_text(yaml.safe_dump({**raw, "num_processes": processes}))
    return path


def overrides(stage: str, workspace: ToyWorkspace, output_dir: Path, args: argparse.Namespace) -> list[str]:
    """``key=value`` words that point the demo recipe at the toy workspace and log every step."""
    values = {
        "model_name_or_path": str(workspace.model_dir),
        "dataset": str(workspace.train_path),
        "eval_dataset": None,
        "output_dir": str(output_dir),
        "max_steps": args.steps,
        "per_device_train_batch_size": args.batch_size,
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "rich_progress": False,
        "disable_tqdm": True,
        "logging_steps": 1,
        "log_level": "info",  # the Trainer then logs "Total train batch size (w. parallel, ...)"
        "save_strategy": "steps",  # the checkpoint's trainer_state.json holds every step's log
        "save_steps": args.steps,
        "resume": False,
    }
    if stage == "grpo":
        values.update(num_generations=args.num_generations, max_completion_length=args.completion_length)
    return [f"{key}={json.dumps(value)}" for key, value in values.items()]


def train(stage: str, launch: Path, words: list[str]) -> str:
    """Run ``rankrl train`` with ``--launch launch`` in a subprocess; its output, or exit with the tail."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    env.setdefault("TORCH_EXTENSIONS_DIR", str(CACHE_HOME / "rankrl" / "torch_extensions"))
    command = [sys.executable, "-m", "rankrl.cli", "train", f"recipes/demo/{stage}.yaml"]
    command += ["--launch", str(launch), *words]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}; output tail:\n{output[-4000:]}")
    return output


def global_batch(output: str) -> int:
    """The Trainer's "Total train batch size" (per-device batch x processes): proof of how many ran."""
    lines = [line for line in output.splitlines() if "Total train batch size" in line]
    if not lines:
        raise SystemExit(f"no 'Total train batch size' line in the training output:\n{output[-3000:]}")
    return int(lines[-1].rsplit("=", 1)[1])


def median_step_seconds(output_dir: Path) -> float:
    """Median ``throughput/step_time_s`` over all steps but the first, from the last checkpoint's state."""
    checkpoint = max(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    steps = [entry["throughput/step_time_s"] for entry in history if "throughput/step_time_s" in entry]
    return statistics.median(steps[1:])


def samples_per_second(
    stage: str, engine: str, processes: int, workspace: ToyWorkspace, workdir: Path, args: argparse.Namespace
) -> float:
    """Train one configuration; its samples/s (global batch over the median step time)."""
    output_dir = workdir / f"{stage}-{engine}-{processes}"
    output = train(
        stage, launch_config(engine, processes, workdir), overrides(stage, workspace, output_dir, args)
    )
    batch = global_batch(output)
    if batch != args.batch_size * processes:
        raise SystemExit(
            f"{engine}: expected {processes} process(es), the Trainer reports global batch {batch}"
        )
    return batch / median_step_seconds(output_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", choices=["sft", "grpo"], default=["sft"])
    parser.add_argument("--engines", nargs="+", choices=sorted(ENGINES), default=["ddp", "zero2"])
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per run (the first not timed)")
    parser.add_argument("--batch-size", type=int, default=8, help="per-device batch (GRPO: completions)")
    parser.add_argument("--num-generations", type=int, default=4, help="GRPO completions per prompt")
    parser.add_argument("--completion-length", type=int, default=32, help="GRPO max_completion_length")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step is not timed")

    recipe = read_yaml(ROOT / "recipes" / "demo" / "sft.yaml")
    task = get_task(recipe["task"], **recipe.get("task_args", {}))
    with tempfile.TemporaryDirectory() as name:
        workdir = Path(name)
        workspace = prepare_toy_workspace(workdir / "toy", task, num_train=256, num_heldout=8)
        print(f"tiny model, toy data, CPU fp32, OMP_NUM_THREADS=1, per-device batch {args.batch_size}")
        for stage in args.stages:
            for engine in args.engines:
                one, two = (samples_per_second(stage, engine, n, workspace, workdir, args) for n in (1, 2))
                print(
                    f"{stage.upper():<4} {engine:<5}  1 process {one:7.1f} samples/s   "
                    f"2 processes {two:7.1f} samples/s   speedup {two / one:.2f}x (ideal 2.00x)"
                )


if __name__ == "__main__":
    main()
