"""``rankrl compare`` (:mod:`rankrl.compare`): the table's columns from hand-made evaluation outputs, the same
start model, data and budget in every paper's commands, error rows, resuming from ``compare.json``, the
multi-task toy workspace, and one end-to-end comparison of two papers (plus a broken one) on the tiny model.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer

from core.benchmark_files import BenchmarkFiles
from core.recipe import RecipeError, apply_overrides, read_yaml
from rankrl.cli import main
from rankrl.compare import (
    BASELINE,
    NOT_RERANKING,
    CompareSettings,
    Row,
    SharedData,
    default_folders,
    eval_columns,
    model_outputs,
    paper_commands,
    run_comparison,
)
from rankrl.compare_report import markdown_table
from rankrl.recipes import read_paper_recipe
from rankrl.smoke import prepare_multitask_workspace
from tasks import get_task
from tasks.toy import make_toy_splits

ROOT = Path(__file__).resolve().parents[1]


def _write_eval(folder: Path, rankings: dict[str, list[str]], manifest: dict) -> None:
    """An evaluation folder as ``rankrl eval`` writes it: results.json (rank_llm hits) and manifest.json."""
    folder.mkdir(parents=True)
    requests = [
        {"query": f"query {qid}", "hits": [{"content": f"text {d}", "qid": qid, "docid": d, "rank": r + 1,
                                             "score": float(len(docs) - r)} for r, d in enumerate(docs)]}
        for qid, docs in rankings.items()
    ]  # fmt: skip
    (folder / "results.json").write_text(json.dumps(requests))
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_columns_from_hand_made_eval_outputs(tmp_path):
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("a 0 a2 2\na 0 a3 1\nb 0 b1 1\nc 0 c1 1\n")  # query c was not reranked: it scores 0
    manifest = {
        "strategy": {"strategy": "listwise"},
        "ranking": {"depth": 100},
        "parse": {"fallbacks": 1, "repairs": 1, "queries_with_fallbacks": 1},
        "cost": {"prompts": 4, "generated_tokens": 25, "generated_tokens_per_query": 12.5},
    }
    _write_eval(tmp_path / "eval", {"a": ["a1", "a2", "a3"], "b": ["b1", "b2"]}, manifest)
    columns = eval_columns(tmp_path / "eval", qrels)
    ndcg_a = (2 / math.log2(3) + 1 / math.log2(4)) / (2 / math.log2(2) + 1 / math.log2(3))  # 0.6697
    assert columns["ndcg_10"] == pytest.approx((ndcg_a + 1.0 + 0.0) / 3)
    assert columns["tokens_per_query"] == 12.5
    assert columns["invalid_rate"] == 0.5  # (1 fallback + 1 repair) / 4 outputs
    assert (columns["outputs"], columns["fallbacks"], columns["repairs"]) == (4, 1, 1)


def test_pointwise_outputs_count_every_sample_of_every_stage():
    manifest = {
        "strategy": {"strategy": "pointwise", "stages": [[100, 1], [30, 16]]},
        "ranking": {"depth": 100},
    }
    assert model_outputs(manifest, [8, 40]) == (8 + 8 * 16) + (40 + 30 * 16)  # 136 + 520
    manifest["ranking"]["depth"] = 20
    assert model_outputs(manifest, [40]) == 20 + 20 * 16
    assert model_outputs({"strategy": {"strategy": "setwise"}, "cost": {"prompts": 49}}, [8]) == 49


def _shared(tmp_path) -> SharedData:
    bench = tmp_path / "bench"
    files = BenchmarkFiles(bench, bench / "c.jsonl", bench / "t.tsv", bench / "q.txt", bench / "r.txt")
    return SharedData(str(tmp_path / "start"), tmp_path / "train.jsonl", files)


def _effective(recipe, stage, words: list[str]) -> dict:
    """The stage's recipe with the command's key=value words applied in order (they follow ``--smoke``)."""
    return apply_overrides(read_yaml(recipe.stage_file(stage, recipe.sizes[0])), words[3:])


@pytest.mark.parametrize("model", [None, "some/checkpoint"])
def test_every_paper_gets_the_same_start_model_data_and_budget(tmp_path, model):
    settings = CompareSettings(train_steps=7, rl_steps=3, batch_size=16, model=model)
    data, demo = _shared(tmp_path), {s: read_yaml(ROOT / f"recipes/demo/{s}.yaml") for s in ("sft", "grpo")}
    folders = default_folders(ROOT / "recipes")
    assert folders and all((folder / "recipe.yaml").is_file() for folder in folders)
    for folder in folders:
        recipe = read_paper_recipe(folder)
        commands = paper_commands(recipe, settings, data, 40, tmp_path / recipe.name)
        trains = [(s, _effective(recipe, s, w)) for s, w in commands if s.command == "train"]
        assert trains[0][1]["model_name_or_path"] == data.model
        for stage, config in trains:
            kind = config.get("stage", "sft")
            assert config["max_steps"] == (3 if kind == "grpo" else 7), (recipe.name, stage.name)
            assert config["per_device_train_batch_size"] == 16 and config["seed"] == 0
            if kind == "grpo":
                assert config["num_generations"] == 8 and config["max_completion_length"] == 40
            if model is None and kind in demo:
                assert config["learning_rate"] == demo[kind]["learning_rate"] and config["use_peft"] is False
        if model is not None:  # a real checkpoint keeps each paper's own learning rate
            first = read_yaml(recipe.stage_file(trains[0][0], recipe.sizes[0]))
            assert trains[0][1]["learning_rate"] == first["learning_rate"]
        stage, words = commands[-1]
        config = _effective(recipe, stage, words)
        bench = data.benchmark
        assert (config["run"], config["qrels"], config["max_new_tokens"]) == (
            str(bench.run),
            str(bench.qrels),
            40,
        )
        assert config["model"] == str(tmp_path / recipe.name / trains[-1][0].name)


def test_train_stages_chain_through_the_work_folder(tmp_path):
    recipe = read_paper_recipe(ROOT / "recipes/reasonrank")
    commands = dict((stage.name, words) for stage, words in paper_commands(
        recipe, CompareSettings(), _shared(tmp_path), 40, tmp_path / "w"))  # fmt: skip
    sft, grpo = (
        _effective(recipe, recipe.stages[i], commands[name]) for i, name in ((1, "sft"), (2, "grpo"))
    )
    assert sft["dataset"] == str(tmp_path / "w/synth")  # SFT trains on synthesis's output
    assert grpo["model_name_or_path"] == str(tmp_path / "w/sft")  # GRPO starts from SFT's output
    assert grpo["dataset"] == str(tmp_path / "train.jsonl")  # and reads the shared rows


def _tts_folder(tmp_path) -> Path:
    folder = tmp_path / "reasoner"
    folder.mkdir()
    (folder / "synth.yaml").write_text(yaml.safe_dump({"task": "math", "output_dir": "out/synth"}))
    (folder / "tts.yaml").write_text(yaml.safe_dump({"task": "math", "model": "x", "output_dir": "out/tts"}))
    manifest = {"title": "Reasoner", "summary": "a math chain", "task": "math", "sizes": ["small"],
                "stages": [{"name": "synth", "command": "synth", "recipe": "synth.yaml"},
                           {"name": "tts", "command": "tts", "recipe": "tts.yaml"}]}  # fmt: skip
    (folder / "recipe.yaml").write_text(yaml.safe_dump(manifest))
    return folder


def test_a_folder_that_does_not_rerank_is_an_error_row_not_a_crash(tmp_path):
    lines: list[str] = []
    rows = run_comparison([_tts_folder(tmp_path)], CompareSettings(), tmp_path / "out", echo=lines.append)
    assert [(row.name, row.error) for row in rows] == [("reasoner", NOT_RERANKING)]
    table = (tmp_path / "out/compare.md").read_text()
    assert f"| reasoner | synth -> tts | - | - | - | - | {NOT_RERANKING} |" in table
    assert not (tmp_path / "out/workspace").exists()  # nothing to train: no model was built


def test_resume_skips_the_papers_whose_rows_are_saved(tmp_path):
    settings = CompareSettings(train_steps=5)
    done = {"ndcg_10": 0.7, "tokens_per_query": 20.0, "invalid_rate": 0.25, "wall_s": 12.0}
    chain = "synth -> sft -> grpo -> eval"
    rows = {BASELINE: {"name": BASELINE, "stages": "untrained", "ndcg_10": 0.6},
            "reasonrank": {"name": "reasonrank", "stages": chain, **done}}  # fmt: skip
    record = {"settings": asdict(settings), "first_stage_ndcg_10": 0.618, "rows": rows}
    (tmp_path / "compare.json").write_text(json.dumps(record))
    lines: list[str] = []
    result = run_comparison([ROOT / "recipes/reasonrank"], settings, tmp_path, echo=lines.append)
    assert [row.name for row in result] == [BASELINE, "reasonrank"]
    assert result[1] == Row("reasonrank", chain, **done)
    assert sum("not rerun" in line for line in lines) == 2
    assert not (tmp_path / "workspace").exists() and not (tmp_path / "reasonrank").exists()
    assert "| reasonrank | synth -> sft -> grpo -> eval | 0.700 | 20.0 | 12 | 25.0% |  |" in lines[-1]
    assert "first-stage order: nDCG@10 0.618" in lines[-1]
    with pytest.raises(RecipeError, match="other settings"):
        run_comparison([ROOT / "recipes/reasonrank"], CompareSettings(train_steps=6), tmp_path)


def test_the_table_names_the_budget_and_shows_errors():
    rows = [
        Row("a", "sft -> eval", 0.51234, 3.0, 0.0, 61.4, machine="CPU (torch threads: 1)"),
        Row("b", "grpo -> eval", error="stage 'grpo': x|y"),
    ]
    table = markdown_table(rows, CompareSettings(train_steps=9, rl_steps=4), None)
    assert "9 optimizer steps per SFT / score stage, 4 per GRPO stage, batch 32" in table
    assert "sft 0.003, grpo 0.0002, score 0.001" in table
    assert "Wall: training + evaluation on CPU (torch threads: 1)." in table
    assert table.splitlines()[-2:] == [
        "| a | sft -> eval | 0.512 | 3.0 | 61 | 0.0% |  |",
        "| b | grpo -> eval | - | - | - | - | stage 'grpo': x/y |",
    ]


def test_the_multitask_workspace_s_tokenizer_knows_every_task(tmp_path):
    tasks = [get_task("listwise"), get_task("yesno")]
    workspace = prepare_multitask_workspace(tmp_path, tasks, 16, 4)
    tokenizer = AutoTokenizer.from_pretrained(workspace.model_dir)
    for task in tasks:
        for phrase in task.template_phrases():
            assert len(tokenizer(phrase, add_special_tokens=False).input_ids) == 1, (task.name, phrase)
    train, heldout = make_toy_splits(16, 4)
    assert [json.loads(line)["query_id"] for line in workspace.train_path.read_text().splitlines()] == [
        row["query_id"] for row in train
    ]
    qrels = workspace.benchmark.qrels.read_text().splitlines()
    assert len(qrels) == sum(len(row["labels"]) for row in heldout) and qrels[0].startswith("heldout-q0 ")
    with pytest.raises(ValueError, match="ranking tasks only"):
        prepare_multitask_workspace(tmp_path / "math", [get_task("math")], 4, 2)


@pytest.mark.slow
def test_rankrl_compare_runs_two_papers_and_a_broken_one_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RANKRL_SMOKE_DIR", str(tmp_path / "smoke"))
    broken = tmp_path / "broken"
    shutil.copytree(ROOT / "recipes/reasonrank", broken)
    sft = broken / "qwen2.5-7b-sft.yaml"
    sft.write_text(sft.read_text() + "no_such_key: 1\n")
    papers = [str(ROOT / "recipes/reasonrank"), str(ROOT / "recipes/prorank"), str(broken)]
    budget = ["--train-steps", "2", "--rl-steps", "2", "--train-rows", "64", "--heldout-rows", "8"]
    main(["compare", *papers, *budget, "--output-dir", str(tmp_path / "out")])
    saved = json.loads((tmp_path / "out/compare.json").read_text())["rows"]
    assert list(saved) == [BASELINE, "reasonrank", "prorank", "broken"]
    for name in (BASELINE, "reasonrank", "prorank"):
        row = saved[name]
        assert row["error"] is None and 0 < row["ndcg_10"] <= 1 and 0 <= row["invalid_rate"] <= 1, name
        assert row["wall_s"] > 0 and row["tokens_per_query"] >= 0
    assert set(saved["prorank"]["stage_s"]) == {"synth", "grpo", "score", "eval"}
    assert saved["broken"]["error"].startswith("stage 'sft': rankrl: error:")
    assert "unknown key 'no_such_key'" in saved["broken"]["error"]
    table = (tmp_path / "out/compare.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in table[-4:]] == [
        f"| {BASELINE}",
        "| reasonrank",
        "| prorank",
        "| broken",
    ]
    capsys.readouterr()
    main(["compare", *papers[:2], *budget, "--output-dir", str(tmp_path / "out")])
    assert capsys.readouterr().out.count("not rerun") == 3
