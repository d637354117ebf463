"""SFT and GRPO on the tiny model and the toy task: the loss falls, parameters move, reward rises.

These run the real entry scripts (``trainers.sft.main``, ``trainers.grpo.main``) on CPU with the demo's
recipes and small overrides, so they cover the path ``rankrl train`` and the demo take.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.recipe import apply_overrides, read_yaml
from rankrl.smoke import prepare_toy_workspace, smoke_overrides
from tasks import get_task
from trainers import grpo, sft
from trainers.configs import build_stage_configs

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "demo"
pytestmark = pytest.mark.slow


def _configs(stage: str, workspace, output_dir: Path, **overrides) -> tuple:
    recipe = read_yaml(RECIPES / f"{stage}.yaml")
    config = {**recipe, **smoke_overrides(stage, workspace, output_dir), **overrides}
    return build_stage_configs(apply_overrides(config, []), f"{stage}.yaml")


def _state(model) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def _logged(trainer, key: str) -> list[float]:
    return [entry[key] for entry in trainer.state.log_history if key in entry]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    task = get_task("listwise", use_system_prompt=True, answer_mode="partial")
    return prepare_toy_workspace(tmp_path_factory.mktemp("toy"), task, num_train=2048, num_heldout=64)


@pytest.fixture(scope="module")
def sft_run(workspace, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("sft")
    configs = _configs(
        "sft",
        workspace,
        output_dir,
        max_steps=80,
        per_device_train_batch_size=16,
        logging_steps=5,
        eval_max_samples=16,
    )
    initial = _state(AutoModelForCausalLM.from_pretrained(workspace.model_dir))
    return sft.main(*configs), initial, output_dir


def test_sft_lowers_the_loss(sft_run):
    losses = _logged(sft_run[0], "loss")
    assert len(losses) >= 10
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:2])


def test_sft_changes_every_weight_matrix(sft_run):
    trainer, initial, _ = sft_run
    trained = _state(trainer.model)
    matrices = [name for name, tensor in initial.items() if tensor.ndim == 2]
    assert matrices
    assert all(not torch.equal(initial[name], trained[name]) for name in matrices)


def test_saved_checkpoint_reloads_with_the_same_logits(sft_run, workspace):
    trainer, _, output_dir = sft_run
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    reloaded = AutoModelForCausalLM.from_pretrained(output_dir).eval()
    inputs = tokenizer(["[1] laza mavu", "<think></think>"], return_tensors="pt", padding=True)
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model(**inputs).logits
        actual = reloaded(**inputs).logits
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


def test_grpo_raises_mean_reward_and_logs_each_reward(sft_run, workspace, tmp_path):
    _, _, sft_dir = sft_run
    configs = _configs(
        "grpo",
        workspace,
        tmp_path,
        model_name_or_path=str(sft_dir),
        max_steps=40,
        per_device_train_batch_size=16,
        num_generations=8,
        learning_rate=3e-4,
        logging_steps=1,
        seed=0,
        rewards=[  # nDCG with left-out passages at their prompt-order positions, as this test was measured
            {"name": "ranking_metric", "args": {"mode": "partial", "format_fail": -1.0, "answer_fail": -1.0}},
            {"name": "listwise_monitor", "weight": 0.0, "args": {"mode": "partial"}},
        ],
    )
    before = _state(AutoModelForCausalLM.from_pretrained(sft_dir))
    trainer = grpo.main(*configs)
    rewards = _logged(trainer, "reward")
    assert len(rewards) == 40
    assert np.mean(rewards[-10:]) > np.mean(rewards[:10]) + 0.1
    assert _logged(trainer, "rewards/ranking_metric/mean") and _logged(
        trainer, "rewards/listwise_monitor/mean"
    )
    assert _logged(trainer, "monitor/invalid_rate") and _logged(trainer, "throughput/tokens_per_s_per_device")
    after = _state(trainer.model)
    assert any(not torch.equal(before[name], after[name]) for name in before)


def test_lora_sft_saves_an_adapter_that_peft_loads(workspace, tmp_path):
    from peft import PeftModel

    configs = _configs(
        "sft", workspace, tmp_path, max_steps=3, use_peft=True, lora_r=4, lora_alpha=8, learning_rate=1e-2
    )
    trainer = sft.main(*configs)
    assert (tmp_path / "adapter_config.json").is_file()
    base = AutoModelForCausalLM.from_pretrained(workspace.model_dir)
    adapted = PeftModel.from_pretrained(base, tmp_path)
    lora_b = [p for name, p in adapted.named_parameters() if "lora_B" in name]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)
    assert trainer.model.peft_config


def test_ranking_eval_config_ranks_held_out_rows_as_rankrl_eval_does(workspace, tmp_path):
    from tasks import get_task
    from trainers.evaluate import evaluate_with_strategy
    from trainers.pipeline import evaluation_strategy

    strategy_file = tmp_path / "eval.yaml"
    strategy_file.write_text("task: listwise\nwindow: 4\nstep: 2\nparse: lenient\nmax_new_tokens: 24\n")
    config = str(strategy_file)
    configs = _configs(
        "sft", workspace, tmp_path / "out", max_steps=2, eval_steps_ndcg=1, ranking_eval_config=config
    )
    trainer = sft.main(*configs)
    during = _logged(trainer, "eval_ndcg@10")
    assert len(during) == 2  # steps 1 and 2; step 2's is also the final result (not run twice)
    rows = [row for row in map(dict, _heldout(workspace))][:8]
    script_args = configs[0]
    strategy = evaluation_strategy(script_args, get_task(script_args.task, **script_args.task_args))
    expected = evaluate_with_strategy(trainer.model, trainer.processing_class, rows, strategy)
    assert during[-1] == pytest.approx(expected.ndcg)


def _heldout(workspace):
    from core.data import load_dataset_file

    return load_dataset_file(str(workspace.heldout_path))
