"""Paper recipe folders (:mod:`rankrl.recipes`): every folder's manifest and files instantiate and chain,
``rankrl recipes`` lists the eight papers, ``rankrl run`` runs the stages in order, and every paper's chain
runs end to end with ``--smoke`` (synthesis with the labels teacher, each training stage from the previous
stage's output, evaluation of the last one) on CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from core.data import load_dataset_file
from core.recipe import RecipeError, build_configs, read_yaml
from data_synth.config import SynthConfig
from evaluation.config import EvalConfig
from evaluation.tts_config import TTSConfig
from rankrl.cli import main
from rankrl.recipes import chain_commands, chain_problems, find_paper_recipes, read_paper_recipe
from tasks import get_task
from trainers.configs import build_stage_configs

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ("dco", "erank", "grouprank", "mrt", "prorank", "rank-r1", "reasonrank", "retro-star")
CONFIG_TYPES = {"synth": SynthConfig, "eval": EvalConfig, "tts": TTSConfig}


def _instantiate(command: str, path: Path) -> None:
    config = read_yaml(path)
    if command == "train":  # a GPU recipe's bf16 cannot be built on a CPU machine: build it as --smoke does
        build_stage_configs({**config, "bf16": False, "use_cpu": True}, str(path))
    else:
        build_configs(config, (CONFIG_TYPES[command],), str(path))


def test_rankrl_recipes_lists_the_eight_papers_with_their_stages(capsys):
    main(["recipes", "--root", str(ROOT / "recipes")])
    lines = capsys.readouterr().out.splitlines()
    named = [line.split() for line in lines if line and not line.startswith(" ")]
    assert tuple(words[0] for words in named) == PAPERS
    reasonrank = next(words for words in named if words[0] == "reasonrank")
    assert reasonrank[1:6] == ["listwise", "synth", "->", "sft", "->"]


@pytest.mark.parametrize("paper", PAPERS)
def test_every_size_s_files_instantiate_and_chain(paper):
    recipe = read_paper_recipe(ROOT / "recipes" / paper)
    assert (recipe.folder / "README.md").is_file()
    for size in recipe.sizes:
        assert chain_problems(recipe, size) == []
        for stage in recipe.stages:
            _instantiate(stage.command, recipe.stage_file(stage, size))


def _write(folder: Path, name: str, config: dict) -> None:
    (folder / name).write_text(yaml.safe_dump(config))


@pytest.fixture
def mini(tmp_path) -> Path:
    """A two-size folder: synth -> sft -> grpo -> eval, chained through out/."""
    folder = tmp_path / "mini"
    folder.mkdir()
    task = {"task": "listwise", "task_args": {"list_size": 4}}
    _write(folder, "synth.yaml", {**task, "toy_queries": 4, "teacher": "labels", "output_dir": "out/synth"})
    for size in ("small", "big"):
        common = {**task, "stage": "sft", "model_name_or_path": f"hub/{size}", "dataset": "out/synth"}
        _write(folder, f"{size}-sft.yaml", {**common, "output_dir": f"out/{size}/sft"})
        grpo = {**common, "stage": "grpo", "model_name_or_path": f"out/{size}/sft"}
        _write(folder, f"{size}-grpo.yaml", {**grpo, "output_dir": f"out/{size}/grpo"})
    _write(folder, "eval.yaml", {**task, "model": "out/small/grpo", "output_dir": "out/eval"})
    manifest = {
        "title": "Mini (nobody 2026)",
        "summary": "a test chain",
        "task": "listwise",
        "sizes": ["small", "big"],
        "stages": [
            {"name": "synth", "command": "synth", "recipe": "synth.yaml"},
            {"name": "sft", "command": "train", "recipe": "{size}-sft.yaml"},
            {"name": "grpo", "command": "train", "recipe": "{size}-grpo.yaml"},
            {"name": "eval", "command": "eval", "recipe": "eval.yaml"},
        ],
    }
    _write(folder, "recipe.yaml", manifest)
    return folder


def test_a_chain_whose_files_do_not_link_is_named_file_and_key(mini):
    recipe = read_paper_recipe(mini)
    assert chain_problems(recipe, "small") == []
    # eval.yaml evaluates the small model's output: for the big size that link is broken.
    [problem] = chain_problems(recipe, "big")
    assert problem == f"{mini / 'eval.yaml'}: key 'model' is 'out/small/grpo'; expected 'out/big/grpo'"
    _write(mini, "big-sft.yaml", {**read_yaml(mini / "big-sft.yaml"), "task_args": {"list_size": 8}})
    assert any("task_args" in line for line in chain_problems(recipe, "big"))


def test_bad_manifests_are_one_line_errors(mini):
    manifest = read_yaml(mini / "recipe.yaml")
    cases = {
        "key 'summary' is missing": {k: v for k, v in manifest.items() if k != "summary"},
        "command 'fit'": {**manifest, "stages": [{"name": "x", "command": "fit", "recipe": "synth.yaml"}]},
        "names": {**manifest, "stages": [{"name": "x", "command": "train", "recipe": "{size}-dpo.yaml"}]},
        "unknown key 'models'": {**manifest, "models": []},
    }
    for expected, broken in cases.items():
        _write(mini, "recipe.yaml", broken)
        with pytest.raises(RecipeError, match=expected) as caught:
            read_paper_recipe(mini)
        assert "\n" not in str(caught.value)
    with pytest.raises(RecipeError, match="no size 'huge'"):
        _write(mini, "recipe.yaml", manifest)
        read_paper_recipe(mini).check_size("huge")


def test_run_prints_the_chain_s_commands_in_order_from_a_stage(mini, capsys):
    main(["run", str(mini), "--dry-run"])
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        f"$ rankrl synth {mini / 'synth.yaml'}",
        f"$ rankrl train {mini / 'small-sft.yaml'}",
        f"$ rankrl train {mini / 'small-grpo.yaml'}",
        f"$ rankrl eval {mini / 'eval.yaml'}",
    ]
    main(["run", str(mini), "--dry-run", "--from", "grpo"])
    assert capsys.readouterr().out.splitlines() == printed[2:]
    with pytest.raises(SystemExit):  # the big size's files do not chain: nothing runs
        main(["run", str(mini), "--size", "big", "--dry-run"])
    assert "key 'model'" in capsys.readouterr().err


def test_smoke_commands_link_every_stage_to_the_previous_stage_s_output(mini, tmp_path):
    work = tmp_path / "work"
    commands = chain_commands(read_paper_recipe(mini), "small", smoke=True, workdir=work)
    assert [words[0] for words in commands] == ["synth", "train", "train", "eval"]
    assert all("--smoke" in words and f"output_dir={work / words_stage}" in words for words, words_stage in
               zip(commands, ("synth", "sft", "grpo", "eval"), strict=True))  # fmt: skip
    assert f"dataset={work / 'synth'}" in commands[1] and f"dataset={work / 'synth'}" in commands[2]
    assert f"model_name_or_path={work / 'sft'}" in commands[2]
    assert f"model={work / 'grpo'}" in commands[3]


def _check_outputs(recipe, work: Path) -> None:
    """Each stage wrote its output: a non-empty dataset, trained weights after 2 steps, metrics."""
    train_stages = [stage for stage in recipe.stages if stage.command == "train"]
    for stage in recipe.stages:
        output = work / stage.name
        if stage.command == "synth":
            kind = get_task(recipe.task).row_kind
            assert len(load_dataset_file(output / "train.parquet", kind=kind)) > 0
        elif stage.command == "train":
            weights = list(output.glob("*.safetensors"))
            assert weights, f"{stage.name}: no weights in {output}"
            assert json.loads((output / "trainer_state.json").read_text())["global_step"] == 2
        elif stage.command == "eval":
            manifest = json.loads((output / "manifest.json").read_text())
            assert manifest["model"] == str(work / train_stages[-1].name)
            assert "ndcg_cut_10" in manifest["metrics"]["reranked"]
        else:
            assert (output / "tts.csv").is_file() and "pass@" in (output / "tts.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("paper", PAPERS)
def test_the_paper_s_chain_runs_with_smoke(paper, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANKRL_SMOKE_DIR", str(tmp_path / "smoke"))
    work = tmp_path / "chain"
    main(["run", str(ROOT / "recipes" / paper), "--smoke", "--output-dir", str(work)])
    recipe = read_paper_recipe(ROOT / "recipes" / paper)
    echoed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("$ rankrl ")]
    assert len(echoed) == len(recipe.stages)
    _check_outputs(recipe, work)


def test_find_paper_recipes_skips_folders_without_a_manifest(mini):
    (mini.parent / "notes").mkdir()
    assert [recipe.name for recipe in find_paper_recipes(mini.parent)] == ["mini"]
