"""Tests for trainers.configs: recipe YAML + key=value overrides into typed dataclasses; one-line errors."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from trl import GRPOConfig, ModelConfig, SFTConfig

from core.recipe import RecipeError, apply_overrides, build_configs, read_yaml
from trainers.configs import IGNORED_KEYS, STAGES, ScriptArguments, build_stage_configs, stage_config_types
from trainers.score import ScoreConfig

ROOT = Path(__file__).resolve().parents[1]
STAGED_RECIPES = sorted(
    path.relative_to(ROOT).as_posix()
    for path in (ROOT / "recipes").rglob("*.yaml")
    if isinstance(read_yaml(path), dict) and "stage" in read_yaml(path)
)


def _recipe(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _build(path: Path, *overrides: str) -> tuple:
    config = apply_overrides(read_yaml(path), overrides)
    return build_stage_configs(config, str(path))


def _one_line_error(path: Path, *overrides: str) -> str:
    with pytest.raises(RecipeError) as caught:
        _build(path, *overrides)
    message = str(caught.value)
    assert "\n" not in message
    return message


SFT_RECIPE = "stage: sft\nmodel_name_or_path: some/model\nuse_cpu: true\nlearning_rate: 3e-3\n"


def test_sft_recipe_splits_over_script_sft_and_model_configs(tmp_path):
    script, training, model = _build(_recipe(tmp_path, SFT_RECIPE + "dataset: d.jsonl\nmax_steps: 7\n"))
    assert isinstance(script, ScriptArguments) and isinstance(training, SFTConfig)
    assert isinstance(model, ModelConfig)
    assert (script.stage, script.dataset, training.max_steps) == ("sft", "d.jsonl", 7)
    assert model.model_name_or_path == "some/model"


def test_grpo_recipe_gives_grpo_config(tmp_path):
    script, training, _ = _build(_recipe(tmp_path, "stage: grpo\nuse_cpu: true\nnum_generations: 4\n"))
    assert isinstance(training, GRPOConfig) and training.num_generations == 4
    assert script.stage == "grpo"


def test_yaml_string_float_is_coerced_to_float(tmp_path):
    # PyYAML reads 3e-3 (no dot) as a string; the field's type makes it a float.
    assert read_yaml(_recipe(tmp_path, SFT_RECIPE))["learning_rate"] == "3e-3"
    _, training, _ = _build(_recipe(tmp_path, SFT_RECIPE))
    assert isinstance(training.learning_rate, float) and training.learning_rate == pytest.approx(3e-3)


def test_override_wins_and_is_coerced(tmp_path):
    _, training, _ = _build(_recipe(tmp_path, SFT_RECIPE), "learning_rate=1e-5", "max_steps=12")
    assert training.learning_rate == pytest.approx(1e-5) and isinstance(training.learning_rate, float)
    assert training.max_steps == 12 and isinstance(training.max_steps, int)


def test_overrides_read_lists_dicts_and_bools(tmp_path):
    script, training, model = _build(
        _recipe(tmp_path, "stage: grpo\nuse_cpu: true\n"),
        "rewards=[ndcg, {name: reasonrank, weight: 0.5, args: {phi: 0.5}}]",
        "task_args={use_system_prompt: false, max_passage_words: 5}",
        "temperature=0.7",
        "use_peft=true",
        "lora_target_modules=[q_proj, v_proj]",
    )
    assert script.rewards == ["ndcg", {"name": "reasonrank", "weight": 0.5, "args": {"phi": 0.5}}]
    assert script.task_args == {"use_system_prompt": False, "max_passage_words": 5}
    assert training.temperature == 0.7
    assert model.use_peft is True and model.lora_target_modules == ["q_proj", "v_proj"]


def test_reward_weights_belong_in_the_reward_entries(tmp_path):
    with pytest.raises(RecipeError, match="'reward_weights'.*'weight'"):
        _build(_recipe(tmp_path, "stage: grpo\nuse_cpu: true\n"), "reward_weights=[1.0]")


def test_override_with_empty_value_is_none(tmp_path):
    script, _, _ = _build(_recipe(tmp_path, SFT_RECIPE + "max_train_samples: 10\n"), "max_train_samples=")
    assert script.max_train_samples is None


def test_override_without_equals_sign_is_rejected():
    with pytest.raises(RecipeError, match="expected key=value"):
        apply_overrides({}, ["learning_rate"])


def test_unknown_key_names_file_key_and_closest_valid_key(tmp_path):
    path = _recipe(tmp_path, SFT_RECIPE + "learning_rat: 1e-5\n")
    message = _one_line_error(path)
    assert str(path) in message and "'learning_rat'" in message and "'learning_rate'" in message


def test_unknown_override_key_names_closest_valid_key(tmp_path):
    message = _one_line_error(_recipe(tmp_path, SFT_RECIPE), "max_step=3")
    assert "'max_step'" in message and "'max_steps'" in message


def test_unknown_key_without_close_match_still_names_key(tmp_path):
    message = _one_line_error(_recipe(tmp_path, SFT_RECIPE), "zzqqxx=1")
    assert "'zzqqxx'" in message and "did you mean" not in message


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("max_steps=abc", "max_steps", "int"),
        ("max_steps=1.5", "max_steps", "int"),
        ("learning_rate=[1]", "learning_rate", "float"),
        ("use_cpu=maybe", "use_cpu", "bool"),
        ("rewards=reasonrank", "rewards", "list"),
        ("task_args=[1, 2]", "task_args", "dict"),
        ("task_args=yes", "task_args", "dict"),
    ],
)
def test_wrong_type_names_key_and_expected_type(tmp_path, override, key, expected):
    path = _recipe(tmp_path, SFT_RECIPE)
    message = _one_line_error(path, override)
    assert str(path) in message and repr(key) in message and expected in message


def test_trainer_config_validation_error_is_one_line(tmp_path):
    message = _one_line_error(_recipe(tmp_path, SFT_RECIPE), "lr_scheduler_type=nonsense")
    assert "SFTConfig" in message


def test_missing_recipe_file_is_one_line(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(RecipeError, match="no such recipe file") as caught:
        read_yaml(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_bad_yaml_is_one_line(tmp_path):
    path = _recipe(tmp_path, "stage: sft\nlearning_rate: [1e-5\nmax_steps: 3\n")
    with pytest.raises(RecipeError, match="not valid YAML") as caught:
        read_yaml(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("text", ["- stage: sft\n- max_steps: 2\n", "just a string\n", "42\n"])
def test_non_mapping_recipe_is_one_line(tmp_path, text):
    path = _recipe(tmp_path, text)
    with pytest.raises(RecipeError, match="mapping") as caught:
        read_yaml(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_empty_recipe_is_an_empty_mapping(tmp_path):
    assert read_yaml(_recipe(tmp_path, "# only a comment\n")) == {}


def test_the_recipe_list_is_not_empty():
    assert {"recipes/demo/sft.yaml", "recipes/demo/grpo.yaml"} <= set(STAGED_RECIPES)


@pytest.mark.parametrize("recipe", STAGED_RECIPES)
def test_every_staged_recipe_builds_its_configs(recipe, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = read_yaml(recipe)
    if not torch.cuda.is_available():
        # TrainingArguments refuses bf16 without a GPU; keys and types are what this test checks.
        config.update(bf16=False, use_cpu=True)
    script, training, model = build_stage_configs(config, recipe)
    assert script.stage == config["stage"]
    assert isinstance(training, {"sft": SFTConfig, "grpo": GRPOConfig, "score": ScoreConfig}[script.stage])
    assert model.model_name_or_path == config.get("model_name_or_path")
    if script.launch:
        assert (ROOT / script.launch).is_file(), f"{recipe}: launch config {script.launch} is missing"


def test_generation_backend_replaces_use_vllm(tmp_path, monkeypatch):
    from trainers import grpo

    with pytest.raises(RecipeError, match="key 'use_vllm' is set by rankrl: set generation_backend"):
        _build(_recipe(tmp_path, "stage: grpo\nuse_vllm: true\n"))
    monkeypatch.setattr(grpo.torch.cuda, "is_available", lambda: False)
    assert grpo.uses_vllm("auto") is False and grpo.uses_vllm("hf") is False
    with pytest.raises(RecipeError, match="generation_backend 'vllm' needs vllm and a CUDA GPU"):
        grpo.uses_vllm("vllm")
    with pytest.raises(RecipeError, match="expected one of auto, vllm, hf"):
        grpo.uses_vllm("sglang")


# --- keys that two dataclasses own, or that rankrl would accept and not use --------------------------------


@pytest.mark.parametrize("stage", list(STAGES))
def test_no_two_dataclasses_of_a_stage_share_a_field_name(stage):
    names = Counter(f.name for t in stage_config_types(stage) for f in dataclasses.fields(t) if f.init)
    assert [name for name, count in names.items() if count > 1] == []


def test_a_field_name_two_dataclasses_share_is_a_one_line_error():
    @dataclass
    class First:
        shared: int = 0

    @dataclass
    class Second:
        shared: int = 0

    with pytest.raises(RecipeError) as caught:
        build_configs({}, (First, Second), "recipe.yaml")
    message = str(caught.value)
    assert "'shared'" in message and "First" in message and "Second" in message and "\n" not in message


def test_ranking_eval_config_is_rankrl_s_and_eval_strategy_is_refused_before_any_model(tmp_path):
    script, training, _ = _build(_recipe(tmp_path, SFT_RECIPE + "ranking_eval_config: eval.yaml\n"))
    assert script.ranking_eval_config == "eval.yaml" and training.eval_strategy == "no"
    message = _one_line_error(_recipe(tmp_path, SFT_RECIPE + "eval_strategy: steps\n"))
    assert "'eval_strategy' is ignored by rankrl" in message and "eval_steps_ndcg" in message


@pytest.mark.parametrize("stage", list(STAGES))
@pytest.mark.parametrize("key", list(IGNORED_KEYS))
def test_keys_rankrl_does_not_use_are_one_line_errors(tmp_path, stage, key):
    """Refused with the reason in every stage, whether or not the stage's training config has the key."""
    assert key not in {f.name for f in dataclasses.fields(ScriptArguments)}
    path = _recipe(tmp_path, f"stage: {stage}\nuse_cpu: true\n")
    message = _one_line_error(path, f"{key}=true")
    assert message == f"{path}: key {key!r} is ignored by rankrl: {IGNORED_KEYS[key]}"


def test_resume_from_checkpoint_points_to_resume(tmp_path):
    message = _one_line_error(_recipe(tmp_path, SFT_RECIPE + "resume_from_checkpoint: out/checkpoint-5\n"))
    assert "(resume: true)" in message
