"""Bad synthesis input through ``rankrl synth``: each problem is one line on stderr and exit status 2.

Recipe problems (unknown key, wrong type, no or two inputs, unknown task) and data problems (corpus lines
that are not JSON, queries without text, qrels naming unknown documents, duplicate ids, empty corpora) are
all caught while planning, so ``--dry-run`` shows them without any teacher.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from data_synth.config import load_config
from rankrl.cli import main

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted([*ROOT.glob("recipes/synth/*.yaml"), *ROOT.glob("recipes/*/synth.yaml")])
CORPUS = [{"_id": "d1", "title": "", "text": "fleas live a year"}, {"_id": "d2", "text": "cats purr"}]
QUERIES = [{"_id": "q1", "text": "how long do fleas live"}]


def beir_folder(
    root: Path, corpus: str | None = None, queries: str | None = None, qrels: str | None = None
) -> Path:
    folder = root / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        corpus if corpus is not None else "".join(json.dumps(d) + "\n" for d in CORPUS)
    )
    (folder / "queries.jsonl").write_text(queries or "".join(json.dumps(q) + "\n" for q in QUERIES))
    (folder / "qrels/train.tsv").write_text(qrels or "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return folder


def run_synth(tmp_path: Path, capsys, recipe: dict, *overrides: str) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"model": "toy", "output_dir": str(tmp_path / "out"), **recipe}))
    with pytest.raises(SystemExit) as status:
        main(["synth", str(path), "--dry-run", *overrides])
    message = capsys.readouterr().err.strip()
    assert status.value.code == 2 and "\n" not in message, message
    return message


@pytest.mark.parametrize(
    ("recipe", "expected"),
    [
        ({"toy_queries": 2, "modle": "x"}, "unknown key 'modle' (did you mean 'model'?)"),
        ({"toy_queries": "many"}, "key 'toy_queries' expects int, got 'many'"),
        ({}, "set exactly one input of beir, trec_run, rankllm, dataset, toy_queries (got none)"),
        ({"toy_queries": 2, "rankllm": "r.json"}, "(got rankllm, toy_queries)"),
        ({"toy_queries": 2, "task": "pairwise"}, "unknown task 'pairwise' (did you mean 'pointwise'?)"),
        ({"toy_queries": 2, "task_args": {"list_sise": 5}}, "unknown option 'list_sise' of task 'listwise'"),
        ({"toy_queries": 2, "samples": 0}, "key 'samples' must be >= 1, got 0"),
        ({"rankllm": "r.json", "task": "math"}, "task 'math' reads reasoning problems from 'dataset'"),
    ],
)
def test_bad_recipes_are_one_line(tmp_path, capsys, recipe, expected):
    assert expected in run_synth(tmp_path, capsys, recipe)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"corpus": '{"_id": "d1", "text": "x"}\nnot json\n'}, "corpus.jsonl:2: not JSON"),
        ({"corpus": ""}, "corpus.jsonl: empty corpus"),
        (
            {"corpus": '{"_id": "d1", "text": "x"}\n{"_id": "d1", "text": "y"}\n'},
            "duplicate document id 'd1'",
        ),
        ({"queries": '{"_id": "q1", "text": "  "}\n'}, "queries.jsonl:1: query 'q1' has no text"),
        (
            {"qrels": "query-id\tcorpus-id\tscore\nq1\td9\t1\n"},
            "train.tsv:2: document 'd9' is not in the corpus",
        ),
        (
            {"qrels": "query-id\tcorpus-id\tscore\nq7\td1\t1\n"},
            "train.tsv:2: query 'q7' is not among the queries",
        ),
    ],
)
def test_bad_beir_input_is_one_line_naming_file_and_line(tmp_path, capsys, files, expected):
    folder = beir_folder(tmp_path, **files)
    assert expected in run_synth(tmp_path, capsys, {"beir": str(folder)})


def test_duplicate_example_ids_are_one_line(tmp_path, capsys):
    row = {"query_id": "q1", "query": "fleas", "candidates": [{"doc_id": "d1", "text": "x"}], "labels": []}
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    assert "example id 'q1' appears more than once" in run_synth(tmp_path, capsys, {"dataset": str(data)})


def test_ranking_row_with_bad_field_names_row_and_field(tmp_path, capsys):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"query_id": "q1", "query": "", "candidates": [], "labels": []}) + "\n")
    assert "row 0: field 'query'" in run_synth(tmp_path, capsys, {"dataset": str(data)})


def test_a_good_beir_folder_dry_runs(tmp_path, capsys):
    folder = beir_folder(tmp_path)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"model": "toy", "beir": str(folder), "task": "setwise", "mine_k": 2}))
    with pytest.raises(SystemExit) as status:
        main(["synth", str(path), "--dry-run", f"output_dir={tmp_path / 'out'}"])
    assert status.value.code == 0
    assert "task setwise: 1 input rows -> 1 prompts x 1 samples = 1 requests" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_shipped_recipes_load(recipe):
    config = load_config(recipe)
    assert config.model and config.output_dir
