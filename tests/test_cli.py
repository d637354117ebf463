"""Tests for the rankrl CLI: help, ``train RECIPE --smoke`` for every recipe, one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from transformers import AutoConfig, AutoModelForCausalLM

from rankrl.cli import main
from rankrl.smoke import shared_toy_workspace
from rewards import available_rewards
from tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
STAGED_RECIPES = sorted(
    path.relative_to(ROOT).as_posix()
    for path in (ROOT / "recipes").rglob("*.yaml")
    if "stage" in (yaml.safe_load(path.read_text()) or {})
)
SFT, GRPO = "recipes/demo/sft.yaml", "recipes/demo/grpo.yaml"


def _row(**fields: object) -> dict:
    row = {
        "query_id": "q1",
        "query": "fleas",
        "candidates": [{"doc_id": "d1", "text": "fleas live long"}, {"doc_id": "d2", "text": "cats"}],
        "labels": [{"doc_id": "d1", "relevance": 2}],
    }
    row.update(fields)
    return {key: value for key, value in row.items() if value is not None}


def _jsonl(path: Path, *rows: dict) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(autouse=True)
def workspace(tmp_path, monkeypatch):
    """Run from the repo root (recipes are relative paths) with smoke output and the Hub kept out."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("RANKRL_SMOKE_DIR", str(tmp_path / "smoke"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return tmp_path


