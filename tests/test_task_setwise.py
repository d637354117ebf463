"""Tests of the setwise task (Rank-R1): prompt, target, parser and reward on hand-made examples in Rank-R1's
format, example selection, synthesis checks, and heapsort ranking through the task's own prompts."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.generation import Sampling
from rewards.registry import get_reward
from rewards.setwise import rank_r1_setwise_reward
from tasks import expand_rows, get_task
from tasks.heapsort import SetwiseHeapsort
from tasks.setwise import R1_SYSTEM_PROMPT, SetwiseTask
from tasks.strategy import StrategyOptions, rerank_rows
from tests.oracles import FunctionBackend

RANK_R1_USER = (  # Rank-R1 prompts/prompt_setwise-R1.toml, prompt_user, with three documents filled in
    'Given the query: "how long do fleas live", which of the following documents is most relevant?\n'
    "[1] Fleas are wingless insects.\n"
    "[2] A flea can live up to a year.\n"
    "[3] Dogs need regular baths.\n"
    "After completing the reasoning process, please provide only the label of the most relevant document to "
    "the query, enclosed in square brackets, within the answer tags. For example, if the third document is "
    "the most relevant, the answer should be: <think> reasoning process here </think> <answer>[3]</answer>."
)
RANK_R1_V02 = [  # Rank-R1 prompts/prompt_setwise-R1-v0.2.toml, with the same three documents filled in
    {
        "role": "system",
        "content": "You are RankLLM, an intelligent assistant capable of evaluating the relevancy of "
        "passages to a given query.",
    },
    {
        "role": "user",
        "content": "You will be presented with a query, and a set of documents.\n\n"
        "Your task consists of the following step:\n\n"
        "1. Analyze the query: Carefully read the query and identify the core problem or question being "
        "asked.\n\n"
        "2. Analyze the documents: Thoroughly examine each document and briefly explain how each document is "
        "relevant or not relevant to the query.\n\n"
        "3. Find the most relevant document: Based on your analysis, select the most relevant document to "
        "the query from the set and briefly explain why.\n\n"
        "Important: Provide your analysis within the <think> </think> tags and answer only the label of the "
        "most relevant document, enclosed in square brackets, within the <answer> </answer> tags. For "
        "example, if the third document is the most relevant, your response should be:\n"
        "<think> Your analysis here </think>\n<answer>[3]</answer>\n\n"
        "Here is the query: how long do fleas live\n\n"
        "Here are the documents:\n"
        "[1]: Fleas are wingless insects.\n\n[2]: A flea can live up to a year.\n\n"
        "[3]: Dogs need regular baths.",
    },
]
ROOT = Path(__file__).resolve().parents[1]
SETWISE = ["task=setwise", "task_args={negatives_per_query: 7}"]
TEXTS = ["Fleas are wingless insects.", "A flea can live up to a year.", "Dogs need regular baths."]


def _example(**fields: object) -> dict:
    example = {
        "query_id": "q1",
        "query": "how long do fleas live",
        "candidates": [{"doc_id": f"d{i}", "text": text} for i, text in enumerate(TEXTS, start=1)],
        "labels": [{"doc_id": "d2", "relevance": 1}],
        "task": "setwise",
        "example_id": "q1",
        "completion": "",
    }
    return {**example, **fields}


def _row(grades: list[int], qid: str = "q1") -> dict:
    candidates = [{"doc_id": f"d{i}", "text": f"passage {i}"} for i in range(len(grades))]
    labels = [{"doc_id": f"d{i}", "relevance": g} for i, g in enumerate(grades) if g is not None]
    return {"query_id": qid, "query": "q", "candidates": candidates, "labels": labels}


def _ids(example: dict) -> list[str]:
    return [candidate["doc_id"] for candidate in example["candidates"]]


# --- prompt, target, parser, reward ---------------------------------------------------------------------


def test_prompt_is_rank_r1s_setwise_prompt():
    assert SetwiseTask().prompt(_example()) == [
        {"role": "system", "content": R1_SYSTEM_PROMPT},
        {"role": "user", "content": RANK_R1_USER},
    ]
    assert R1_SYSTEM_PROMPT.startswith("A conversation between User and Assistant.")


def test_prompt_version_v02_is_the_v02_releases_prompt_with_the_same_target_and_parse():
    task = SetwiseTask(prompt_version="v0.2")
    assert task.prompt(_example()) == RANK_R1_V02
    assert task.target(_example()) == SetwiseTask().target(_example())
    assert task.parse(_example(), "<think> b </think>\n<answer>[2]</answer>").value == 2
    described = task.strategy(StrategyOptions()).describe()
    assert described["template"] == {"system": RANK_R1_V02[0]["content"], "user": task.release_prompt.user}
    with pytest.raises(ValueError, match="prompt_version 'v0.3': expected one of v0.1, v0.2"):
        get_task("setwise", prompt_version="v0.3")


def test_passages_are_cut_to_max_passage_words():
    example = _example()
    example["candidates"][0]["text"] = "one two\n three  four five"
    user = SetwiseTask(max_passage_words=3).prompt(example)[-1]["content"]
    assert "\n[1] one two three\n[2] A flea can\n[3] Dogs need regular\n" in user


def test_target_without_teacher_is_the_positives_label_and_earns_the_reward():
    task = SetwiseTask()
    target = task.target(_example())
    assert target == "<think></think>\n<answer>[2]</answer>"
    assert task.parse(_example(), target).value == 2
    assert task.reward_columns(_example()) == {"gold_label": "[2]"}
    assert rank_r1_setwise_reward([target], gold_label=[task.reward_columns(_example())["gold_label"]]) == [
        1.0
    ]


def test_target_with_teacher_is_the_completion():
    completion = "<think>The second one gives a lifespan.</think> <answer>[2]</answer>"
    assert SetwiseTask().target(_example(completion=completion)) == completion


def test_gold_label_is_the_highest_grade_and_needs_a_positive():
    graded = _example(labels=[{"doc_id": "d1", "relevance": 1}, {"doc_id": "d3", "relevance": 2}])
    assert SetwiseTask().reward_columns(graded) == {"gold_label": "[3]"}
    with pytest.raises(ValueError, match="no candidate has a positive label"):
        SetwiseTask().target(_example(labels=[{"doc_id": "d1", "relevance": 0}]))


@pytest.mark.parametrize(
    ("text", "value", "reason"),
    [
        ("<think>d2 gives a lifespan</think> <answer>[2]</answer>", 2, ""),
        ("<think>x</think>\n<answer> [3]\n</answer>", 3, ""),
        ("<THINK>x</THINK><ANSWER>[1]</ANSWER>", 1, ""),  # Rank-R1's inference lowercases first
        ("<think>x</think><answer>[4]</answer>", None, "out_of_range"),  # three documents shown
        ("<think>x</think><answer>[02]</answer>", None, "not_a_label"),
        ("<think>x</think><answer>[2] > [1]</answer>", None, "not_a_label"),
        ("<think>x</think><answer> </answer>", None, "empty_answer"),
        ("<answer>[2]</answer>", None, "missing_think"),
        ("[2]", None, "missing_think"),
    ],
)
def test_parse_reads_rank_r1_answers(text, value, reason):
    parsed = SetwiseTask().parse(_example(), text)
    assert (parsed.value, parsed.reason) == (value, reason)


def test_reward_is_exact_match_of_the_gold_label():
    task, example = SetwiseTask(), _example()
    completions = [
        "<think>a</think> <answer>[2]</answer>",
        "<think>a</think> <answer>[1]</answer>",
        "<think>a</think> <answer>2</answer>",
        "<THINK>a</THINK> <ANSWER>[2]</ANSWER>",  # Rank-R1's training reward matches tags case-sensitively
    ]
    columns = {key: [value] * 4 for key, value in task.reward_columns(example).items()}
    assert get_reward(task.default_rewards[0])(completions, **columns) == [1.0, 0.0, 0.0, 0.0]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/[]0123456789 \nthinkanswerTHINK")), max_size=60))
def test_junk_outputs_never_raise(text):
    parsed = SetwiseTask().parse(_example(), text)
    assert parsed.ok == (parsed.value in (1, 2, 3)) and parsed.ok != bool(parsed.reason)
    assert rank_r1_setwise_reward([text], gold_label=["[2]"]) in ([0.0], [1.0])


# --- examples, synthesis checks --------------------------------------------------------------------------


def test_examples_take_the_first_positive_and_first_negatives_shuffled_per_query():
    row = _row([None, 0, 2, None, 1, None])  # d2 and d4 positive; d0, d1 (graded 0), d3, d5 negatives
    (example,), reason = SetwiseTask(negatives_per_query=3).examples(row)
    expected = ["d2", "d0", "d1", "d3"]
    random.Random("0:q1").shuffle(expected)
    assert reason == "" and _ids(example) == expected
    assert sorted(label["doc_id"] for label in example["labels"]) == ["d1", "d2"]
    assert (example["task"], example["example_id"], example["completion"]) == ("setwise", "q1", "")
    assert SetwiseTask().reward_columns(example) == {"gold_label": f"[{expected.index('d2') + 1}]"}
    assert SetwiseTask(negatives_per_query=3).examples(row) == ([example], "")  # deterministic
    orders = {tuple(_ids(SetwiseTask(negatives_per_query=3, seed=s).examples(row)[0][0])) for s in range(8)}
    assert len(orders) > 1  # the seed shuffles


def test_examples_default_to_one_positive_and_nineteen_negatives():
    (example,), _ = SetwiseTask().examples(_row([0] * 25 + [1, 1]))
    assert len(example["candidates"]) == 20 and "d26" not in _ids(example)
    assert set(_ids(example)) == {f"d{i}" for i in range(19)} | {"d25"}


def test_examples_clear_the_teacher_columns_of_the_whole_list():
    row = {**_row([1, 0]), "teacher_order": ["d1", "d0"], "reasoning": "r", "teacher_scores": [0.1, 0.9]}
    (example,), _ = SetwiseTask().examples(row)
    assert (example["teacher_order"], example["reasoning"], example["teacher_scores"]) == ([], "", [])


def test_each_positive_gives_its_own_set_with_a_unique_id():
    examples, _ = SetwiseTask(positives_per_query=2, negatives_per_query=1).examples(_row([1, 0, 2, 3]))
    assert [e["example_id"] for e in examples] == ["q1", "q1:1"]
    assert [sorted(_ids(e)) for e in examples] == [["d0", "d1"], ["d1", "d2"]]


def test_rows_without_a_positive_or_negative_are_dropped_with_a_reason():
    task = SetwiseTask()
    assert task.examples(_row([None, 0])) == ([], "no_positive")
    assert task.examples(_row([1, 2])) == ([], "no_negative")
    examples, dropped = expand_rows(task, [_row([None, 0]), _row([1, 0], "q2"), _row([1, 2]), _example()])
    assert [e["example_id"] for e in examples] == ["q2", "q1"]
    assert dropped == {"no_positive": 1, "no_negative": 1}


def test_accept_needs_the_gold_label_and_teacher_example_keeps_the_answer():
    task, example = SetwiseTask(), _example()
    assert task.accept(example, 2) is None and task.accept(example, 1) == "wrong_label"
    text = "  <think>d2 says a year</think> <answer>[2]</answer>\n"
    taught = task.teacher_example(example, text, 2, [2, 2, 1])
    assert taught == {**example, "completion": text.strip()} and task.target(taught) == text.strip()


def test_registry_builds_the_task_with_its_options():
    task = get_task("setwise", negatives_per_query=3, max_passage_words=50)
    assert task == SetwiseTask(negatives_per_query=3, max_passage_words=50)
    assert (task.row_kind, task.agreement, task.default_rewards) == (
        "ranking",
        "majority",
        ("rank_r1_setwise",),
    )
    with pytest.raises(ValueError, match="negatives_per_query"):
        get_task("setwise", negatives_per_qery=3)
    with pytest.raises(ValueError, match="must be >= 1"):
        SetwiseTask(negatives_per_query=0)


@pytest.mark.parametrize("version", ["v0.1", "v0.2"])
def test_template_phrases_are_constant_pieces_of_the_prompt(version):
    task = SetwiseTask(prompt_version=version)
    phrases = task.template_phrases()
    rendered = "\n".join(m["content"] for m in task.prompt(_example()))
    assert [p for p in phrases if p not in rendered] == [f"[{i}]" for i in range(4, 21)]
    assert phrases[-20:] == [f"[{i}]" for i in range(1, 21)]
    assert any(len(p) > 100 and p in task.release_prompt.system + task.release_prompt.user for p in phrases)
    assert not [p for p in phrases if "fleas" in p or "flea can" in p]


# --- heapsort --------------------------------------------------------------------------------------------


def _shown(messages) -> tuple[str, list[str]]:
    """The query and ``[i] text`` documents of a setwise prompt, in prompt order."""
    user = messages[-1]["content"]
    query = re.match(r'Given the query: "(.*)", which', user).group(1)
    return query, re.findall(r"^\[\d+\] (.*)$", user, re.M)


def _oracle(messages) -> str:
    """Answers the label of the document holding the most query words (a toy row's relevance)."""
    query, texts = _shown(messages)
    best = max(range(len(texts)), key=lambda i: len(set(query.split()) & set(texts[i].split())))
    return f"<think>most query words</think> <answer>[{best + 1}]</answer>"


@pytest.mark.parametrize(("num_child", "top_k"), [(2, 3), (3, 10), (19, 10)])
def test_heapsort_with_an_oracle_ranks_toy_rows_by_relevance(num_child, top_k):
    rows, _ = SetwiseTask().toy_splits(12, 0, seed=1)
    strategy = SetwiseTask().strategy(StrategyOptions(num_child=num_child, top_k=top_k))
    results = rerank_rows(rows, strategy, FunctionBackend(_oracle))
    for row, result in zip(rows, results, strict=True):
        grades = {label["doc_id"]: label["relevance"] for label in row["labels"]}
        ranked = [grades.get(doc_id, 0) for doc_id in result.doc_ids]
        best = sorted((grades.get(doc_id, 0) for doc_id in _ids(row)), reverse=True)
        assert ranked[:top_k] == best[:top_k] and sorted(result.doc_ids) == sorted(_ids(row))
        assert result.fallbacks == 0 and result.prompts > 0


def test_heapsort_prompts_are_the_tasks_prompts_of_the_shown_documents():
    task = SetwiseTask(max_passage_words=2)
    row = {
        "query_id": "q",
        "query": "fleas",
        "candidates": [{"doc_id": f"d{i}", "text": f"text {i} is cut here"} for i in range(5)],
    }
    sent = []
    backend = FunctionBackend(lambda messages: sent.append(messages) or "no answer")
    (result,) = rerank_rows([row], SetwiseHeapsort(num_child=2, k=2, task=task), backend)
    by_text = {f"text {i}": candidate for i, candidate in enumerate(row["candidates"])}
    for messages in sent:
        shown = [by_text[text] for text in _shown(messages)[1]]
        assert messages == task.prompt({"query": "fleas", "candidates": shown})
    # heapify starts at node 5 // 2 = 2 (a leaf), then node 1 with its children 3 and 4
    assert _shown(sent[0])[1] == ["text 1", "text 3", "text 4"]
    assert result.fallbacks == result.prompts == len(sent) > 0


def test_strategy_takes_the_options_and_rank_r1s_sampling():
    strategy = SetwiseTask(max_passage_words=7).strategy(StrategyOptions(num_child=4, top_k=5))
    assert (strategy.num_child, strategy.k, strategy.task) == (4, 5, SetwiseTask(max_passage_words=7))
    assert strategy.sampling == Sampling(max_new_tokens=2048)
    assert SetwiseTask().strategy(StrategyOptions(max_new_tokens=64)).sampling.max_new_tokens == 64
    described = strategy.describe()
    assert described["strategy"] == "setwise" and described["task"]["max_passage_words"] == 7
