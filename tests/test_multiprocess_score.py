"""Score learning (``stage: score``) with 2 processes on one CPU machine: DDP, ZeRO-3 and ZeRO-3 with LoRA.

Like ``tests/test_multiprocess.py``, every run is the real command line as a subprocess, ``python -m
rankrl.cli train recipes/demo/score.yaml --launch recipes/accelerate/cpu_<x>.yaml key=value ...``, run under
``accelerate launch`` with 2 processes over gloo. Each run must exit 0, must have run 2 processes (the
Trainer's "Total train batch size" is the per-device groups x 2) and must save a checkpoint that reloads in
this fresh process with moved weights (or a trained adapter); the ZeRO-3 run also scores the held-out rows
with the yesno strategy during and after training (every rank runs the same forwards).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from rankrl.smoke import prepare_toy_workspace
from tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 300
PER_DEVICE_GROUPS = 2
CACHE_HOME = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
EXTENSIONS_DIR = CACHE_HOME / "rankrl" / "torch_extensions"  # DeepSpeed's compiled CPU ops, kept across runs
pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]

RUNS = {  # name: (accelerate config, extra overrides)
    "ddp": ("cpu_ddp2", {"loss": "lambdaloss"}),
    "zero3": (
        "cpu_zero3",
        {
            "loss": "listwise",
            "eval_max_samples": 4,
            "eval_steps_ndcg": 2,
            "save_strategy": "steps",
            "save_steps": 2,
        },
    ),
    "zero3-lora": ("cpu_zero3", {"loss": "bce", "use_peft": True, "lora_r": 4, "lora_alpha": 8}),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    task = get_task("yesno")
    return prepare_toy_workspace(tmp_path_factory.mktemp("toy"), task, num_train=64, num_heldout=8)


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(EXTENSIONS_DIR))
    return env


def _train(workspace, output_dir: Path, launch: str, extra: dict) -> str:
    values = {
        "model_name_or_path": str(workspace.model_dir),
        "dataset": str(workspace.train_path),
        "eval_dataset": None,
        "output_dir": str(output_dir),
        "max_steps": 2,
        "per_device_train_batch_size": PER_DEVICE_GROUPS,
        "learning_rate": 1e-2,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1,
        "log_level": "info",  # the Trainer then logs "Total train batch size (w. parallel, ...)"
        "resume": False,
        **extra,
    }
    if "eval_max_samples" in extra:
        values["eval_dataset"] = str(workspace.heldout_path)
    overrides = [f"{key}={json.dumps(value)}" for key, value in values.items()]
    command = [sys.executable, "-m", "rankrl.cli", "train", "recipes/demo/score.yaml"]
    command += ["--launch", f"recipes/accelerate/{launch}.yaml", *overrides]
    try:
        done = subprocess.run(
            command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(command[:7])} timed out after {RUN_TIMEOUT_S}s")
    output = done.stdout + done.stderr
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command[:7])} exited {done.returncode}; output tail:\n{output[-6000:]}")
    return output


def _total_batch(output: str) -> int:
    lines = [line for line in output.splitlines() if "Total train batch size" in line]
    assert lines, f"no 'Total train batch size' line in the output:\n{output[-3000:]}"
    return int(lines[-1].rsplit("=", 1)[1])


@pytest.fixture(scope="module")
def runs(workspace, tmp_path_factory):
    """Each entry of RUNS, run once on first use: name -> (output dir, combined output)."""
    done: dict[str, tuple[Path, str]] = {}

    def run(name: str) -> tuple[Path, str]:
        if name not in done:
            output_dir = tmp_path_factory.mktemp(name)
            done[name] = output_dir, _train(workspace, output_dir, *RUNS[name])
        return done[name]

    return run


@pytest.mark.parametrize("name", ["ddp", "zero3"])
def test_two_processes_score_train_and_save_a_checkpoint_that_reloads(name, runs, workspace):
    output_dir, output = runs(name)
    assert _total_batch(output) == 2 * PER_DEVICE_GROUPS, "only one process ran"
    base = AutoModelForCausalLM.from_pretrained(workspace.model_dir).state_dict()
    reloaded = AutoModelForCausalLM.from_pretrained(output_dir).state_dict()
    assert reloaded.keys() == base.keys()
    assert all(reloaded[key].shape == base[key].shape for key in base)  # ZeRO-3 gathered on save
    assert any(not torch.equal(reloaded[key], base[key]) for key in base), "the saved weights never moved"
    assert (output_dir / "modules.json").is_file()  # written once, by the main process


def test_zero3_scores_the_held_out_rows_during_and_after_training(runs):
    output_dir, _ = runs("zero3")
    final = json.loads((output_dir / "all_results.json").read_text())["eval_ndcg@10"]
    state = json.loads((output_dir / "checkpoint-2" / "trainer_state.json").read_text())
    during = [entry["eval_ndcg@10"] for entry in state["log_history"] if "eval_ndcg@10" in entry]
    assert len(during) == 1 and 0.0 < during[0] <= 1.0 and 0.0 < final <= 1.0


def test_lora_under_zero3_saves_a_trained_adapter(runs):
    output_dir, output = runs("zero3-lora")
    assert _total_batch(output) == 2 * PER_DEVICE_GROUPS, "only one process ran"
    adapter = load_file(output_dir / "adapter_model.safetensors")
    lora_b = [tensor for key, tensor in adapter.items() if "lora_B" in key]
    assert lora_b and any(tensor.abs().sum() > 0 for tensor in lora_b), "lora_B is still all zeros"
