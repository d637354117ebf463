"""LoRA and QLoRA (SFT and GRPO) on the tiny model, and ``rankrl export`` merging an adapter into a model.

QLoRA loads the model in 4 bits through bitsandbytes (its CPU path), trains LoRA adapters over the frozen
quantized weights and saves the adapter; the export merges it into the full-precision base. The merged
checkpoint must load with plain ``AutoModelForCausalLM`` and give the adapter model's logits. A LoRA stage
that starts from another stage's adapter (SFT-LoRA then GRPO-LoRA) must keep the first delta: its export and
``load_model`` give the logits of the whole chain.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from trl import ModelConfig

from core.models import ModelLoadError, load_model
from core.recipe import apply_overrides, read_yaml
from rankrl.cli import main
from rankrl.smoke import prepare_toy_workspace, smoke_overrides
from tasks import get_task
from trainers import grpo, sft
from trainers.configs import build_stage_configs
from trainers.export import export_merged

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
    sft.main(*build_stage_configs(apply_overrides(config, []), "sft.yaml"))


def _grpo(workspace, output_dir: Path, **overrides) -> grpo.RankRLGRPOTrainer:
    recipe = read_yaml(RECIPE.with_name("grpo.yaml"))
    config = {**recipe, **smoke_overrides("grpo", workspace, output_dir), **LORA, **overrides}
    config.update(eval_dataset=None, rich_progress=False, rewards=["tests.recording_rewards:text_length"])
    return grpo.main(*build_stage_configs(apply_overrides(config, []), "grpo.yaml"))


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
    trainer = _grpo(workspace, tmp_path, load_in_4bit=True)
    assert any("Linear4bit" in type(module).__name__ for module in trainer.model.modules())
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(workspace.model_dir), tmp_path)
    lora_b = [param for key, param in adapted.named_parameters() if "lora_B" in key]
    assert lora_b and any(param.abs().sum() > 0 for param in lora_b)


def test_lora_on_a_lora_stage_keeps_the_whole_chain(workspace, tmp_path):
    _train(workspace, tmp_path / "sft")
    sft_dir = str(tmp_path / "sft")
    _grpo(workspace, tmp_path / "grpo", model_name_or_path=sft_dir, save_strategy="steps", save_steps=1)
    for folder in (tmp_path / "grpo", tmp_path / "grpo" / "checkpoint-3"):  # a checkpoint: a whole chain too
        adapter_config = json.loads((folder / "adapter_config.json").read_text())
        assert adapter_config["base_model_name_or_path"] == str((tmp_path / "grpo" / "base").resolve())
    assert (tmp_path / "grpo" / "base" / "tokenizer_config.json").is_file()
    base = AutoModelForCausalLM.from_pretrained(workspace.model_dir)
    sft_merged = PeftModel.from_pretrained(base, tmp_path / "sft").merge_and_unload()
    chain = PeftModel.from_pretrained(sft_merged, tmp_path / "grpo")
    ids = torch.arange(3, 40).unsqueeze(0)
    unmerged = _logits(chain, ids)
    with chain.disable_adapter():
        assert not torch.allclose(unmerged, _logits(chain, ids))  # the GRPO adapter was trained
    expected = _logits(chain.merge_and_unload(), ids)  # the same function up to float rounding
    assert (unmerged - expected).abs().max().item() < 1e-4
    export_merged(tmp_path / "grpo", tmp_path / "merged", dtype="float32")
    loaded = load_model(ModelConfig(model_name_or_path=str(tmp_path / "grpo"), dtype="float32"))
    for model in (AutoModelForCausalLM.from_pretrained(tmp_path / "merged"), loaded):
        diff = (_logits(model, ids) - expected).abs().max().item()
        assert diff < 1e-5, diff


def test_full_fine_tuning_from_an_adapter_folder_trains_the_merged_weights(workspace, tmp_path):
    _train(workspace, tmp_path / "sft")
    merged = load_model(ModelConfig(model_name_or_path=str(tmp_path / "sft"), dtype="float32"))
    assert all(parameter.requires_grad for parameter in merged.parameters())  # PEFT had frozen them
    _train(workspace, tmp_path / "full", model_name_or_path=str(tmp_path / "sft"), use_peft=False)
    full = load_file(tmp_path / "full" / "model.safetensors")
    start = merged.state_dict()
    assert any(not torch.equal(full[name], start[name]) for name in full if name in start)


def test_qlora_cannot_start_from_an_adapter_folder(workspace, tmp_path):
    _train(workspace, tmp_path / "sft")
    with pytest.raises(ModelLoadError, match="rankrl export"):
        _train(workspace, tmp_path / "qlora", model_name_or_path=str(tmp_path / "sft"), load_in_4bit=True)
