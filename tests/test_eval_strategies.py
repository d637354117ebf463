"""Strategies of evaluation without a model: window bookkeeping against hand-worked examples,
oracle backends, parse fallbacks, cross-query batching, fusion, significance and the cache."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scipy import stats

from core.data import DataError
from core.generation import Generation, Sampling
from evaluation.cache import QueryCache
from evaluation.fusion import fuse, normalize
from evaluation.significance import paired_tests, randomization_p
from tasks.group_scoring import Groupwise
from tasks.groupwise import GroupwiseTask, grouprank_messages
from tasks.heapsort import SetwiseHeapsort
from tasks.pointwise import PointwiseTask, erank_messages
from tasks.pointwise_scoring import parse_stages
from tasks.rubric import RETRO_USER, RubricTask, retro_definition, retro_messages
from tasks.setwise import SETWISE_USER, SetwiseTask, setwise_messages
from tasks.sliding_window import SlidingWindow, sliding_windows
from tasks.strategy import QueryResult, StrategyOptions, rerank_rows
from tests.oracles import FunctionBackend

LINE = re.compile(r"^\[(\d+)\]\.? (\S+)", re.M)


def row(qid: str, grades: list[int]) -> dict:
    """Candidates named ``g{grade}x{i}`` so an oracle can read the grade from the prompt."""
    candidates = [{"doc_id": f"{qid}-{i}", "text": f"g{g}x{i}"} for i, g in enumerate(grades)]
    return {"query_id": qid, "query": "query", "candidates": candidates, "labels": []}


def passages(messages) -> list[str]:
    """The ``[i] text`` passages of a prompt's user turn, in prompt order."""
    return [text for _, text in LINE.findall(messages[-1]["content"])]


def grade(text: str) -> int:
    return int(text[1 : text.index("x")])


def listwise_oracle(messages) -> str:
    texts = passages(messages)
    order = sorted(range(len(texts)), key=lambda i: -grade(texts[i]))
    return "<think>ok</think><answer>" + " > ".join(f"[{i + 1}]" for i in order) + "</answer>"


def rank(strategy, rows, respond):
    return rerank_rows(rows, strategy, FunctionBackend(respond))


@pytest.mark.parametrize(
    ("n", "window", "step", "expected"),
    [
        (
            100,
            20,
            10,
            [(80, 100), (70, 90), (60, 80), (50, 70), (40, 60), (30, 50), (20, 40), (10, 30), (0, 20)],
        ),
        (25, 20, 10, [(5, 25), (0, 15)]),
        (20, 20, 10, [(0, 20)]),
        (7, 20, 10, [(0, 7)]),
        (30, 10, 5, [(20, 30), (15, 25), (10, 20), (5, 15), (0, 10)]),
        (0, 20, 10, []),
    ],
)
def test_sliding_windows_hand_worked(n, window, step, expected):
    assert sliding_windows(n, window, step) == expected


def test_sliding_window_moves_each_window_in_order():
    """5 passages a..e, window 3, step 2, the model reverses every window:
    window (2,5) [c,d,e] -> [e,d,c] gives a b e d c; window (0,3) [a,b,e] -> [e,b,a] gives e b a d c."""
    seen = []

    def reverse(messages):
        seen.append(passages(messages))
        return "<think></think><answer>[3] > [2] > [1]</answer>"

    letters = [{"doc_id": c, "text": c} for c in "abcde"]
    query = {"query_id": "q", "query": "q", "candidates": letters, "labels": []}
    (result,) = rank(SlidingWindow(window=3, step=2), [query], reverse)
    assert seen == [["c", "d", "e"], ["a", "b", "e"]]
    assert result.doc_ids == list("ebadc") and result.repairs == 0 and result.prompts == 2


def test_sliding_window_lifts_the_last_passage_to_the_top_in_one_sweep():
    grades = [0] * 99 + [3]
    (result,) = rank(SlidingWindow(), [row("q", grades)], listwise_oracle)
    assert result.doc_ids[0] == "q-99" and sorted(result.doc_ids) == sorted(
        c["doc_id"] for c in row("q", grades)["candidates"]
    )
    assert result.prompts == 9


def test_passes_repeat_the_sweep():
    (result,) = rank(
        SlidingWindow(window=4, step=2, passes=3), [row("q", [0, 1, 2, 3, 4, 5])], listwise_oracle
    )
    assert result.prompts == 3 * len(sliding_windows(6, 4, 2))
    assert result.doc_ids == [f"q-{i}" for i in (5, 4, 3, 2, 1, 0)]


