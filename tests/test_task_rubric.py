"""Tests of the rubric task (Retro*): prompt, target, parser and reward on hand-made examples in Retro*'s
format, mean-score@K with failed parses as 0, the multi-pass ``100@1 -> 30@16`` order on an oracle, and the
strategy's prompts."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.generation import Generation
from rewards.registry import get_reward
from tasks import get_task
from tasks.pointwise_scoring import pair_example
from tasks.rubric import RETRO_USER, RubricTask
from tasks.strategy import StrategyOptions, rerank_rows
from tests.oracles import FunctionBackend

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["Fleas are wingless insects.", "A flea can live up to a year.", "Dogs bark."]
RETRO_ANSWER = (  # Retro*'s three steps, ending in the score tag
    "1. Query Analysis: The query asks for the lifespan of fleas.\n"
    "2. Document Analysis: The document states that a flea can live up to a year.\n"
    "3. Relevance Annotation: It answers the query directly.\n"
    "<score>\n85\n</score>"
)


def _row(labels: dict[str, int], n: int = 3) -> dict:
    return {
        "query_id": "q1",
        "query": "how long do fleas live",
        "candidates": [{"doc_id": f"d{i}", "text": TEXTS[i % len(TEXTS)]} for i in range(n)],
        "labels": [{"doc_id": doc_id, "relevance": grade} for doc_id, grade in labels.items()],
    }


def _pair(doc: int = 1, grade: int = 1, **fields: object) -> dict:
    row = _row({f"d{doc}": grade})
    return {**pair_example(row, row["candidates"][doc]), **fields}


# --- examples, prompt, target, parser -----------------------------------------------------------------------


def test_examples_default_to_retro_s_one_positive_and_one_negative():
    examples, reason = RubricTask().examples(_row({"d1": 2, "d2": 1}))
    assert reason == "" and [e["candidates"][0]["doc_id"] for e in examples] == ["d1", "d0"]
    assert [e["example_id"] for e in examples] == ['["q1", "d1"]', '["q1", "d0"]']
    assert all(e["task"] == "rubric" for e in examples)
    assert RubricTask().examples(_row({})) == ([], "no_positive")


def test_prompt_is_retro_s_rubric_prompt_with_the_generic_definition():
    (message,) = RubricTask().prompt(_pair())
    assert message["role"] == "user"
    content = message["content"]
    assert content.startswith(
        "Here is the **relevance definition** in a retrieval task: Given a query (query) and a document "
        "(document), the document is relevant to the query if the document can help answer the query.\n\n"
        "Now given a **query** (query) and a **document** (document) in this retrieval task"
    )
    assert content.endswith(
        "Query (query):\n[Begin of Query]\nhow long do fleas live\n[End of Query]\n\n"
        "Document (document):\n[Begin of Document]\nA flea can live up to a year.\n[End of Document]\n"
    )
    assert "- **80-100 (Highly Relevant):** The document directly and comprehensively addresses" in content


def test_prompt_takes_the_definition_the_types_and_the_word_budget():
    task = RubricTask(
        relevance_definition="Helps a vet.", query_type="question", doc_type="note", max_passage_words=3
    )
    content = task.prompt(_pair())[0]["content"]
    assert "retrieval task: Helps a vet.\n" in content and "Query (question):" in content
    assert "Document (note):\n[Begin of Document]\nA flea can\n[End of Document]" in content


def test_target_without_teacher_is_the_top_or_bottom_score_and_parses_back():
    task = RubricTask()
    assert task.target(_pair(grade=2)) == "<score>100</score>"
    assert task.target(_pair(grade=0)) == "<score>0</score>"
    assert task.parse(_pair(), task.target(_pair(grade=1))).value == 100
    assert task.target(_pair(completion=RETRO_ANSWER)) == RETRO_ANSWER


@pytest.mark.parametrize(
    ("text", "value", "reason"),
    [
        (RETRO_ANSWER, 85, ""),
        ("<score>7</score> and later <score>90</score>", 7, ""),
        ("<score>high</score>", None, "not_an_integer"),
        ("<score>101</score>", None, "out_of_range"),
        ("<score></score>", None, "empty"),
        ("<score>60", None, "unclosed_tag"),
        ("I think it is relevant: 80", None, "missing_tag"),
    ],
)
def test_parse_reads_retro_answers(text, value, reason):
    parsed = RubricTask().parse(_pair(), text)
    assert (parsed.value, parsed.reason) == (value, reason)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>/score0123456789 -x\n")), max_size=60))
def test_junk_outputs_never_raise(text):
    parsed = RubricTask().parse(_pair(), text)
    assert parsed.ok == (parsed.value is not None) and (parsed.ok or parsed.reason)
    assert RubricTask().score([Generation(text, 1)])[0] == (parsed.value or 0)


def test_mean_of_k_counts_failed_parses_as_zero():
    samples = [Generation("<score>80</score>", 3), Generation("oops", 1), Generation(RETRO_ANSWER, 9)]
    assert RubricTask().score(samples) == (pytest.approx(55.0), 1)
    assert RubricTask().score([Generation("none", 1)] * 4) == (0.0, 4)


# --- rewards ------------------------------------------------------------------------------------------------


def test_reward_columns_and_teacher_example():
    task = RubricTask()
    assert task.reward_columns(_pair(grade=2)) == {"is_positive": True, "relevance": 2, "ref_score": 100.0}
    taught = task.teacher_example(_pair(grade=0), RETRO_ANSWER + "\n", 85, [85, 70, 90])
    assert taught["completion"] == RETRO_ANSWER and taught["teacher_scores"] == [85.0]
    assert task.reward_columns(taught) == {"is_positive": False, "relevance": 0, "ref_score": 85.0}
    assert task.accept(taught, 85) is None and task.agreement == "consensus"


def test_default_reward_is_retro_s_composite_on_the_task_s_columns():
    """Two rollouts per prompt. Positive 90, 70: intra 0 (|s − s̄| = 10 < τ), inter 1 each (both beat every
    negative rollout). Negative 10 and junk: intra +1 and −1 (the invalid one is furthest), inter 1 and 0.
    R = 0.75 · intra + 0.25 · inter."""
    task = RubricTask()
    examples, _ = task.examples(_row({"d1": 1}))
    rows = [{**e, **task.reward_columns(e)} for e in examples for _ in range(2)]
    columns = {key: [row[key] for row in rows] for key in ("query_id", "is_positive")}
    completions = ["<score>90</score>", RETRO_ANSWER.replace("85", "70"), "<score>10</score>", "no score"]
    assert task.default_rewards == ("retro_composite",)
    rewards = get_reward("retro_composite")(completions, group_ids=[0, 0, 1, 1], **columns)
    assert rewards == pytest.approx([0.25, 0.25, 1.0, -0.75])


# --- strategy ----------------------------------------------------------------------------------------------


class _Oracle:
    """Answers a pair with a coarse score (its true score rounded down to a band of 10) the first time it is
    asked, the true score after: a cheap first pass and a precise second one."""

    def __init__(self, truth: dict[str, int]):
        self.truth, self.asked = truth, {}
        self.seen = []

    def __call__(self, messages) -> str:
        self.seen.append(messages)
        text = re.search(r"\[Begin of Document\]\n(.*)\n", messages[0]["content"]).group(1)
        self.asked[text] = self.asked.get(text, 0) + 1
        score = self.truth[text] if self.asked[text] > 1 else self.truth[text] // 10 * 10
        return f"analysis <score>{score}</score>"


def test_multi_pass_100_at_1_then_30_at_16_rescores_the_top_30():
    truth = list(range(100))
    random.Random(0).shuffle(truth)
    row = {
        "query_id": "q",
        "query": "q",
        "candidates": [{"doc_id": f"d{i}", "text": f"t{i}"} for i in range(100)],
        "labels": [],
    }
    oracle = _Oracle({f"t{i}": score for i, score in enumerate(truth)})
    strategy = RubricTask().strategy(StrategyOptions(stages="100@1,30@16"))
    (result,) = rerank_rows([row], strategy, FunctionBackend(oracle))
    final = [truth[int(doc_id[1:])] for doc_id in result.doc_ids]
    assert final[:30] == list(range(99, 69, -1))  # the top 30 bands, re-sorted by their exact scores
    first_stage_order = [score for score in truth if score < 70]  # ties keep the first-stage order ...
    assert final[30:] == sorted(first_stage_order, key=lambda s: -(s // 10))  # ... within each band
    assert result.prompts == 100 + 30 and result.generated_tokens == 2 * (100 + 30 * 16)
    assert result.scores is None and result.fallbacks == 0
    assert sorted(oracle.asked.values()).count(2) == 30


def test_strategy_prompts_are_the_task_prompts_of_each_pair():
    task = RubricTask(relevance_definition="Helps a vet.", max_passage_words=2)
    row = _row({"d1": 1})
    oracle = _Oracle({text: 50 for text in ("Fleas are", "A flea", "Dogs bark.")})
    (result,) = rerank_rows([row], task.strategy(StrategyOptions()), FunctionBackend(oracle))
    assert oracle.seen == [task.prompt(pair_example(row, candidate)) for candidate in row["candidates"]]
    assert result.doc_ids == ["d0", "d1", "d2"] and result.scores == [50.0] * 3  # ties keep their order


def test_strategy_samples_as_retro_unless_overridden():
    sampling = RubricTask().strategy(StrategyOptions()).sampling
    assert (sampling.temperature, sampling.top_k, sampling.max_new_tokens) == (0.6, 40, 4096)
    assert RubricTask().strategy(StrategyOptions(temperature=1.0, sample_top_k=0)).sampling.top_k == 0
    task = RubricTask(relevance_definition="Helps a vet.")
    strategy = task.strategy(StrategyOptions(stages="100@1,30@16"))
    assert strategy.task == task
    assert strategy.stages == ((100, 1), (30, 16)) and strategy.sampling == sampling
    described = strategy.describe()
    assert described["template"] == {"user": RETRO_USER} and described["task"] == "rubric"
    json.dumps(described)


# --- registry and tokenizer phrases ----------------------------------------------------------------------


def test_registry_builds_the_task_with_its_options():
    assert get_task("rubric") == RubricTask(1, 1, 300, None, "query", "document")
    assert get_task("rubric", doc_type="passage").doc_type == "passage"
    with pytest.raises(ValueError, match="max_passage_words must be >= 1"):
        get_task("rubric", max_passage_words=0)


def test_template_phrases_are_constant_pieces_of_the_prompt():
    task = RubricTask(relevance_definition="Helps a vet.", doc_type="note")
    rendered = task.prompt(_pair())[0]["content"]
    phrases = task.template_phrases()
    assert len(phrases) == 3 and all(phrase in rendered for phrase in phrases)
    assert any("Helps a vet." in phrase for phrase in phrases)
    assert not any("flea" in phrase for phrase in phrases)
