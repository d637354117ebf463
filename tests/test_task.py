"""Tests for the listwise task: ReasonRank's prompt, the SFT target, the lenient ranker, template phrases."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import get_task
from tasks.listwise import SYSTEM_PROMPT, ListwiseTask


def _example(n: int = 3, **fields: object) -> dict:
    example = {
        "query_id": "q1",
        "query": "how long do fleas live",
        "candidates": [{"doc_id": f"d{i}", "text": f"passage number {i}"} for i in range(1, n + 1)],
        "labels": [],
        "teacher_order": [],
        "reasoning": "",
    }
    example.update(fields)
    return example


def _user(task: ListwiseTask, example: dict) -> str:
    return task.prompt(example)[-1]["content"]


def test_passages_are_numbered_in_order():
    lines = _user(ListwiseTask(), _example(4)).splitlines()
    numbered = [line for line in lines if re.match(r"\[\d+\] ", line)]
    assert numbered == [f"[{i}] passage number {i}" for i in range(1, 5)]


def test_query_and_count_appear_in_prefix_and_suffix():
    lines = _user(ListwiseTask(), _example(3)).splitlines()
    prefix, suffix = lines[0], "\n".join(lines[4:])
    for part in (prefix, suffix):
        assert "how long do fleas live" in part and "3 passages" in part
    assert suffix.startswith("Search Query: how long do fleas live")


def test_bracketed_numbers_in_passages_and_query_become_parentheses():
    example = _example(2, query="what is [2] in [10]")
    example["candidates"][0]["text"] = "see [1] and [23] here"
    user = _user(ListwiseTask(), example)
    assert "what is (2) in (10)" in user and "[1] see (1) and (23) here" in user
    assert re.findall(r"\[\d+\]", user) == ["[1]", "[2]", "[2]", "[1]"]  # ids and the format example


def test_system_prompt_present_by_default_and_absent_when_disabled():
    with_system = ListwiseTask().prompt(_example())
    without = ListwiseTask(use_system_prompt=False).prompt(_example())
    assert [m["role"] for m in with_system] == ["system", "user"]
    assert with_system[0]["content"] == SYSTEM_PROMPT
    assert [m["role"] for m in without] == ["user"]
    assert with_system[1] == without[0]


def test_passages_are_truncated_to_max_words():
    example = _example(1)
    example["candidates"][0]["text"] = "one two  three\nfour five"
    assert "[1] one two three\n" in _user(ListwiseTask(max_passage_words=3), example)
    assert "[1] one two three four five\n" in _user(ListwiseTask(), example)


def test_target_from_teacher_order_lists_all_with_reasoning_in_think():
    example = _example(3, teacher_order=["d3", "d1", "d2"], reasoning="d3 answers it")
    assert ListwiseTask().target(example) == "<think>d3 answers it</think>\n<answer>[3] > [1] > [2]</answer>"


def test_teacher_order_wins_over_labels():
    example = _example(3, teacher_order=["d2", "d3", "d1"], labels=[{"doc_id": "d1", "relevance": 3}])
    assert "<answer>[2] > [3] > [1]</answer>" in ListwiseTask().target(example)


def test_target_from_labels_lists_relevant_by_grade_then_candidate_order():
    candidates = [{"doc_id": doc_id, "text": doc_id} for doc_id in ("b", "a", "c", "d", "e")]
    labels = [
        {"doc_id": "a", "relevance": 1},
        {"doc_id": "e", "relevance": 3},
        {"doc_id": "b", "relevance": 1},
        {"doc_id": "c", "relevance": 0},
    ]
    example = _example(candidates=candidates, labels=labels)
    assert (
        ListwiseTask(answer_mode="partial").target(example)
        == "<think></think>\n<answer>[5] > [1] > [2]</answer>"
    )
    # A strict parse needs every passage: the unlabelled and non-relevant ones follow in their given order.
    full = ListwiseTask(answer_mode="strict").target(example)
    assert full == "<think></think>\n<answer>[5] > [1] > [2] > [3] > [4]</answer>"
    assert ListwiseTask(answer_mode="strict").parse(example, full).value == ("e", "b", "a", "c", "d")


def test_target_parses_back_to_the_teacher_order():
    task = ListwiseTask()
    example = _example(4, teacher_order=["d4", "d2", "d1", "d3"])
    assert task.rank(example, task.target(example)) == (["d4", "d2", "d1", "d3"], True)


def test_rank_clean_in_strict_mode_needs_a_full_permutation():
    example, task = _example(3), ListwiseTask(answer_mode="strict")
    full = "<think>x</think><answer>[2] > [3] > [1]</answer>"
    assert task.rank(example, full) == (["d2", "d3", "d1"], True)
    assert task.rank(example, "<think>x</think><answer>[2]</answer>") == (["d2", "d1", "d3"], False)


def test_rank_clean_in_partial_mode_accepts_a_prefix():
    example, task = _example(3), ListwiseTask(answer_mode="partial")
    assert task.rank(example, "<think>x</think><answer>[2]</answer>") == (["d2", "d1", "d3"], True)
    assert task.rank(example, "<think>x</think><answer>2, 1</answer>") == (["d2", "d1", "d3"], False)


@pytest.mark.parametrize("mode", ["strict", "partial"])
def test_rank_repairs_but_flags_broken_format(mode):
    example, task = _example(3), ListwiseTask(answer_mode=mode)
    assert task.rank(example, "[3] > [1] > [2]") == (["d3", "d1", "d2"], False)
    repeated = "<think>x</think><answer>[3] > [3] > [9]</answer>"
    assert task.rank(example, repeated) == (["d3", "d1", "d2"], False)
    assert task.rank(example, "") == (["d1", "d2", "d3"], False)


@settings(max_examples=150, deadline=None)
@given(
    completion=st.text(alphabet=st.sampled_from("[]>0123456789 <thinkaswer/>\n"), max_size=80) | st.text(),
    n=st.integers(min_value=1, max_value=25),
    mode=st.sampled_from(["strict", "partial"]),
)
def test_rank_returns_a_permutation_for_any_completion(completion, n, mode):
    example = _example(n)
    ranking, clean = ListwiseTask(answer_mode=mode).rank(example, completion)
    assert sorted(ranking) == sorted(c["doc_id"] for c in example["candidates"])
    assert isinstance(clean, bool)


def _rendered(task: ListwiseTask, n: int = 25) -> str:
    return "\n".join(m["content"] for m in task.prompt(_example(n)))


@pytest.mark.parametrize("use_system_prompt", [True, False])
def test_template_phrases_all_occur_in_a_rendered_prompt(use_system_prompt):
    task = ListwiseTask(use_system_prompt=use_system_prompt)
    rendered = _rendered(task)
    missing = [phrase for phrase in task.template_phrases() if phrase not in rendered]
    assert task.template_phrases() and not missing


def test_template_phrases_include_system_prompt_text_only_when_used():
    def covers_system_prompt(phrases: list[str]) -> bool:
        return any(len(p) > 20 and p in SYSTEM_PROMPT for p in phrases)

    assert covers_system_prompt(ListwiseTask().template_phrases())
    assert not covers_system_prompt(ListwiseTask(use_system_prompt=False).template_phrases())


def test_template_phrases_hold_no_query_or_passage_text():
    phrases = ListwiseTask().template_phrases()
    assert not [p for p in phrases if "fleas" in p or "passage number" in p]


def test_get_task_passes_options_and_rejects_unknown_ones():
    assert get_task("listwise", max_passage_words=7).max_passage_words == 7
    with pytest.raises(ValueError, match="'max_pasage_words'.*'max_passage_words'"):
        get_task("listwise", max_pasage_words=7)
    with pytest.raises(ValueError, match="unknown task 'listwize'.*'listwise'"):
        get_task("listwize")
    with pytest.raises(ValueError, match="answer_mode 'stric'"):
        get_task("listwise", answer_mode="stric")
