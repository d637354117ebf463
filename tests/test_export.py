"""LoRA and QLoRA (SFT and GRPO) on the tiny model, and ``rankrl export`` merging an adapter into a model.

QLoRA loads the model in 4 bits through bitsandbytes (its CPU path), trains LoRA adapters over the frozen
quantized weights and saves the adapter; the export merges it into the full-precision base. The merged
checkpoint must load with plain ``AutoModelForCausalLM`` and give the adapter model's logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from trainers import sft
from trainers.cli import main, stage_config_types
from trainers.configs import apply_overrides, build_configs, read_yaml
from trainers.export import export_merged
from trainers.modeling import ModelLoadError
from trainers.smoke import prepare_toy_workspace, smoke_overrides
from trainers.tasks import get_task

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "demo" / "sft.yaml"
LORA = {"use_peft": True, "lora_r": 4, "lora_alpha": 8, "learning_rate": 1e-2, "max_steps": 3}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    task = get_task("listwise", use_system_prompt=True, answer_mode="partial")
    return prepare_toy_workspace(tmp_path_factory.mktemp("toy"), task, num_train=32, num_heldout=4)


def _train(workspace, output_dir: Path, **overrides) -> None:
    config = {**read_yaml(RECIPE), **smoke_overrides("sft", workspace, output_dir), **LORA, **overrides}
    config.update(eval_dataset=None, rich_progress=False)
    sft.main(*build_configs(apply_overrides(config, []), stage_config_types("sft"), "sft.yaml"))


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("quantized", [False, True], ids=["lora", "qlora"])
def test_export_merges_the_adapter_into_a_loadable_checkpoint(quantized, workspace, tmp_path, capsys):
    _train(workspace, tmp_path / "adapter", load_in_4bit=quantized)
    adapter_config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(workspace.model_dir)
    main(["export", str(tmp_path / "adapter"), str(tmp_path / "merged"), "--dtype", "float32"])
    assert "merged checkpoint written" in capsys.readouterr().out
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    base = AutoModelForCausalLM.from_pretrained(workspace.model_dir)
    ids = torch.arange(3, 40).unsqueeze(0)
    assert not torch.allclose(_logits(merged, ids), _logits(base, ids))  # the adapter was trained
    adapted = PeftModel.from_pretrained(base, tmp_path / "adapter")
    diff = (_logits(merged, ids) - _logits(adapted, ids)).abs().max().item()
    assert diff < 1e-3, diff  # W + BA against Wx + B(Ax): the same function up to float rounding


def test_qlora_needs_use_peft(workspace, tmp_path):
    with pytest.raises(ModelLoadError, match="set use_peft: true"):
        _train(workspace, tmp_path, load_in_4bit=True, use_peft=False)


def test_export_rejects_bad_input_in_one_line(workspace, tmp_path):
    with pytest.raises(ModelLoadError, match="no adapter_config.json"):
        export_merged(workspace.model_dir, tmp_path / "out")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "./missing/base"}))
    with pytest.raises(ModelLoadError, match="no such local checkpoint folder"):
        export_merged(adapter, tmp_path / "out")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(ModelLoadError, match="not empty"):
        export_merged(adapter, tmp_path / "busy")


def test_grpo_trains_a_qlora_adapter(workspace, tmp_path):
    from trainers import grpo

    recipe = read_yaml(RECIPE.with_name("grpo.yaml"))
    config = {**recipe, **smoke_overrides("grpo", workspace, tmp_path), **LORA, "load_in_4bit": True}
    config.update(eval_dataset=None, rich_progress=False, rewards=["tests.recording_rewards:text_length"])
    trainer = grpo.main(*build_configs(apply_overrides(config, []), stage_config_types("grpo"), "grpo.yaml"))
    assert any("Linear4bit" in type(module).__name__ for module in trainer.model.modules())
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(workspace.model_dir), tmp_path)
    lora_b = [param for key, param in adapted.named_parameters() if "lora_B" in key]
    assert lora_b and any(param.abs().sum() > 0 for param in lora_b)
