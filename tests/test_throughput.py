"""ThroughputCallback on a 3-step GRPO run of the tiny model: per-step metrics and a train-end summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.recipe import apply_overrides, read_yaml
from rankrl.smoke import prepare_toy_workspace, smoke_overrides
from tasks import get_task
from trainers import grpo
from trainers.configs import build_stage_configs
from trainers.throughput import ThroughputCallback, model_flops_utilisation, peak_memory_bytes

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "demo" / "grpo.yaml"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def grpo_trainer(tmp_path_factory):
    task = get_task("listwise", use_system_prompt=True, answer_mode="partial")
    workspace = prepare_toy_workspace(tmp_path_factory.mktemp("toy"), task, num_train=64, num_heldout=8)
    output_dir = tmp_path_factory.mktemp("grpo")
    overrides = {
        **smoke_overrides("grpo", workspace, output_dir),
        "max_steps": 3,
        "num_generations": 4,
        "max_completion_length": 16,
        "eval_dataset": None,
        "rich_progress": False,
    }
    config = apply_overrides({**read_yaml(RECIPE), **overrides}, [])
    return grpo.main(*build_stage_configs(config, "grpo.yaml"))


def _callback(trainer) -> ThroughputCallback:
    return next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, ThroughputCallback))


def test_every_step_logs_positive_throughput(grpo_trainer):
    steps = [entry for entry in grpo_trainer.state.log_history if "throughput/step_time_s" in entry]
    assert len(steps) == 3
    for entry in steps:
        assert entry["throughput/tokens_per_s_per_device"] > 0
        assert entry["throughput/generated_tokens_per_s_per_device"] > 0
        assert entry["throughput/peak_memory_gb"] > 0
        shares = [entry[f"throughput/{part}_share"] for part in ("generation", "reward", "training")]
        assert all(0 <= share <= 1 for share in shares) and shares[0] > 0
        assert sum(shares) == pytest.approx(1.0, abs=1e-6)
    assert any("monitor/invalid_rate" in entry for entry in grpo_trainer.state.log_history)


def test_summary_is_stored_and_logged(grpo_trainer):
    summary = _callback(grpo_trainer).summary
    assert summary["throughput_summary/steps"] == 3
    assert summary["throughput_summary/tokens_per_s_per_device"] > 0
    assert summary["throughput_summary/generated_tokens"] > 0
    assert summary["throughput_summary/peak_memory_gb"] > 0
    assert any("throughput_summary/total_tokens" in entry for entry in grpo_trainer.state.log_history)


def test_peak_memory_and_no_mfu_on_cpu():
    assert peak_memory_bytes() > 0
    import torch

    if not torch.cuda.is_available():
        assert model_flops_utilisation(torch.nn.Linear(2, 2), 1000.0) is None
