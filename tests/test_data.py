"""Tests for core.data: loading every supported source, one-line validation errors, casting, writing."""

from __future__ import annotations

import json
import logging
import tempfile
from collections import defaultdict
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, DatasetDict
from hypothesis import given, settings
from hypothesis import strategies as st

from core.data import (
    RANKING_FEATURES,
    REASONING_FEATURES,
    DataError,
    labels_to_qrels,
    load_dataset_file,
    validate_ranking_dataset,
    validate_reasoning_dataset,
    write_dataset,
)

REAL = Path(__file__).resolve().parents[2] / "shared/data/real"
MISSING_PATH = "no such dataset file or folder (expected .jsonl, .parquet or a saved dataset folder)"


def _row(query_id: str = "q1", **fields: object) -> dict:
    row = {
        "query_id": query_id,
        "query": f"query {query_id}",
        "candidates": [{"doc_id": "d1", "text": "first"}, {"doc_id": "d2", "text": "second"}],
        "labels": [{"doc_id": "d1", "relevance": 2}],
    }
    return {**row, **fields}


def _filled(row: dict) -> dict:
    empty = {"teacher_order": [], "reasoning": "", "teacher_scores": []}
    return {**empty, "task": "", "example_id": "", "completion": "", **row}


ROWS = [_row("q1", teacher_order=["d2", "d1"], reasoning="d2 is better"), _row("q2")]


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _load_error(path: str | Path, **kwargs: str) -> str:
    with pytest.raises(DataError) as info:
        load_dataset_file(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", ["train.jsonl", "train.json", "train.parquet"])
def test_file_round_trip_fills_optional_columns(tmp_path: Path, name: str) -> None:
    write_dataset(ROWS, tmp_path / name)
    ds = load_dataset_file(str(tmp_path / name))
    assert ds.features == RANKING_FEATURES
    assert ds.to_list() == [_filled(row) for row in ROWS]


def test_json_array_file(tmp_path: Path) -> None:
    (tmp_path / "train.json").write_text(json.dumps(ROWS), encoding="utf-8")
    assert load_dataset_file(tmp_path / "train.json").to_list() == [_filled(row) for row in ROWS]


def test_saved_dataset_folder_casts_and_fills_nulls(tmp_path: Path) -> None:
    Dataset.from_list(ROWS).save_to_disk(tmp_path / "saved")  # q2 gets null teacher_order and reasoning
    ds = load_dataset_file(tmp_path / "saved")
    assert ds.features == RANKING_FEATURES
    assert ds.to_list() == [_filled(row) for row in ROWS]


def test_dataset_dict_folder_picks_split(tmp_path: Path) -> None:
    folder = tmp_path / "dd"
    DatasetDict(train=Dataset.from_list(ROWS[:1]), test=Dataset.from_list(ROWS[1:])).save_to_disk(folder)
    assert load_dataset_file(folder)["query_id"] == ["q1"]
    assert load_dataset_file(folder, split="test")["query_id"] == ["q2"]
    assert _load_error(folder, split="dev") == f"{folder}: no split 'dev' (available splits: train, test)"


def test_parquet_folder_reads_files_in_name_order(tmp_path: Path) -> None:
    write_dataset(ROWS[1:], tmp_path / "b.parquet")
    write_dataset(ROWS[:1], tmp_path / "a.parquet")
    assert load_dataset_file(tmp_path)["query_id"] == ["q1", "q2"]
    pq.write_table(pa.Table.from_pylist([_row("q3", candidates=[], labels=[])]), tmp_path / "c.parquet")
    assert _load_error(tmp_path).startswith(f"{tmp_path / 'c.parquet'} row 0: field 'candidates' is empty")


def test_parquet_folder_prefers_split_files(tmp_path: Path) -> None:
    write_dataset(ROWS[:1], tmp_path / "train-00000-of-00001.parquet")
    write_dataset(ROWS[1:], tmp_path / "test-00000-of-00001.parquet")
    assert load_dataset_file(tmp_path, split="test")["query_id"] == ["q2"]
    assert load_dataset_file(tmp_path)["query_id"] == ["q1"]


def test_parquet_relevance_is_cast_to_int(tmp_path: Path) -> None:
    table = pa.Table.from_pylist([_row(labels=[{"doc_id": "d1", "relevance": 2.0}])])
    pq.write_table(table, tmp_path / "float.parquet")
    ds = load_dataset_file(tmp_path / "float.parquet")
    assert ds.features["labels"] == RANKING_FEATURES["labels"]
    assert ds[0]["labels"] == [{"doc_id": "d1", "relevance": 2}]
    table = pa.Table.from_pylist([_row(labels=[{"doc_id": "d1", "relevance": 1.5}])])
    pq.write_table(table, tmp_path / "half.parquet")
    expected = "row 0: field 'labels[0].relevance' is 1.5 of type float (expected an integer)"
    assert _load_error(tmp_path / "half.parquet") == f"{tmp_path / 'half.parquet'} {expected}"


NOT_A_CANDIDATE = "that is not among the candidates"
BAD_ROWS = [  # (fields replaced in a good row, field named in the error, what the error says about it)
    ({"labels": [{"doc_id": "d9", "relevance": 1}]}, "labels", f"names doc id 'd9' {NOT_A_CANDIDATE}"),
    ({"labels": [{"doc_id": "d1", "relevance": 1}] * 2}, "labels", "repeats doc id 'd1'"),
    ({"labels": [{"doc_id": "d\n9", "relevance": 1}]}, "labels", "names doc id 'd\\n9' that is not among"),
    ({"labels": [{"doc_id": "x" * 99, "relevance": 1}]}, "labels", f"id '{'x' * 36}... {NOT_A_CANDIDATE}"),
    ({"candidates": [], "labels": []}, "candidates", "is empty (expected at least one passage)"),
    ({"candidates": [{"doc_id": "d1", "text": "a"}] * 2}, "candidates", "repeats doc id 'd1'"),
    ({"teacher_order": ["d1", "d9"]}, "teacher_order", f"names doc id 'd9' {NOT_A_CANDIDATE}"),
    ({"teacher_order": ["d2", "d2"]}, "teacher_order", "repeats doc id 'd2'"),
    ({"teacher_order": "d1"}, "teacher_order", "is 'd1' of type str (expected a list)"),
    ({"teacher_order": [1]}, "teacher_order[0]", "is 1 of type int (expected a non-empty string)"),
    ({"labels": [{"doc_id": "d1", "relevance": 1.5}]}, "labels[0].relevance", "is 1.5 of type float"),
    ({"labels": [{"doc_id": "d1", "relevance": "2"}]}, "labels[0].relevance", "is '2' of type str"),
    ({"labels": [{"doc_id": "d1", "relevance": True}]}, "labels[0].relevance", "(expected an integer)"),
    ({"labels": [{"doc_id": "d1"}]}, "labels[0].relevance", "is missing (expected an integer)"),
    ({"labels": None}, "labels", "is missing (expected a list)"),
    ({"query_id": 7}, "query_id", "is 7 of type int (expected a non-empty string)"),
    ({"query": ""}, "query", "is '' of type str (expected a non-empty string)"),
    ({"query": None}, "query", "is missing (expected a non-empty string)"),
    ({"candidates": "d1"}, "candidates", "is 'd1' of type str (expected a list)"),
    ({"candidates": ["d1"]}, "candidates[0]", "(expected an object with keys doc_id, text)"),
    ({"candidates": [{"doc_id": 5, "text": "a"}]}, "candidates[0].doc_id", "is 5 of type int"),
    ({"candidates": [{"doc_id": "d1"}]}, "candidates[0].text", "is missing (expected a string)"),
    ({"reasoning": 3}, "reasoning", "is 3 of type int (expected a string)"),
]


@pytest.mark.parametrize(("fields", "field", "problem"), BAD_ROWS)
def test_bad_row_gives_one_line_naming_file_row_and_field(
    tmp_path: Path, fields: dict, field: str, problem: str
) -> None:
    path = _write_jsonl(tmp_path / "train.jsonl", [_row("q1"), {**_row("q2"), **fields}])
    message = _load_error(path)
    assert message.startswith(f"{path} row 1: field '{field}' ")
    assert problem in message


def test_validate_dataset_in_memory() -> None:
    validate_ranking_dataset(Dataset.from_list(ROWS), "memory")
    bad = Dataset.from_list([_row(labels=[{"doc_id": "d9", "relevance": 1}])])
    with pytest.raises(DataError, match=r"^memory row 0: field 'labels' names doc id 'd9'"):
        validate_ranking_dataset(bad, "memory")


def test_file_level_errors(tmp_path: Path) -> None:
    no_query = _write_jsonl(tmp_path / "train.jsonl", [{k: v for k, v in _row().items() if k != "query"}])
    assert _load_error(no_query) == (
        f"{no_query}: missing column 'query' (expected columns: query_id, query, candidates, labels)"
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    assert _load_error(empty) == f"{empty}: no rows (expected at least one example)"
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(_row()) + "\n\n{oops\n", encoding="utf-8")
    assert _load_error(broken).startswith(f"{broken} row 1 (line 3): invalid JSON")
    scalar = _write_jsonl(tmp_path / "scalar.jsonl", [_row(), "just text"])
    assert _load_error(scalar) == f"{scalar} row 1: is 'just text' (expected an object of fields)"
    (tmp_path / "train.csv").write_text("query_id,query\n", encoding="utf-8")
    assert "unsupported file type '.csv'" in _load_error(tmp_path / "train.csv")


@pytest.mark.parametrize(
    "name", ["./nope", "/no/such/dir/train.jsonl", "data/train.jsonl", "~/no-such-rankrl", "train.parquet"]
)
def test_missing_local_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "load_dataset", pytest.fail)
    with pytest.raises(FileNotFoundError) as info:
        load_dataset_file(name)
    assert str(info.value) == f"{name}: {MISSING_PATH}"


