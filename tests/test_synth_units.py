"""Agreement rules, the crash-safe response cache (and the evaluation cache sharing its log rule), the
teacher-only suffix, and every task's synthesis units: the toy teacher's answer to each unit's prompt parses
and passes the task's check, and untrusted text is never taken for a right answer."""

from __future__ import annotations

import json
import os

import pytest

from core.data import DataError
from data_synth.agreement import consensus_index, consensus_pick
from data_synth.cache import ResponseCache, cache_key
from data_synth.pipeline import make_units
from data_synth.prompts import with_teacher_suffix
from evaluation.cache import RecordCache
from tasks import TASKS, get_task
from tasks.pointwise import ERANK_USER, erank_messages
from tests.fault_server import toy_answer

UNTRUSTED = [
    "",
    "<think>",
    "<answer>[99]</answer>",
    "{" * 5000,
    "<think>x</think><answer> </answer>",
    "\x00\ud800",
]


def test_consensus_pick_keeps_the_sample_closest_to_the_mean():
    # ERank: three samples scoring 2, 7, 6 -> mean 5 -> 6 is closest
    assert consensus_pick([("a", 2), ("b", 7), ("c", 6)]) == ("c", 6)
    assert consensus_index([None, 40, 60, None]) == 1  # tie -> the earlier sample
    assert consensus_index([(1.0, 9.0), (3.0, 7.0), (9.0, 1.0)]) == 1
    assert consensus_pick([("x", None)]) is None
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


def test_erank_prompt_and_teacher_suffix():
    messages = erank_messages("q", "d")
    assert messages[0]["content"] == ERANK_USER.format(
        instruction="Given a query, retrieval relevant passage.", query="q", document="d"
    )
    suffixed = with_teacher_suffix(messages, "Keep your reasoning concise.")
    assert suffixed[-1]["content"].endswith("\nKeep your reasoning concise.")
    assert messages[0]["content"].endswith("Your output:")  # the original is untouched


SMALL = {  # short lists, so the toy teacher's prompts stay small
    "listwise": {"list_size": 6},
    "setwise": {"negatives_per_query": 2},
    "pointwise": {"negatives_per_query": 2},
    "rubric": {"negatives_per_query": 2},
    "yesno": {"negatives_per_query": 2},
    "groupwise": {"list_size": 6, "group_size": 3},
}
SYNTH_TASKS = [(name, SMALL.get(name, {})) for name in TASKS]
SYNTH_TASKS.append(("yesno", {"template": "prorank", "negatives_per_query": 2}))


@pytest.mark.parametrize(("name", "task_args"), SYNTH_TASKS)
def test_each_task_s_units_pair_its_prompt_with_its_parser(name, task_args):
    task = get_task(name, **task_args)
    rows = (
        [{"problem": "What is 2 + 3?", "answer": "5", "id": "p1"}]
        if task.row_kind == "reasoning"
        else task.toy_splits(3, 0)[0]
    )
    units, stats = make_units(task, rows)
    assert units and stats.kept == len(rows) and stats.dropped == 0
    for unit in units:
        parsed = task.parse(unit.example, toy_answer(unit.messages, 0))
        assert parsed.ok and task.accept(unit.example, parsed.value) is None, (unit.unit_id, parsed)
        for text in UNTRUSTED:  # never raises; a broken answer is unparsed or rejected
            broken = task.parse(unit.example, text)
            assert not broken.ok or task.accept(unit.example, broken.value), (text, broken)