def _error_line(capsys, *argv: str) -> str:
    """Run ``rankrl argv``; it must exit 2 with one ``rankrl: error:`` line, the last thing on stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as caught:
        main(list(argv))
    assert caught.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("rankrl: error: ")]
    assert len(errors) == 1, err
    assert err.rstrip("\n").splitlines()[-1] == errors[0], "the error message spans several lines"
    assert "Traceback" not in err
    return errors[0]


# --- help ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["demo", "--help"]])
def test_help_exits_zero(capsys, argv):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 0
    assert "usage: rankrl" in capsys.readouterr().out


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "train" in out and "demo" in out


def test_train_help_mentions_smoke_and_overrides(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--smoke" in out and "key=value" in out


@pytest.mark.parametrize(
    ("recipe", "group", "stage_key"),
    [(SFT, "SFTConfig", "--packing"), (GRPO, "GRPOConfig", "--num_generations")],
)
def test_train_recipe_help_lists_every_key_of_its_stage_with_its_help(capsys, recipe, group, stage_key):
    with pytest.raises(SystemExit) as caught:
        main(["train", recipe, "--help"])
    assert caught.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # help text wraps at the terminal's width
    assert "--smoke" in out and f"{group} keys:" in out and "ScriptArguments keys:" in out
    assert "ModelConfig keys:" in out and stage_key in out and "--ranking_eval_config" in out
    assert "--learning_rate" in out and "The initial learning rate for AdamW" in out
    assert "--task TASK" in out and "builds the examples, prompts, targets and the parser" in out
    assert "resume_from_checkpoint is ignored by rankrl" in out


def test_train_help_with_a_missing_recipe_is_one_line(capsys):
    assert "no such recipe file" in _error_line(capsys, "train", "absent.yaml", "--help")


@pytest.mark.parametrize(
    ("training_config", "stage_key"), [("SFTConfig", "--packing"), ("GRPOConfig", "--num_generations")]
)
def test_stage_module_help_lists_every_key_with_its_help(capsys, training_config, stage_key):
    import trl

    from trainers.pipeline import parse_args

    for argv in (["--help"], [SFT, "-h"]):
        with pytest.raises(SystemExit) as caught:
            parse_args(argv, getattr(trl, training_config))
        assert caught.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        assert f"{training_config} keys:" in out and stage_key in out and "--task TASK" in out
        assert "--learning_rate" in out and "The initial learning rate for AdamW" in out


def test_missing_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2


# --- smoke runs of every recipe (a few seconds each) --------------------------------------------------------


def _output_dir(tmp_path: Path, recipe: str) -> Path:
    stage = yaml.safe_load((ROOT / recipe).read_text())["stage"]
    return tmp_path / "smoke" / Path(recipe).parent.name / Path(recipe).stem / stage


def test_every_stage_has_a_smoke_recipe():
    assert {SFT, GRPO} <= set(STAGED_RECIPES)


@pytest.mark.parametrize("recipe", STAGED_RECIPES)
def test_train_smoke_saves_a_loadable_model(workspace, recipe):
    main(["train", recipe, "--smoke"])
    output_dir = _output_dir(workspace, recipe)
    config = yaml.safe_load((ROOT / recipe).read_text())
    if config.get("use_peft"):
        from peft import AutoPeftModelForCausalLM

        assert AutoPeftModelForCausalLM.from_pretrained(output_dir).peft_config
    else:
        model = AutoModelForCausalLM.from_pretrained(output_dir)
        task = get_task(config.get("task", "listwise"), **(config.get("task_args") or {}))
        tiny = AutoConfig.from_pretrained(shared_toy_workspace(task).model_dir)
        assert (model.config.hidden_size, model.config.vocab_size) == (tiny.hidden_size, tiny.vocab_size)
    metrics = json.loads((output_dir / "train_results.json").read_text())
    assert metrics["epoch"] > 0


def test_lora_smoke_run_saves_an_adapter_peft_loads(workspace):
    from peft import AutoPeftModelForCausalLM

    main(["train", SFT, "--smoke", "use_peft=true", "lora_r=4", "lora_alpha=8"])
    output_dir = _output_dir(workspace, SFT)
    assert (output_dir / "adapter_config.json").is_file()
    assert not (output_dir / "model.safetensors").exists()
    model = AutoPeftModelForCausalLM.from_pretrained(output_dir)
    assert model.peft_config["default"].r == 4


# --- bad input: one line naming the file, row or field, exit code 2 -----------------------------------------


def test_unknown_recipe_key_names_file_key_and_closest_key(capsys, workspace):
    recipe = workspace / "typo.yaml"
    recipe.write_text((ROOT / SFT).read_text() + "learning_rat: 1.0e-5\n")
    line = _error_line(capsys, "train", str(recipe))
    assert str(recipe) in line and "'learning_rat'" in line and "'learning_rate'" in line


def test_unknown_override_key_names_closest_key(capsys):
    line = _error_line(capsys, "train", SFT, "max_step=3")
    assert SFT in line and "'max_step'" in line and "'max_steps'" in line


def test_wrong_value_type_names_key_and_type(capsys):
    line = _error_line(capsys, "train", SFT, "max_steps=many")
    assert "'max_steps'" in line and "int" in line


def test_missing_recipe_file(capsys, workspace):
    line = _error_line(capsys, "train", str(workspace / "absent.yaml"))
    assert "absent.yaml" in line


def test_unknown_stage(capsys):
    line = _error_line(capsys, "train", SFT, "stage=dpo")
    assert SFT in line and "'stage'" in line and "'dpo'" in line


def test_unknown_reward_lists_known_rewards(capsys):
    line = _error_line(capsys, "train", GRPO, "--smoke", "rewards=[ndgc]")
    assert GRPO in line and "'ndgc'" in line
    assert all(name in line for name in available_rewards())


def test_malformed_reward_entry(capsys):
    line = _error_line(capsys, "train", GRPO, "rewards=[{phi: 0.2}]")
    assert GRPO in line and "rewards" in line


def test_unknown_reward_argument(capsys):
    line = _error_line(capsys, "train", GRPO, "rewards=[{name: ranking_metric, args: {kk: 3}}]")
    assert "'ranking_metric'" in line and "kk" in line


def test_unknown_task_option(capsys):
    line = _error_line(capsys, "train", SFT, "--smoke", "task_args={max_pasage_words: 3}")
    assert "task_args" in line and "'max_pasage_words'" in line and "'max_passage_words'" in line


@pytest.mark.parametrize("recipe", [SFT, GRPO])
def test_missing_dataset_column_names_file_and_column(capsys, workspace, recipe):
    data = _jsonl(workspace / "no_labels.jsonl", _row(labels=None))
    line = _error_line(capsys, "train", recipe, "--smoke", f"dataset={data}")
    assert str(data) in line and "missing column 'labels'" in line


def test_empty_candidates_names_row_and_field(capsys, workspace):
    data = _jsonl(workspace / "empty.jsonl", _row(), _row(query_id="q2", candidates=[], labels=[]))
    line = _error_line(capsys, "train", SFT, "--smoke", f"dataset={data}")
    assert f"{data} row 1" in line and "'candidates'" in line and "empty" in line


def test_label_naming_unknown_doc_id_names_row_field_and_id(capsys, workspace):
    data = _jsonl(workspace / "stray.jsonl", _row(labels=[{"doc_id": "d9", "relevance": 1}]))
    line = _error_line(capsys, "train", GRPO, "--smoke", f"dataset={data}")
    assert f"{data} row 0" in line and "'labels'" in line and "'d9'" in line


def test_missing_dataset_file(capsys, workspace):
    line = _error_line(capsys, "train", SFT, f"dataset={workspace / 'nothing.jsonl'}")
    assert "nothing.jsonl" in line


def test_model_path_that_does_not_exist(capsys, workspace):
    missing = workspace / "no-such-model"
    line = _error_line(capsys, "train", SFT, "--smoke", f"model_name_or_path={missing}")
    assert "model_name_or_path" in line and str(missing) in line