def test_folder_without_data(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a saved dataset nor .parquet files"):
        load_dataset_file(tmp_path)


def test_hub_id_goes_to_load_dataset_and_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    hub = {"org/ranking": ROWS, "org/bad": [_row(candidates=[], labels=[])]}

    def fake_load_dataset(name: str, split: str) -> Dataset:
        calls.append((name, split))
        return Dataset.from_list(hub[name])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert load_dataset_file("org/ranking", split="test").to_list() == [_filled(row) for row in ROWS]
    assert _load_error("org/bad").startswith("org/bad row 0: field 'candidates' is empty")
    assert calls == [("org/ranking", "test"), ("org/bad", "train")]


def test_unknown_columns_are_dropped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write_jsonl(tmp_path / "train.jsonl", [_row(source="bm25")])
    with caplog.at_level(logging.WARNING, logger="core.data"):
        ds = load_dataset_file(path)
    assert ds.column_names == list(RANKING_FEATURES)
    assert "ignoring unknown columns source" in caplog.text


def test_reasoning_round_trip_and_errors(tmp_path: Path) -> None:
    rows = [
        {"problem": "1+1?", "answer": "2"},
        {"problem": "2+2?", "answer": "4", "solution": "4", "id": "7"},
    ]
    path = _write_jsonl(tmp_path / "math.jsonl", rows)
    ds = load_dataset_file(path, kind="reasoning")
    assert ds.features == REASONING_FEATURES
    filled = {"solution": "", "id": "", "task": "", "example_id": "", "completion": ""}
    assert ds.to_list() == [{**filled, **rows[0]}, {**filled, **rows[1]}]
    validate_reasoning_dataset(ds, "memory")
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"problem": 3, "answer": "2"}])
    expected = "row 0: field 'problem' is 3 of type int (expected a non-empty string)"
    assert _load_error(bad, kind="reasoning") == f"{bad} {expected}"
    no_answer = _write_jsonl(tmp_path / "no_answer.jsonl", [{"problem": "1+1?"}])
    expected = "missing column 'answer' (expected columns: problem, answer)"
    assert _load_error(no_answer, kind="reasoning") == f"{no_answer}: {expected}"


