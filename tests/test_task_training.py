"""Every task trains through ``rankrl train --smoke``: SFT from labels alone, then GRPO from that checkpoint.
(Training on a task's ``rankrl synth`` output is what every paper chain of ``tests/test_recipes.py`` runs.)

The demo recipes with ``task``/``task_args`` switched run on the task's toy rows and a tiny model whose
tokenizer learnt the task's prompts. SFT must change every weight and lower its loss; GRPO, started from
the SFT checkpoint with the task's default rewards (a model that has never seen the format earns one
constant reward and GRPO would have no advantage to follow), must change the weights and log the task's
reward at every step with a spread inside the batch (the signal GRPO follows).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rankrl.cli import main
from rewards import resolve_rewards
from tasks import TASKS, get_task
from tests.checkpoints import model_weights

ROOT = Path(__file__).resolve().parents[1]
GRPO = ["num_generations=4", "per_device_train_batch_size=8", "temperature=1.0", "max_steps=2"]
SETTINGS = {  # task -> (task_args, GRPO overrides beyond GRPO)
    "listwise": ({"answer_mode": "partial"}, []),
    "setwise": ({"negatives_per_query": 7}, []),
    "pointwise": ({"negatives_per_query": 1}, ["group_by_query=true"]),  # a query's pairs in one batch
    "rubric": ({}, ["group_by_query=true"]),
    "yesno": ({}, []),
    "groupwise": ({"group_size": 4}, ["max_completion_length=48"]),
    "math": ({}, ["num_generations=8", "per_device_train_batch_size=16"]),  # more samples: a spread
}
pytestmark = pytest.mark.slow


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    return [name for name, tensor in after.items() if not torch.equal(tensor, before[name])]


def _history(output_dir: Path) -> list[dict]:
    """The run's logged entries (``OUTPUT_DIR/trainer_state.json``)."""
    return json.loads((output_dir / "trainer_state.json").read_text())["log_history"]


@pytest.fixture(scope="module", params=list(TASKS))
def trained(request, tmp_path_factory):
    """``(task name, smoke folder)`` after SFT then GRPO of the task through the CLI."""
    name = request.param
    task_args, grpo = SETTINGS[name]
    folder = tmp_path_factory.mktemp(name)
    args = [f"task={name}", f"task_args={json.dumps(task_args)}"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        patch.setenv("RANKRL_SMOKE_DIR", str(folder))
        patch.setenv("HF_HUB_OFFLINE", "1")
        sft = ["max_steps=30", "per_device_train_batch_size=12", "learning_rate=3e-3", "logging_steps=5"]
        main(["train", "recipes/demo/sft.yaml", "--smoke", *args, *sft])
        start = f"model_name_or_path={folder / 'demo' / 'sft' / 'sft'}"
        main(["train", "recipes/demo/grpo.yaml", "--smoke", *args, start, "rewards=null", *GRPO, *grpo])
    return name, folder


def test_sft_trains_every_weight_and_lowers_the_loss(trained):
    _, folder = trained
    [tiny] = folder.glob("toy-*/tiny-model")  # the smoke workspace's start model
    before, after = model_weights(tiny), model_weights(folder / "demo" / "sft" / "sft")
    assert len(_changed(before, after)) == len(after)
    losses = [entry["loss"] for entry in _history(folder / "demo" / "sft" / "sft") if "loss" in entry]
    assert len(losses) >= 2 and losses[-1] < losses[0]


def test_grpo_from_sft_moves_the_weights_under_the_task_s_rewards(trained):
    name, folder = trained
    sft_dir, grpo_dir = folder / "demo" / "sft" / "sft", folder / "demo" / "grpo" / "grpo"
    assert _changed(model_weights(sft_dir), model_weights(grpo_dir))
    history = _history(grpo_dir)
    _, weights = resolve_rewards(list(get_task(name).default_rewards))
    first = get_task(name).default_rewards[0]
    reward_name = first if isinstance(first, str) else first["name"]
    logged = [entry for entry in history if f"rewards/{reward_name}/mean" in entry]
    assert len(logged) == 2 and weights
    assert any(entry[f"rewards/{reward_name}/std"] > 0 for entry in logged)