def test_unparseable_answers_fall_back_and_are_counted():
    query = row("q", [1, 2, 3, 0, 5])
    (strict,) = rank(SlidingWindow(window=3, step=2, parse="strict"), [query], lambda m: "[2] > [2] junk")
    assert strict.doc_ids == [c["doc_id"] for c in query["candidates"]] and strict.fallbacks == 2
    (lenient,) = rank(
        SlidingWindow(window=3, step=2), [query], lambda m: "<think></think><answer>[2]</answer>"
    )
    assert lenient.repairs == 2 and lenient.fallbacks == 0
    # (2,5) [q2 q3 q4] -> q3 q2 q4 (the named one, then the rest in order); (0,3) [q0 q1 q3] -> q1 q0 q3
    assert lenient.doc_ids == ["q-1", "q-0", "q-3", "q-2", "q-4"]


def test_windows_at_the_same_depth_of_every_query_share_one_call():
    sizes = []

    def respond_all(prompts, sampling):
        sizes.append(len(prompts))
        return [[Generation(listwise_oracle(p), 1)] for p in prompts]

    backend = FunctionBackend(listwise_oracle)
    backend.generate = respond_all
    rows = [row("a", list(range(100))), row("b", list(range(100))[::-1]), row("c", [0] * 24 + [9])]
    batched = rerank_rows(rows, SlidingWindow(), backend)
    assert sizes == [3, 3] + [2] * 7
    alone = [rerank_rows([r], SlidingWindow(), FunctionBackend(listwise_oracle))[0] for r in rows]
    assert [r.doc_ids for r in batched] == [r.doc_ids for r in alone]


def setwise_oracle(messages) -> str:
    texts = passages(messages)
    best = max(range(len(texts)), key=lambda i: grade(texts[i]))
    return f"<think>x</think> <answer>[{best + 1}]</answer>"


@pytest.mark.parametrize("num_child", [2, 3, 19])
def test_setwise_heapsort_finds_the_top_k(num_child):
    grades = list(np.random.default_rng(num_child).permutation(40))
    (result,) = rank(SetwiseHeapsort(num_child=num_child, k=10), [row("q", grades)], setwise_oracle)
    top = [grades[int(doc_id.split("-")[1])] for doc_id in result.doc_ids[:10]]
    assert top == sorted(grades, reverse=True)[:10]
    assert sorted(result.doc_ids) == sorted(f"q-{i}" for i in range(40)) and result.fallbacks == 0


def test_setwise_unparseable_answer_keeps_the_parent():
    (result,) = rank(SetwiseHeapsort(num_child=2, k=2), [row("q", [0, 1, 2, 3, 4])], lambda m: "no answer")
    assert result.fallbacks == result.prompts > 0
    assert sorted(result.doc_ids) == [f"q-{i}" for i in range(5)]


def test_pointwise_sorts_by_score_and_multi_stage_rescores_the_top():
    def respond(messages):
        text = re.search(r"g\d+x\d+", messages[-1]["content"]).group()
        return f"<think>.</think><answer>{min(grade(text), 10)}</answer><score>{grade(text) * 10}</score>"

    query = row("q", [2, 0, 9, 4, 7, 1])
    (erank,) = rank(PointwiseTask().strategy(StrategyOptions()), [query], respond)
    assert erank.doc_ids == ["q-2", "q-4", "q-3", "q-0", "q-5", "q-1"] and erank.scores[0] == 9.0
    (retro,) = rank(RubricTask().strategy(StrategyOptions(stages="6@1,3@4")), [query], respond)
    assert retro.prompts == 6 + 3 and retro.generated_tokens == 6 + 3 * 4
    assert retro.doc_ids[:3] == ["q-2", "q-4", "q-3"] and retro.scores is None
    assert parse_stages("100@1, 30@16") == [(100, 1), (30, 16)]
    with pytest.raises(ValueError, match="depth@samples"):
        parse_stages("100x1")


def group_oracle(messages) -> str:
    scores = {f"[{i}]": min(grade(text), 10) for i, text in LINE.findall(messages[-1]["content"])}
    return f"<reason>r</reason><answer>```json {json.dumps(scores)}```</answer>"