def test_write_dataset_refuses_bad_rows_and_suffixes(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"row 0: field 'labels' names doc id 'd9'"):
        write_dataset([_row(labels=[{"doc_id": "d9", "relevance": 1}])], tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()
    with pytest.raises(DataError, match="unsupported file type '.csv'"):
        write_dataset(ROWS, tmp_path / "x.csv")
    with pytest.raises(ValueError, match="unknown dataset kind 'pointwise'"):
        write_dataset(ROWS, tmp_path / "x.jsonl", kind="pointwise")


def test_labels_to_qrels() -> None:
    labels = [{"doc_id": "d1", "relevance": 2}, {"doc_id": "d3", "relevance": 0}]
    assert labels_to_qrels(labels) == {"d1": 2, "d3": 0}
    assert labels_to_qrels([]) == {}


@st.composite
def ranking_rows(draw: st.DrawFn) -> dict:
    doc_ids = draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=5, unique=True))
    judged = draw(st.lists(st.sampled_from(doc_ids), unique=True))
    order = draw(st.permutations(doc_ids))[: draw(st.integers(0, len(doc_ids)))]
    return {
        "query_id": draw(st.text(min_size=1, max_size=6)),
        "query": draw(st.text(min_size=1, max_size=20)),
        "candidates": [{"doc_id": doc_id, "text": draw(st.text(max_size=20))} for doc_id in doc_ids],
        "labels": [{"doc_id": doc_id, "relevance": draw(st.integers(-1, 3))} for doc_id in judged],
        "teacher_order": order,
        "reasoning": draw(st.text(max_size=20)),
    }


