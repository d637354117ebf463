"""Tests for the groupwise task (GroupRank): groups of a row, GroupRank's prompt, the label target, the
parser, the reward columns against the grouprank reward, synthesis helpers and the evaluation strategy on an
oracle."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.generation import Sampling
from rewards import grouprank_reward
from tasks import expand_rows, get_task
from tasks.groupwise import GROUPRANK_SYSTEM, GroupwiseTask, answer_text, label_scores, mean_scores
from tasks.strategy import StrategyOptions, rerank_rows
from tasks.toy import make_toy_splits
from tests.oracles import FunctionBackend

PASSAGE = re.compile(r"^\[(\d+)\]\. (.*)$", re.M)


def _row(n: int = 25, query_id: str = "q1", **fields: object) -> dict:
    row = {
        "query_id": query_id,
        "query": "how long do fleas live",
        "candidates": [{"doc_id": f"d{i}", "text": f"passage number {i}"} for i in range(n)],
        "labels": [{"doc_id": "d3", "relevance": 2}, {"doc_id": "d30", "relevance": 1}],
        "teacher_order": [],
        "reasoning": "",
    }
    row.update(fields)
    return row


def _group(grades: dict[str, int], **fields: object) -> dict:
    """One example: candidates a, b, c, d (in that prompt order) with the given grades."""
    example = {
        "query_id": "q",
        "query": "fleas",
        "candidates": [{"doc_id": d, "text": f"text of {d}"} for d in "abcd"],
        "labels": [{"doc_id": d, "relevance": g} for d, g in grades.items()],
        "teacher_scores": [],
        "completion": "",
    }
    example.update(fields)
    return example


def _grouprank(example: dict, completion: str, task: GroupwiseTask | None = None) -> float:
    columns = {**example, **(task or GroupwiseTask()).reward_columns(example)}
    (reward,) = grouprank_reward([completion], **{key: [value] for key, value in columns.items()})
    return reward


# --- examples ------------------------------------------------------------------------------------------


def test_examples_partition_the_first_list_size_candidates_into_shuffled_groups():
    row = _row(25)
    examples, reason = GroupwiseTask().examples(row)
    assert reason == "" and [len(e["candidates"]) for e in examples] == [10, 10]
    grouped = [c["doc_id"] for e in examples for c in e["candidates"]]
    assert sorted(grouped) == sorted(f"d{i}" for i in range(20)) and grouped != [f"d{i}" for i in range(20)]
    assert [e["example_id"] for e in examples] == ['["q1", 0]', '["q1", 1]']
    assert all(e["task"] == "groupwise" and e["completion"] == "" for e in examples)
    holder = next(e for e in examples if any(c["doc_id"] == "d3" for c in e["candidates"]))
    other = next(e for e in examples if e is not holder)
    assert holder["labels"] == [{"doc_id": "d3", "relevance": 2}] and other["labels"] == []


def test_examples_are_deterministic_per_seed_and_query():
    task = GroupwiseTask(group_size=4)
    first, _ = task.examples(_row(20))
    assert task.examples(_row(20)) == (first, "")
    assert GroupwiseTask(group_size=4, seed=1).examples(_row(20))[0] != first
    other_query = task.examples(_row(20, query_id="q2"))[0]
    assert [c["doc_id"] for c in other_query[0]["candidates"]] != [
        c["doc_id"] for c in first[0]["candidates"]
    ]


def test_examples_keep_teacher_scores_and_order_aligned_with_each_group():
    row = _row(6, teacher_scores=[float(i) for i in range(6)], teacher_order=["d5", "d0", "d2"])
    examples, _ = GroupwiseTask(group_size=3, list_size=6).examples(row)
    for example in examples:
        ids = [c["doc_id"] for c in example["candidates"]]
        assert example["teacher_scores"] == [float(d[1:]) for d in ids]
        assert example["teacher_order"] == [d for d in ["d5", "d0", "d2"] if d in ids]


def test_expand_rows_keeps_groupwise_examples_and_refuses_other_tasks():
    task = GroupwiseTask()
    examples, dropped = expand_rows(task, [_row(12)])
    assert len(examples) == 2 and dropped == {}
    assert expand_rows(task, examples)[0] == examples
    with pytest.raises(ValueError, match="'listwise'"):
        expand_rows(task, [{**_row(), "task": "listwise"}])


# --- prompt and target ------------------------------------------------------------------------------------


def test_prompt_is_grouprank_format_with_passages_cut_to_max_words():
    example = _group({}, query="fleas\nlife")
    example["candidates"][1]["text"] = "one two\n\nthree   four five"
    system, user = GroupwiseTask(max_passage_words=4).prompt(example)
    assert system == {"role": "system", "content": GROUPRANK_SYSTEM}
    assert user["content"].startswith("I will provide you 4 documents, each indicated by")
    assert PASSAGE.findall(user["content"]) == [
        ("1", "text of a"),
        ("2", "one two three four"),
        ("3", "text of c"),
        ("4", "text of d"),
    ]
    assert "Query:\nfleas\nlife\n" in user["content"] and "for all 4 documents" in user["content"]


def test_prompt_cuts_long_passages_at_3000_characters_as_grouprank_does():
    example = _group({})
    example["candidates"][0]["text"] = "abcdefghijklmnop " * 250  # 250 words, 4,249 characters
    user = GroupwiseTask().prompt(example)[1]["content"]
    assert len(dict(PASSAGE.findall(user))["1"]) == 3000


def test_label_scores_scale_grades_to_ten_per_group():
    assert label_scores(_group({"a": 3, "b": 1, "c": 0, "z": 3})) == [10, 3, 0, 0]
    assert label_scores(_group({"b": 2, "d": 1})) == [0, 10, 0, 5]
    assert label_scores(_group({"a": 0, "b": -1})) == [0, 0, 0, 0]


def test_target_from_labels_and_from_the_teacher():
    example = _group({"a": 3, "b": 1})
    expected = '<reason> </reason>\n<answer> ```json {"[1]": 10, "[2]": 3, "[3]": 0, "[4]": 0} ``` </answer>'
    assert GroupwiseTask().target(example) == expected
    teacher = answer_text([1, 2, 3, 4], reason="because")
    assert GroupwiseTask().target({**example, "completion": teacher}) == teacher


def test_target_parses_back_to_the_label_scores():
    task, example = GroupwiseTask(), _group({"c": 2, "d": 1})
    assert task.parse(example, task.target(example)).value == (0.0, 0.0, 10.0, 5.0)


# --- parser ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value", "reason"),
    [
        (
            '<reason>r</reason>\n<answer>\n```json\n{"[1]": 5, "[2]": 3, "[3]": 8, "[4]": 0}\n```\n</answer>',
            (5.0, 3.0, 8.0, 0.0),
            "",
        ),
        (
            '<reason>r</reason><answer>```json {"[1]]": 1, "[2]": 2, "[3]": 3, "[4]": 4.5} ```</answer>',
            (1.0, 2.0, 3.0, 4.5),
            "",
        ),  # GroupRank's "[k]]" repair
        ('<reason>r</reason><answer>```json {"[1]": 5, "[2]": 3} ```</answer>', None, "missing_scores"),
        ('<reason>r</reason><answer>```json {"[1]": 5, "[5]": 3} ```</answer>', None, "out_of_range"),
        ('<reason>r</reason><answer>```json {"[1]": "high"} ```</answer>', None, "bad_value"),
        ("<reason>r</reason><answer>no scores</answer>", None, "no_json"),
        ('<answer>```json {"[1]": 5} ```</answer>', None, "missing_reason"),
        ("<reason>r</reason> scores follow", None, "missing_answer"),
    ],
)
def test_parse_reads_grouprank_answers_in_candidate_order(text, value, reason):
    parsed = GroupwiseTask().parse(_group({}), text)
    assert (parsed.value, parsed.reason) == (value, reason)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from('<>/reasonwj{}[]":,0123456789` \n'), max_size=90) | st.text())
def test_parse_never_raises_and_names_every_failure(text):
    parsed = GroupwiseTask().parse(_group({}), text)
    assert (parsed.value is None) == bool(parsed.reason)
    assert parsed.value is None or len(parsed.value) == 4


# --- reward columns and the grouprank reward ------------------------------------------------------------


def test_reward_columns_give_label_scores_or_the_teacher_scores():
    example = _group({"a": 2, "c": 1})
    gold = GroupwiseTask().reward_columns(example)["gold_scores"]
    assert gold == [{"doc_id": d, "score": s} for d, s in zip("abcd", [10.0, 0.0, 5.0, 0.0], strict=True)]
    teacher = GroupwiseTask().reward_columns({**example, "teacher_scores": [8, 2, 0, 0]})["gold_scores"]
    assert [row["score"] for row in teacher] == [8.0, 2.0, 0.0, 0.0]


def test_the_label_target_earns_the_full_grouprank_reward():
    example = _group({"a": 2, "c": 1})
    # nDCG@10 = 1, Recall@10 = 1, JS(P‖Q) = 0: R = 1 + 0.2 + 0.1
    assert _grouprank(example, GroupwiseTask().target(example)) == pytest.approx(1.3)


def test_grouprank_reward_aligns_with_the_teacher_scores_when_present():
    example = _group({"a": 1}, teacher_scores=[8.0, 2.0, 0.0, 0.0])
    assert _grouprank(example, answer_text([8, 2, 0, 0])) == pytest.approx(1.3)
    # Label-like answer P = (1, 0, 0, 0) against Q = (.8, .2, 0, 0): M = (.9, .1, 0, 0),
    # KL(P‖M) = log2(1/.9), KL(Q‖M) = .8·log2(.8/.9) + .2·log2(.2/.1), JS = (KL(P‖M) + KL(Q‖M)) / 2.
    js = 0.5 * math.log2(1 / 0.9) + 0.5 * (0.8 * math.log2(0.8 / 0.9) + 0.2)
    assert _grouprank(example, answer_text([10, 0, 0, 0])) == pytest.approx(1.2 + 0.1 * (1 - js))


def test_grouprank_gates_for_broken_tags_and_json():
    example = _group({"a": 1})
    assert _grouprank(example, "just [1] is best") == -0.5
    assert _grouprank(example, "<reason>r</reason><answer>```json {oops} ```</answer>") == -0.1


# --- synthesis --------------------------------------------------------------------------------------------


def test_mean_scores_skip_failed_samples():
    assert mean_scores([(1.0, 2.0), None, (3.0, 4.0)]) == (2.0, 3.0)
    assert mean_scores([None, None]) is None


def test_teacher_example_keeps_the_answer_and_the_mean_scores():
    task, example = GroupwiseTask(), _group({"a": 1})
    text = answer_text([6, 2, 0, 0], reason="a fits")
    values = [(6.0, 2.0, 0.0, 0.0), None, (8.0, 4.0, 2.0, 0.0)]
    made = task.teacher_example(example, f"  {text}\n", values[0], values)
    assert made["completion"] == text and made["teacher_scores"] == [7.0, 3.0, 1.0, 0.0]
    assert task.target(made) == text and task.accept(made, values[0]) is None


# --- strategy ------------------------------------------------------------------------------------------


def _toy_oracle(messages) -> str:
    """Scores each passage 5 points per query word it contains (toy relevance is that count)."""
    user = messages[-1]["content"]
    query = set(user.split("Query:\n", 1)[1].split("\n", 1)[0].split())
    scores = {f"[{i}]": 5 * len(query & set(text.split())) for i, text in PASSAGE.findall(user)}
    return answer_text(list(scores.values()), reason="counted query words")


def test_strategy_with_an_oracle_ranks_toy_rows_by_grade():
    _, rows = make_toy_splits(0, 12, seed=3)
    strategy = GroupwiseTask().strategy(StrategyOptions(group_size=3, repeats=2))
    results = rerank_rows(rows, strategy, FunctionBackend(_toy_oracle))
    for row, result in zip(rows, results, strict=True):
        grades = {label["doc_id"]: label["relevance"] for label in row["labels"]}
        ranked = [grades.get(doc_id, 0) for doc_id in result.doc_ids]
        assert sorted(result.doc_ids) == sorted(c["doc_id"] for c in row["candidates"])
        assert ranked == sorted(ranked, reverse=True) and result.fallbacks == 0
        assert result.prompts == 2 * math.ceil(len(row["candidates"]) / 3)


def test_strategy_prompts_are_the_task_prompts_of_its_groups():
    task = GroupwiseTask(max_passage_words=2)
    strategy = task.strategy(StrategyOptions(group_size=4, repeats=2, seed=5))
    row = _row(10)
    row["candidates"][0]["text"] = "a much longer passage text"
    sent = []
    rerank_rows([row], strategy, FunctionBackend(lambda messages: sent.append(messages) or ""))
    groups = strategy.groups("q1", 10)
    expected = [
        task.prompt({"query": row["query"], "candidates": [row["candidates"][p] for p in g]}) for g in groups
    ]
    assert sent == expected and len(sent) == 6


def test_strategy_samples_as_grouprank_unless_overridden():
    strategy = GroupwiseTask().strategy(StrategyOptions())
    assert strategy.sampling == Sampling(max_new_tokens=8000, temperature=0.3, top_p=0.8)
    assert (strategy.group_size, strategy.repeats, strategy.shuffle) == (20, 1, True)
    greedy = GroupwiseTask().strategy(
        StrategyOptions(temperature=0.0, max_new_tokens=64, shuffle_groups=False)
    )
    assert greedy.sampling == Sampling(max_new_tokens=64, temperature=0.0, top_p=0.8) and not greedy.shuffle
    assert greedy.describe()["task"]["max_passage_words"] == 300


# --- registry and tiny-tokenizer phrases ------------------------------------------------------------------


def test_get_task_builds_the_groupwise_task_and_rejects_bad_options():
    assert get_task("groupwise", group_size=5).group_size == 5
    with pytest.raises(ValueError, match="'group_sise'.*'group_size'"):
        get_task("groupwise", group_sise=5)
    with pytest.raises(ValueError, match="group_size must be >= 1"):
        get_task("groupwise", group_size=0)


def test_template_phrases_occur_in_a_rendered_prompt_and_target():
    task = GroupwiseTask(group_size=20)
    example = task.examples(_row(25))[0][0]
    rendered = "\n".join(m["content"] for m in task.prompt(example)) + task.target(example)
    phrases = task.template_phrases()
    assert GROUPRANK_SYSTEM in phrases and "[20]" in phrases
    assert [p for p in phrases if p not in rendered] == []
    assert not [p for p in phrases if "fleas" in p or "passage number" in p]


def test_toy_rows_give_examples_whose_targets_score_them():
    train, _ = GroupwiseTask().toy_splits(16, 0)
    examples, dropped = expand_rows(GroupwiseTask(), train)
    assert dropped == {} and len(examples) == 16
    parsed = [GroupwiseTask().parse(e, GroupwiseTask().target(e)) for e in examples]
    assert all(p.ok and json.dumps(p.value) for p in parsed)
