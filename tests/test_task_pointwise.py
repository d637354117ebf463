"""Tests of the pointwise task (ERank): prompt, target, parser and reward on hand-made examples in ERank's
format, one example per (query, document), s·p(s) from token log-probabilities, and the pointwise strategy
through the task's own prompts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.generation import Generation
from rewards.registry import get_reward
from tasks import expand_rows, get_task
from tasks.pointwise import ERANK_INSTRUCTION, PointwiseTask, erank_score
from tasks.pointwise_scoring import Pointwise, pair_example
from tasks.strategy import StrategyOptions, rerank_rows
from tests.oracles import FunctionBackend

ERANK_PROMPT = (  # ERank Fig. 5 / HF examples/utils.py, Table 7's BEIR / TREC instruction, one document
    "Given a query and a document, please give a relevance score of 0 to 10. The goal or relevance "
    "definition is: Given a query, retrieval relevant passage.\n\n"
    "Here is the query: how long do fleas live\n"
    "Here is the document: A flea can live up to a year.\n"
    "After thinking, directly choose a relevance score from [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].\n"
    "- 0 represents completely not related.\n- 10 means perfectly related.\nDesired output format:\n"
    "<think>put your thinking here</think><answer>Only allows an integer here</answer>\nYour output:"
)
ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["Fleas are wingless insects.", "Cats sleep a lot.", "A flea can live up to a year.", "Dogs bark."]


def _row(labels: dict[str, int], n: int = 4, **fields: object) -> dict:
    return {
        "query_id": "q1",
        "query": "how long do fleas live",
        "candidates": [{"doc_id": f"d{i}", "text": TEXTS[i % len(TEXTS)]} for i in range(n)],
        "labels": [{"doc_id": doc_id, "relevance": grade} for doc_id, grade in labels.items()],
        **fields,
    }


def _pair(doc: int = 2, grade: int = 1, **fields: object) -> dict:
    row = _row({f"d{doc}": grade})
    return {**pair_example(row, row["candidates"][doc]), **fields}


# --- examples ---------------------------------------------------------------------------------------------


def test_examples_are_the_first_positives_and_negatives_one_document_each():
    row = _row(
        {"d2": 2, "d4": 1, "d0": 0},
        n=6,
        teacher_order=["d4", "d2"],
        reasoning="list",
        teacher_scores=[1.0] * 6,
    )
    examples, reason = PointwiseTask(negatives_per_query=2).examples(row)
    assert reason == ""
    assert [e["candidates"][0]["doc_id"] for e in examples] == ["d2", "d0", "d1"]
    assert [e["example_id"] for e in examples] == ['["q1", "d2"]', '["q1", "d0"]', '["q1", "d1"]']
    assert all(e["task"] == "pointwise" and len(e["candidates"]) == 1 for e in examples)
    assert examples[0]["labels"] == [{"doc_id": "d2", "relevance": 2}] and examples[2]["labels"] == []
    assert all(
        e["teacher_order"] == [] and e["teacher_scores"] == [] and e["reasoning"] == "" for e in examples
    )


def test_examples_default_to_erank_one_positive_and_nineteen_negatives():
    examples, _ = PointwiseTask().examples(_row({"d5": 1}, n=30))
    assert len(examples) == 20 and examples[0]["candidates"][0]["doc_id"] == "d5"


def test_rows_without_a_positive_or_a_negative_give_no_example():
    task = PointwiseTask()
    assert task.examples(_row({"d0": 0})) == ([], "no_positive")
    assert task.examples(_row({f"d{i}": 1 for i in range(4)})) == ([], "no_negative")
    examples, dropped = expand_rows(task, [_row({}), _row({"d1": 3})])
    assert dropped == {"no_positive": 1} and len(examples) == 4
    assert expand_rows(task, examples)[0] == examples  # the task's own examples are kept as they are


# --- prompt, target, parser -------------------------------------------------------------------------------


def test_prompt_is_erank_s_prompt_with_the_passage_cut():
    assert PointwiseTask().prompt(_pair()) == [{"role": "user", "content": ERANK_PROMPT}]
    cut = PointwiseTask(max_passage_words=3, instruction="Find the answer.").prompt(_pair())[0]["content"]
    assert "Here is the document: A flea can\n" in cut and "definition is: Find the answer.\n" in cut


def test_target_without_teacher_scores_the_label_and_parses_back():
    task = PointwiseTask()
    assert task.target(_pair(grade=3)) == "<think></think><answer>10</answer>"
    assert task.target(_pair(grade=0)) == "<think></think><answer>0</answer>"
    assert task.parse(_pair(), task.target(_pair(grade=1))).value == 10


def test_target_with_teacher_is_the_completion():
    answer = "<think>The document says a flea lives up to a year.</think><answer>9</answer>"
    assert PointwiseTask().target(_pair(completion=answer)) == answer


@pytest.mark.parametrize(
    ("text", "value", "reason"),
    [
        ("<think>It states the lifespan directly.</think>\n<answer>9</answer>", 9, ""),
        ("<think>off topic</think> <answer> 0 </answer>", 0, ""),
        ("<answer>7</answer>", None, "missing_think"),
        ("<think>t</think><answer>11</answer>", None, "out_of_range"),
        ("<think>t</think><answer>seven</answer>", None, "not_an_integer"),
        ("<think>t</think><answer>-1</answer>", None, "out_of_range"),
        ("<think>t</think><answer></answer>", None, "empty"),
        ("", None, "missing_think"),
    ],
)
def test_parse_reads_erank_answers(text, value, reason):
    parsed = PointwiseTask().parse(_pair(), text)
    assert (parsed.value, parsed.reason) == (value, reason)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/thinkaswer0123456789 -x")), max_size=60))
def test_junk_outputs_never_raise(text):
    parsed = PointwiseTask().parse(_pair(), text)
    assert parsed.ok == (parsed.value is not None) and (parsed.ok or parsed.reason)
    assert get_reward("erank_se")([text], ref_score=[5.0])[0] <= 1.0


def test_parse_of_a_non_string_names_it():
    assert PointwiseTask().parse(_pair(), None).reason == "not_text"


# --- s·p(s) -------------------------------------------------------------------------------------------------


def test_score_is_s_times_the_probability_of_the_tokens_spelling_s():
    tokens = ("<think>", "relevant", "</think>", "<answer>", "1", "0", "</answer>")
    logprobs = (-0.3, -2.0, -0.1, -0.2, math.log(0.8), math.log(0.5), -0.4)
    generation = Generation("<think>relevant</think><answer>10</answer>", 7, tokens, logprobs)
    assert erank_score(generation) == pytest.approx(10 * 0.8 * 0.5)
    seven = Generation(
        "<think>x</think><answer>7</answer>",
        3,
        ("<think>x</think><answer>", "7", "</answer>"),
        (-1.0, math.log(0.5), -2.0),
    )
    assert erank_score(seven) == pytest.approx(3.5)
    assert erank_score(Generation("<answer>4</answer>", 3)) == 4.0  # no log-probabilities: p = 1
    assert erank_score(Generation("<answer>11</answer>", 3)) is None
    assert PointwiseTask().score([seven, Generation("no answer", 2)]) == (pytest.approx(1.75), 1)


# --- rewards ------------------------------------------------------------------------------------------------


def test_reward_columns_give_the_label_or_the_teacher_s_reference_score():
    task = PointwiseTask()
    assert task.reward_columns(_pair(grade=2)) == {"is_positive": True, "relevance": 2, "ref_score": 10.0}
    assert task.reward_columns(_pair(grade=0)) == {"is_positive": False, "relevance": 0, "ref_score": 0.0}
    taught = task.teacher_example(_pair(grade=0), "  <think>a</think><answer>3</answer>\n", 3, [3, 2, 5])
    assert taught["completion"] == "<think>a</think><answer>3</answer>" and taught["teacher_scores"] == [3.0]
    assert task.reward_columns(taught)["ref_score"] == 3.0 and task.target(taught) == taught["completion"]
    assert task.accept(taught, 3) is None and task.agreement == "consensus"


def test_default_reward_is_erank_rr_on_the_task_s_columns():
    """Positive ranked first gets 1/φ = 1; a negative below it gets 1 − (s − t)²/100; junk gets −1."""
    task = PointwiseTask()
    examples, _ = task.examples(_row({"d2": 1}))
    examples[1] = task.teacher_example(examples[1], "<think>a</think><answer>3</answer>", 3, [3])
    completions = ["<think>a</think><answer>9</answer>", "<think>b</think><answer>2</answer>", "junk", "x"]
    columns = [{**e, **task.reward_columns(e)} for e in examples]
    kwargs = {key: [c[key] for c in columns] for key in ("query_id", "is_positive", "ref_score")}
    assert task.default_rewards == ("erank_rr",)
    rewards = get_reward("erank_rr")(completions, **kwargs)
    assert rewards == pytest.approx([1.0, 1 - (2 - 3) ** 2 / 100, -1.0, -1.0])
    assert get_reward("erank_rr")([task.target(e) for e in examples], **kwargs) == pytest.approx([1, 1, 1, 1])


# --- strategy ----------------------------------------------------------------------------------------------


def _grade_oracle(messages) -> str:
    """Scores a toy passage by how many query words it contains (the toy corpus's grade), times 5."""
    content = messages[-1]["content"]
    query = content.split("Here is the query: ")[1].split("\n")[0].split()
    document = content.split("Here is the document: ")[1].split("\n")[0].split()
    return f"<think>count</think><answer>{5 * len(set(query) & set(document))}</answer>"


def test_strategy_with_an_oracle_ranks_toy_rows_by_grade():
    rows, _ = PointwiseTask().toy_splits(6, 0)
    results = rerank_rows(rows, PointwiseTask().strategy(StrategyOptions()), FunctionBackend(_grade_oracle))
    for row, result in zip(rows, results, strict=True):
        grades = {label["doc_id"]: label["relevance"] for label in row["labels"]}
        ranked = [grades.get(doc_id, 0) for doc_id in result.doc_ids]
        assert ranked == sorted(ranked, reverse=True) and result.fallbacks == 0
        assert result.scores == sorted(result.scores, reverse=True) and result.scores[0] == 5.0 * ranked[0]


def test_strategy_prompts_are_the_task_prompts_of_each_pair():
    task = PointwiseTask(max_passage_words=2, instruction="Be strict.")
    row = _row({"d1": 1})
    seen = []
    rerank_rows([row], task.strategy(StrategyOptions()), FunctionBackend(lambda m: seen.append(m) or "x"))
    assert seen == [task.prompt(pair_example(row, candidate)) for candidate in row["candidates"]]


def test_strategy_samples_greedily_with_log_probabilities_unless_overridden():
    strategy = PointwiseTask().strategy(StrategyOptions(stages="50@1"))
    assert isinstance(strategy, Pointwise) and strategy.stages == ((50, 1),)
    assert (strategy.sampling.temperature, strategy.sampling.logprobs, strategy.sampling.max_new_tokens) == (
        0.0,
        True,
        4096,
    )
    assert PointwiseTask().strategy(StrategyOptions(max_new_tokens=64)).sampling.max_new_tokens == 64
    described = strategy.describe()
    assert described["task"] == "pointwise" and described["task_args"]["instruction"] == ERANK_INSTRUCTION
    json.dumps(described)


# --- registry and tokenizer phrases ----------------------------------------------------------------------


def test_registry_builds_the_task_with_its_options():
    assert get_task("pointwise") == PointwiseTask(1, 19, 300, ERANK_INSTRUCTION)
    assert get_task("pointwise", negatives_per_query=3).negatives_per_query == 3
    with pytest.raises(ValueError, match="negatives_per_query must be >= 1"):
        get_task("pointwise", negatives_per_query=0)
    with pytest.raises(ValueError, match="unknown option 'instructions'"):
        get_task("pointwise", instructions="x")


def test_template_phrases_are_constant_pieces_of_the_prompt():
    task = PointwiseTask(instruction="Be strict.")
    rendered = task.prompt(_pair())[0]["content"]
    phrases = task.template_phrases()
    assert len(phrases) == 3 and all(phrase in rendered for phrase in phrases)
    assert any("Be strict." in phrase for phrase in phrases)
    assert not any("flea" in phrase for phrase in phrases)