@settings(max_examples=25, deadline=None)
@given(st.lists(ranking_rows(), min_size=1, max_size=3), st.sampled_from([".jsonl", ".parquet"]))
def test_any_valid_rows_round_trip(rows: list[dict], suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"train{suffix}"
        write_dataset(rows, path)
        assert load_dataset_file(path).to_list() == [_filled(row) for row in rows]


def _dl19_rows(count: int) -> tuple[list[dict], dict[str, dict[str, int]]]:
    """The first ``count`` DL19 queries as ranking rows with their BM25 top 100, and all DL19 qrels."""
    folder = REAL / "trec-dl19"
    if not folder.is_dir():
        pytest.skip(f"real TREC DL19 data not found at {folder} (see shared/data/real/README.md)")
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for line in (folder / "qrels.dl19-passage.txt").read_text(encoding="utf-8").splitlines():
        qid, _, doc_id, grade = line.split()
        qrels[qid][doc_id] = int(grade)
    runs = json.loads((folder / "rankllm.bm25.dl19.top100.candidates.json").read_text(encoding="utf-8"))
    rows = []
    for entry in runs[:count]:
        qid = str(entry["hits"][0]["qid"])
        candidates = [{"doc_id": hit["docid"], "text": hit["content"]} for hit in entry["hits"]]
        # The qrels also judge docs outside the BM25 top 100, and labels may only name candidates: keep those.
        labels = [
            {"doc_id": c["doc_id"], "relevance": qrels[qid][c["doc_id"]]}
            for c in candidates
            if c["doc_id"] in qrels[qid]
        ]
        rows.append({"query_id": qid, "query": entry["query"], "candidates": candidates, "labels": labels})
    return rows, qrels


@pytest.mark.parametrize("name", ["dl19.jsonl", "dl19.parquet"])
def test_real_dl19_queries_round_trip(tmp_path: Path, name: str) -> None:
    rows, qrels = _dl19_rows(3)
    write_dataset(rows, tmp_path / name)
    ds = load_dataset_file(tmp_path / name)
    assert ds["query_id"] == ["264014", "104861", "130510"]
    assert ds[0]["query"] == "how long is life cycle of flea"
    assert [len(candidates) for candidates in ds["candidates"]] == [100, 100, 100]
    assert [len(labels) for labels in ds["labels"]] == [62, 65, 55]
    assert [len(qrels[qid]) for qid in ds["query_id"]] == [382, 306, 133]
    for row in ds:
        shown = {c["doc_id"] for c in row["candidates"]}
        judged = {doc_id: grade for doc_id, grade in qrels[row["query_id"]].items() if doc_id in shown}
        assert labels_to_qrels(row["labels"]) == judged


def test_real_dl19_unfiltered_qrels_are_refused(tmp_path: Path) -> None:
    rows, qrels = _dl19_rows(1)
    rows[0]["labels"] = [{"doc_id": doc_id, "relevance": grade} for doc_id, grade in qrels["264014"].items()]
    path = _write_jsonl(tmp_path / "dl19.jsonl", rows)
    assert "row 0: field 'labels' names doc id" in _load_error(path)
