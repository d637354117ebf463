"""ReasonRank, Rank-R1 and GroupRank against hand-made examples in each paper's own output format.

What the other test files leave out, each expected value worked out by hand below:

- ReasonRank (arXiv 2508.07050, Eq. 2-4): the paper's argument for the Recall@10 view, on a full window of
  20 (two positives at ranks 1 and 11 give nDCG@10 0.61, at ranks 9 and 10 0.36), through the reward;
- Rank-R1 (arXiv 2503.06034; llmrankers ``heapSort``): a heapsort traced by hand, prompt by prompt;
- GroupRank (arXiv 2511.11653 §3.1): scores of reshuffled repeats averaged per document, a failed group
  scoring 0;
- the evaluation recipes of ``recipes/reasonrank``, ``recipes/rank-r1`` and ``recipes/grouprank`` build the
  papers' inference strategies.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from core.generation import Sampling
from core.recipe import build_configs, read_yaml
from evaluation.config import EvalConfig, build_strategy
from rewards import get_reward, reasonrank_reward
from tasks.group_scoring import Groupwise
from tasks.groupwise import GroupwiseTask
from tasks.heapsort import SetwiseHeapsort
from tasks.setwise import SetwiseTask
from tasks.strategy import rerank_rows
from tests.oracles import FunctionBackend

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

# --- ReasonRank: the multi-view reward on a window of 20 ---------------------------------------------------

WINDOW = [{"doc_id": f"d{i}", "text": f"passage {i}"} for i in range(1, 21)]
ORDER = " > ".join(f"[{i}]" for i in range(1, 21))
IN_ORDER = f"<think>passage 1 answers it</think> <answer>{ORDER}</answer>"  # the window as given
IDEAL_TWO = 1 + 1 / math.log2(3)  # IDCG@10 of two binary positives


def window_columns(positives: list[int], teacher: list[str], n: int = 1) -> dict:
    labels = [{"doc_id": f"d{i}", "relevance": 1} for i in positives]
    return {"candidates": [WINDOW] * n, "labels": [labels] * n, "teacher_order": [teacher] * n}


# Positives at ranks 1 and 11: the 11th falls out of the top 10 the next window keeps, yet nDCG@10 is higher.
@pytest.mark.parametrize(
    ("positives", "ndcg", "rounded", "recall"),
    [
        ([1, 11], 1 / IDEAL_TWO, 0.61, 1 / 2),
        ([9, 10], (1 / math.log2(10) + 1 / math.log2(11)) / IDEAL_TWO, 0.36, 1.0),
    ],
)
def test_reasonrank_recall_view_on_the_papers_example(positives, ndcg, rounded, recall):
    same = [doc["doc_id"] for doc in WINDOW]  # the teacher agrees: RBO (average overlap, p = 1) is 1
    columns = window_columns(positives, same)
    assert get_reward("ranking_metric", metric="ndcg")([IN_ORDER], **columns) == [pytest.approx(ndcg)]
    assert round(ndcg, 2) == rounded
    assert get_reward("ranking_metric", metric="recall")([IN_ORDER], **columns) == [recall]
    # R_m = nDCG@10 + 0.2 Recall@10 + 0.1 RBO
    assert reasonrank_reward([IN_ORDER], **columns) == [pytest.approx(ndcg + 0.2 * recall + 0.1)]


def test_reasonrank_rbo_is_the_average_overlap_with_the_teacher_list():
    # Teacher lists the window backwards: the first d of both lists share max(0, 2d - 20) passages, so
    # AO = (1/20) * sum_{d=11..20} (2d - 20) / d.
    reverse = [doc["doc_id"] for doc in reversed(WINDOW)]
    overlap = sum((2 * d - 20) / d for d in range(11, 21)) / 20
    expected = 1 / IDEAL_TWO + 0.2 * 0.5 + 0.1 * overlap
    assert reasonrank_reward([IN_ORDER], **window_columns([1, 11], reverse)) == [pytest.approx(expected)]
    # Format gates (paper: -1 for a broken output format, 0 for a wrong answer): 19 of the 20 identifiers.
    short = IN_ORDER.replace(" > [20]", "")
    no_tags = IN_ORDER.replace("<think>", "").replace("</think>", "")
    assert reasonrank_reward([short, no_tags], **window_columns([1, 11], reverse, n=2)) == [0.0, -1.0]


# --- Rank-R1: setwise heapsort traced by hand ------------------------------------------------------------


def test_rank_r1_heapsort_traced_by_hand():
    """Five documents d0..d4 of relevance 1, 4, 0, 3, 2; two children per node (three per prompt), top 2.

    Build the heap (nodes n // 2 = 2 down to 0; node 2 has no child):
      node 1 shows [d1 d3 d4] -> [1] (d1 stays);
      node 0 shows [d0 d1 d2] -> [2]: swap, heap d1 d0 d2 d3 d4; node 1 shows [d0 d3 d4] -> [2]:
      heap d1 d3 d2 d0 d4.
    Extract: d1 to the end (heap d4 d3 d2 d0 | d1); root shows [d4 d3 d2] -> [2]: heap d3 d4 d2 d0;
      node 1 shows [d4 d0] -> [1] (stays). d3 to the end: heap d0 d4 d2 | d3 d1; two placed, stop.
    The ranking is the array reversed: d1 d3 d2 d4 d0 after five prompts.
    """
    task = SetwiseTask()
    row = {
        "query_id": "q",
        "query": "fleas",
        "candidates": [{"doc_id": f"d{i}", "text": f"text {i}"} for i in range(5)],
    }
    answers = iter(["[1]", "[2]", "[2]", "[2]", "[1]"])
    sent = []
    backend = FunctionBackend(
        lambda m: sent.append(m) or f"<think>x</think> <answer>{next(answers)}</answer>"
    )
    (result,) = rerank_rows([row], SetwiseHeapsort(num_child=2, k=2, task=task), backend)
    shown = [[1, 3, 4], [0, 1, 2], [0, 3, 4], [4, 3, 2], [4, 0]]
    expected = [
        task.prompt({"query": "fleas", "candidates": [row["candidates"][i] for i in s]}) for s in shown
    ]
    assert sent == expected
    assert result.doc_ids == ["d1", "d3", "d2", "d4", "d0"] and result.prompts == 5 and result.fallbacks == 0


# --- GroupRank: averaged repeats ---------------------------------------------------------------------------


def test_grouprank_averages_each_documents_scores_over_repeats():
    """Four documents in groups of two, two repeats in first-stage order (groups [0 1] [2 3] [0 1] [2 3]).

    Answers (score / 10): repeat 1 gives d0 .8, d1 .2 and d2 .5, d3 .9; repeat 2 gives d0 .4, d1 .6 and a
    broken JSON for [2 3], which scores both 0. Means: d0 .6, d1 .4, d2 .25, d3 .45 -> d0 d3 d1 d2.
    """
    json_answers = iter(
        ['{"[1]": 8, "[2]": 2}', '{"[1]": 5, "[2]": 9}', '{"[1]": 4, "[2]": 6}', '{"[1]": 7,']
    )
    backend = FunctionBackend(lambda m: f"<reason>r</reason><answer>```json {next(json_answers)}```</answer>")
    row = {
        "query_id": "q",
        "query": "q",
        "candidates": [{"doc_id": f"d{i}", "text": f"t{i}"} for i in range(4)],
    }
    strategy = Groupwise(group_size=2, repeats=2, shuffle=False, sampling=Sampling(), task=GroupwiseTask())
    (result,) = rerank_rows([row], strategy, backend)
    assert result.doc_ids == ["d0", "d3", "d1", "d2"]
    assert result.scores == pytest.approx([0.6, 0.45, 0.4, 0.25]) and result.fallbacks == 1


# --- the folders' evaluation recipes build the papers' strategies ----------------------------------------


@pytest.mark.parametrize("path", sorted(RECIPES.glob("reasonrank/*-eval.yaml")), ids=lambda p: p.stem)
def test_reasonrank_eval_recipes_slide_windows_of_20_by_10_greedily(path):
    (config,) = build_configs(read_yaml(path), (EvalConfig,), str(path))
    strategy = build_strategy(config)
    assert (strategy.name, strategy.window, strategy.step, strategy.passes, config.depth) == (
        "listwise",
        20,
        10,
        1,
        100,
    )
    assert strategy.sampling == Sampling(max_new_tokens=3072 + 100, temperature=0.0)


@pytest.mark.parametrize("path", sorted(RECIPES.glob("rank-r1/*-eval.yaml")), ids=lambda p: p.stem)
def test_rank_r1_eval_recipes_heapsort_to_the_top_10_greedily(path):
    """v0.1: 20 documents per prompt (num_child 19, the training sets' size); v0.2: 10 (its model card)."""
    (config,) = build_configs(read_yaml(path), (EvalConfig,), str(path))
    strategy = build_strategy(config)
    num_child = 9 if "v0.2" in path.stem else 19
    assert (strategy.name, strategy.num_child, strategy.k, config.depth) == ("setwise", num_child, 10, 100)
    assert strategy.sampling.temperature == 0.0 and strategy.sampling.max_new_tokens >= 2048
    assert config.relevance_threshold == (2 if config.requests else 1)  # trec_eval -l 2 on TREC DL


@pytest.mark.parametrize("path", sorted(RECIPES.glob("grouprank/*-eval.yaml")), ids=lambda p: p.stem)
def test_grouprank_eval_recipes_score_random_groups_of_20(path):
    (config,) = build_configs(read_yaml(path), (EvalConfig,), str(path))
    strategy = build_strategy(config)
    assert (strategy.name, strategy.group_size, strategy.shuffle, config.depth) == (
        "groupwise",
        20,
        True,
        100,
    )
    assert strategy.sampling == Sampling(max_new_tokens=8000, temperature=0.3, top_p=0.8)
