"""Agreement rules, the crash-safe response cache (and the evaluation cache sharing its log rule), and each
prompt template paired with its parser."""

from __future__ import annotations

import json
import os

import pytest

from core.data import DataError
from data_synth.agreement import consensus_index, consensus_pick, majority_vote, mean_scores
from data_synth.cache import ResponseCache, cache_key
from data_synth.prompts import with_teacher_suffix
from data_synth.tasks import TASKS, TaskOptions, make_task
from evaluation.cache import RecordCache
from tasks.listwise import ListwiseTask
from tasks.prompts import ERANK_USER, erank_messages, listwise_messages
from tasks.toy import make_toy_splits
from tests.fault_server import toy_answer

UNTRUSTED = [
    "",
    "<think>",
    "<answer>[99]</answer>",
    "{" * 5000,
    "<think>x</think><answer> </answer>",
    "\x00\ud800",
]


def test_majority_vote_prefers_the_earliest_of_tied_answers():
    assert majority_vote([None, "b", "a", "a", "b"]) == ("b", 2)
    assert majority_vote([3, 3, 1]) == (3, 2)
    assert majority_vote([None, None]) is None


def test_consensus_pick_keeps_the_sample_closest_to_the_mean():
    # ERank: three samples scoring 2, 7, 6 -> mean 5 -> 6 is closest
    assert consensus_pick([("a", 2), ("b", 7), ("c", 6)]) == ("c", 6)
    assert consensus_index([None, 40, 60, None]) == 1  # tie -> the earlier sample
    assert consensus_index([(1.0, 9.0), (3.0, 7.0), (9.0, 1.0)]) == 1
    assert consensus_pick([("x", None)]) is None
    assert mean_scores([(1.0, 2.0), None, (3.0, 4.0)]) == (2.0, 3.0)
    with pytest.raises(ValueError, match="differ in length"):
        consensus_index([(1.0,), (1.0, 2.0)])


def _record(key: str, text: str = "answer") -> dict:
    return {
        "key": key,
        "example_id": "q",
        "teacher_id": "t",
        "prompt_hash": "h",
        "sample_index": 0,
        "text": text,
    }


def test_cache_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    with ResponseCache(path) as cache:
        cache.append(_record("a"))
        cache.append(_record("a"))  # a repeated key is not written twice
    with path.open("ab") as file:
        file.write(b'{"key": "b", "text": "half a resp')  # kill -9 in the middle of a write
    with ResponseCache(path) as cache:
        assert cache.torn_lines == 1 and list(cache.records) == ["a"]
        cache.append(_record("b"))
    lines = path.read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["a", "b"]


def test_cache_ignores_a_torn_last_line_that_ends_in_a_newline(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_text(json.dumps(_record("a")) + "\n" + '{"key": "b", "te\n')
    with ResponseCache(path) as cache:
        assert cache.torn_lines == 1 and list(cache.records) == ["a"]


def test_cache_rejects_a_corrupt_middle_line_and_a_second_writer(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_text("not json\n" + json.dumps(_record("a")) + "\n")
    with pytest.raises(DataError, match=r"cache.jsonl:1: not a cache record"):
        ResponseCache(path)
    path.write_text("")
    with ResponseCache(path), pytest.raises(DataError, match="another synth run is using this cache"):
        ResponseCache(path)


def test_both_caches_fsync_every_append_and_cut_a_torn_tail(tmp_path, monkeypatch):
    synced, fsync = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), fsync(fd)))
    with ResponseCache(tmp_path / "synth.jsonl") as cache:
        cache.append(_record("a"))
    assert len(synced) == 1
    path = tmp_path / "eval.jsonl"
    RecordCache(path, "fp").append({"key": "p1", "text": "é"})
    assert len(synced) == 3  # the fingerprint line, then the record
    with path.open("ab") as file:
        file.write('{"key": "p2", "text": "é'.encode()[:-1])  # a kill in the middle of a character
    assert RecordCache(path, "fp").done == {"p1": {"key": "p1", "text": "é"}}
    assert path.read_text(encoding="utf-8").splitlines() == [
        '{"fingerprint": "fp"}',
        '{"key": "p1", "text": "é"}',
    ]


def test_cache_keys_keep_their_parts_apart():
    assert cache_key("a:b", "t", "h", 0) != cache_key("a", "b:t", "h", 0)
    assert cache_key("q", "t", "h", 0) != cache_key("q", "t", "h", 1)


def test_listwise_prompt_is_the_training_tasks_prompt():
    row = make_toy_splits(1, 0)[0][0]
    passages = [c["text"] for c in row["candidates"]]
    assert listwise_messages(row["query"], passages) == ListwiseTask().prompt(row)


def test_erank_prompt_and_teacher_suffix():
    messages = erank_messages("q", "d")
    assert messages[0]["content"] == ERANK_USER.format(
        instruction="Given a query, retrieval relevant passage.", query="q", document="d"
    )
    suffixed = with_teacher_suffix(messages, "Keep your reasoning concise.")
    assert suffixed[-1]["content"].endswith("\nKeep your reasoning concise.")
    assert messages[0]["content"].endswith("Your output:")  # the original is untouched


@pytest.mark.parametrize("name", TASKS)
def test_each_template_pairs_with_its_parser(name):
    task = make_task(name, TaskOptions(list_size=6, group_size=3, negatives_per_query=2))
    rows = (
        [{"problem": "What is 2 + 3?", "answer": "5", "id": "p1"}]
        if name == "math"
        else make_toy_splits(3, 0)[0]
    )
    units, stats = task.units(rows)
    assert units and stats.kept == len(rows)
    for unit in units:
        value, reason = task.parse(unit, toy_answer(unit.messages, 0))
        assert value is not None and reason == "", (unit.unit_id, reason)
        for text in UNTRUSTED:
            broken, why = task.parse(unit, text)
            assert broken is None and why