def test_groupwise_averages_shuffled_repeats():
    grades = [3, 8, 1, 10, 0, 5, 7, 2]
    strategy = Groupwise(group_size=3, repeats=2, sampling=Sampling())
    groups = strategy.groups("q", 8)
    assert len(groups) == 6 and groups[:3] != groups[3:]
    assert all(sorted(sum(groups[r * 3 : r * 3 + 3], [])) == list(range(8)) for r in range(2))
    (result,) = rank(strategy, [row("q", grades)], group_oracle)
    assert [grades[int(d.split("-")[1])] for d in result.doc_ids] == sorted(grades, reverse=True)
    assert result.scores[0] == pytest.approx(1.0) and result.prompts == 6
    (failed,) = rank(strategy, [row("q", grades)], lambda m: "<reason>r</reason><answer>nope</answer>")
    assert failed.fallbacks == 6 and failed.doc_ids == [f"q-{i}" for i in range(8)]


def test_strategies_prompt_with_the_task_templates():
    """Evaluation builds the very prompts training data is synthesised with, cutting passages first."""
    texts = ["first  passage\nwith a newline and more words", "second passage"]
    cut = ["first passage with", "second passage"]
    shown = {"query": "q", "candidates": [{"doc_id": str(i), "text": t} for i, t in enumerate(texts)]}
    assert SetwiseTask(max_passage_words=3).prompt(shown) == setwise_messages("q", cut)
    group = {"query": "q", "candidates": [{"doc_id": str(i), "text": t} for i, t in enumerate(texts)]}
    assert GroupwiseTask(max_passage_words=3).prompt(group) == grouprank_messages("q", cut)
    pair = {"query": "q", "candidates": [{"doc_id": "0", "text": texts[0]}]}
    assert PointwiseTask(max_passage_words=3).prompt(pair) == erank_messages("q", cut[0])
    retro = RubricTask(max_passage_words=3)
    assert retro.prompt(pair) == retro_messages("q", cut[0], retro_definition())
    assert retro.strategy(StrategyOptions()).describe()["template"] == {"user": RETRO_USER}
    assert SetwiseHeapsort().describe()["template"]["user"] == SETWISE_USER


def test_fusion_minmax_and_zscore():
    assert normalize([1.0, 3.0, 2.0], "minmax").tolist() == [0.0, 1.0, 0.5]
    assert normalize([5.0, 5.0], "zscore").tolist() == [0.0, 0.0]
    assert normalize([1.0, 3.0], "zscore").tolist() == [-1.0, 1.0]
    doc_ids, scores = fuse(["a", "b", "c"], [1.0, 0.5, 0.0], {"a": 0.0, "b": 10.0, "c": 5.0}, "minmax", 0.6)
    # first stage a 0, b 1, c .5; reranker a 1, b .5, c 0; fused = .6 first + .4 reranker
    assert doc_ids == ["b", "a", "c"] and scores == pytest.approx([0.8, 0.4, 0.3])
    ranked_only, _ = fuse(["a", "b"], None, {"a": 0.0, "b": 1.0}, "minmax", 0.4)  # ranks 2, 1 -> 0.6 vs 0.4
    assert ranked_only == ["a", "b"]


def test_paired_tests_match_scipy_and_randomization_behaves():
    rng = np.random.default_rng(0)
    a = rng.random(40)
    b = a + 0.05 + rng.normal(0, 0.02, 40)
    result = paired_tests(a, b, permutations=2000)
    reference = stats.ttest_rel(b, a)
    assert result["t"] == pytest.approx(reference.statistic) and result["p_ttest"] == pytest.approx(
        reference.pvalue
    )
    assert result["delta"] == pytest.approx((b - a).mean()) and result["p_randomization"] < 0.01
    assert paired_tests(a, a)["p_randomization"] == 1.0 and paired_tests(a, a)["p_ttest"] == 1.0
    assert randomization_p(np.array([1.0, -1.0]), 4000) == pytest.approx(1.0)  # every sign flip ties


def test_cache_ignores_a_cut_last_line_and_rejects_another_evaluation(tmp_path):
    path = tmp_path / "cache.jsonl"
    cache = QueryCache(path, "key-1")
    cache.append(QueryResult("q1", ["a", "b"], None, prompts=2))
    with path.open("a") as handle:
        handle.write('{"query_id": "q2", "doc_')
    resumed = QueryCache(path, "key-1")
    assert list(resumed.done) == ["q1"] and resumed.done["q1"].prompts == 2
    resumed.append(QueryResult("q2", ["c"], [1.0]))
    assert list(QueryCache(path, "key-1").done) == ["q1", "q2"]
    with pytest.raises(DataError, match="cache of a different evaluation"):
        QueryCache(path, "key-2")
    assert QueryCache(path, "key-2", resume=False).done == {}
