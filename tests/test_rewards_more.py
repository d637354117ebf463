"""Tests of the setwise (Rank-R1), groupwise (GroupRank) and pointwise (Retro*) rewards: values computed by
hand from the papers' constants, gates, configuration, bad dataset rows, and a fuzz run of 12,000 strings."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from rewards import (
    get_reward,
    grouprank_reward,
    rank_r1_setwise_reward,
    resolve_rewards,
    retro_composite_reward,
    retro_inter_reward,
    retro_intra_reward,
)
from rewards.groups import consecutive_group_ids
from rewards.groupwise import js_divergence, normalize_scores, rank_by_scores
from rewards.rubric import intra_rewards
from tasks.parsers import parse_setwise_label
from tasks.parsers_scores import parse_group_scores, parse_int_answer, parse_score_tag

# --- Rank-R1 ---------------------------------------------------------------------------------------------


def setwise(answer: str) -> str:
    return f"<think>passage 2 answers the query</think>\n<answer>{answer}</answer>"


def test_rank_r1_exact_match():
    completions = [
        setwise("[2]"),  # correct: 1
        setwise(" [2]\n"),  # answer.strip() == "[2]": 1
        setwise("[3]"),  # wrong label: 0
        setwise("[02]"),  # not exactly "[2]": 0
        "[2]",  # no think/answer structure: 0 (no separate format reward)
        "<THINK>x</THINK><ANSWER>[2]</ANSWER>",  # the training regex is case-sensitive: 0
    ]
    expected = [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert rank_r1_setwise_reward(completions, gold_label=["[2]"] * 6) == expected
    assert rank_r1_setwise_reward(completions, gold_label=[2] * 6) == expected
    lowered = get_reward("rank_r1_setwise", lowercase=True)
    assert lowered(completions, gold_label=["[2]"] * 6) == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]


def test_rank_r1_conversational_completion_and_bad_gold():
    chat = [[{"role": "assistant", "content": setwise("[1]")}]]
    assert rank_r1_setwise_reward(chat, gold_label=["[1]"]) == [1.0]
    for bad in ["2", "[0]", 0, None, True]:
        with pytest.raises(ValueError, match="gold_label must be"):
            rank_r1_setwise_reward([setwise("[1]")], gold_label=[bad])
    with pytest.raises(ValueError, match="needs dataset column 'gold_label'"):
        rank_r1_setwise_reward([setwise("[1]")], labels=[[]])


# --- GroupRank -------------------------------------------------------------------------------------------

GROUP = [{"doc_id": d, "text": f"passage {d}"} for d in "abc"]
ONLY_A = [{"doc_id": "a", "relevance": 1}]  # a is the one relevant document


def grouped(scores: str) -> str:
    return f"<reason>weighing the passages</reason>\n<answer>\n```json\n{scores}\n```\n</answer>"


def group_columns(n: int, gold: dict[str, float], labels=ONLY_A) -> dict:
    gold_rows = [{"doc_id": d, "score": s} for d, s in gold.items()]
    return {"candidates": [GROUP] * n, "labels": [labels] * n, "gold_scores": [gold_rows] * n}


def test_grouprank_hand_computed_sum_normaliser():
    # Predicted a 5, b 5, c 0 -> P = (.5, .5, 0); gold a 10, b 0, c 10 -> Q = (.5, 0, .5).
    # M = (.5, .25, .25): KL(P‖M) = .5·log2(.5/.5) + .5·log2(.5/.25) = .5, KL(Q‖M) = .5, so JS = .5.
    # trec_eval ties (doc id descending) rank b, a, c: nDCG@10 = (1/log2 3) / 1, Recall@10 = 1.
    # R = 1/log2(3) + 0.2·1 + 0.1·(1 − .5).
    completion = grouped('{"[1]": 5, "[2]": 5, "[3]": 0}')
    columns = group_columns(1, {"a": 10, "b": 0, "c": 10})
    assert grouprank_reward([completion], **columns) == [pytest.approx(1 / math.log2(3) + 0.2 + 0.05)]
    # In prompt order the tie ranks a first: R = 1 + 0.2 + 0.05.
    prompt_ties = get_reward("grouprank", tie_break="prompt")
    assert prompt_ties([completion], **columns) == [pytest.approx(1.25)]


def test_grouprank_hand_computed_graded_and_missing_key():
    # Predicted a 2, b 8, c missing -> 0: rank b, a, c; P = (.2, .8, 0).
    # Gold a 4, b 4, c 2 -> Q = (.4, .4, .2).
    # Labels a 1, c 2: DCG = 0 + 1/log2(3) + 2/log2(4) = 1/log2(3) + 1; IDCG = 2 + 1/log2(3).
    # Recall@10 = 2/2. M = (.3, .6, .1):
    # KL(P‖M) = .2·log2(.2/.3) + .8·log2(.8/.6); KL(Q‖M) = .4·log2(.4/.3) + .4·log2(.4/.6) + .2·log2(.2/.1).
    kl_p = 0.2 * math.log2(2 / 3) + 0.8 * math.log2(4 / 3)
    kl_q = 0.4 * math.log2(4 / 3) + 0.4 * math.log2(2 / 3) + 0.2 * 1
    ndcg = (1 / math.log2(3) + 1) / (2 + 1 / math.log2(3))
    labels = [{"doc_id": "a", "relevance": 1}, {"doc_id": "c", "relevance": 2}]
    columns = group_columns(1, {"a": 4, "b": 4, "c": 2}, labels)
    expected = ndcg + 0.2 * 1 + 0.1 * (1 - (kl_p + kl_q) / 2)
    assert grouprank_reward([grouped('{"[1]": 2, "[2]": 8}')], **columns) == [pytest.approx(expected)]
    # missing_score=8 ties b and c at 8 (c ranks first by doc id): rank c, b, a; P = (2, 8, 8)/18.
    fill = get_reward("grouprank", missing_score=8.0, eps=0.0)
    dcg = 2 / math.log2(2) + 0 + 1 / math.log2(4)
    assert fill([grouped('{"[1]": 2, "[2]": 8}')], **columns) == [
        pytest.approx(dcg / (2 + 1 / math.log2(3)) + 0.2)
    ]


def test_grouprank_softmax_normaliser():
    # Softmax is shift-invariant: predicted (5, 5, 0) and gold (10, 10, 5) give P = Q, JS = 0, and the
    # alignment term is eps·1 = 0.1. Ranking b, a, c as above: R = 1/log2(3) + 0.2 + 0.1.
    completion = grouped('{"[1]": 5, "[2]": 5, "[3]": 0}')
    columns = group_columns(1, {"a": 10, "b": 10, "c": 5})
    softmax = get_reward("grouprank", normalizer="softmax")
    assert softmax([completion], **columns) == [pytest.approx(1 / math.log2(3) + 0.3)]
    # With the sum normaliser P = (.5, .5, 0), Q = (.4, .4, .2), M = (.45, .45, .1):
    # JS = ½[log2(.5/.45)] + ½[.8·log2(.4/.45) + .2·log2(.2/.1)].
    js = 0.5 * math.log2(10 / 9) + 0.5 * (0.8 * math.log2(8 / 9) + 0.2)
    assert grouprank_reward([completion], **columns) == [
        pytest.approx(1 / math.log2(3) + 0.2 + 0.1 * (1 - js))
    ]
    # Temperature 2: P ∝ (e^2.5, e^2.5, 1), Q ∝ (e^5, e^5, e^2.5).
    p = np.array([math.exp(2.5), math.exp(2.5), 1.0])
    q = np.array([math.exp(5), math.exp(5), math.exp(2.5)])
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    js_t = 0.5 * sum(p * np.log2(p / m)) + 0.5 * sum(q * np.log2(q / m))
    hot = get_reward("grouprank", normalizer="softmax", temperature=2.0)
    assert hot([completion], **columns) == [pytest.approx(1 / math.log2(3) + 0.2 + 0.1 * (1 - js_t))]


def test_grouprank_gates():
    completions = [
        '```json {"[1]": 5} ```',  # no <reason>/<answer> tags: -0.5
        "<reason>r</reason><answer>[1] is best</answer>",  # tags right, no JSON: -0.1
        grouped('{"[1]": 5, "[4]": 3}'),  # a label outside the group of 3: -0.1
        grouped('{"[1]": "high"}'),  # a non-numeric score: -0.1
    ]
    columns = group_columns(4, {"a": 10})
    assert grouprank_reward(completions, **columns) == [-0.5, -0.1, -0.1, -0.1]
    custom = get_reward("grouprank", bad_tags=-1.0, bad_json=0.0)
    assert custom(completions, **columns) == [-1.0, 0.0, 0.0, 0.0]


def test_grouprank_configuration_and_rows_are_checked():
    columns = group_columns(1, {"a": 10})
    for args, word in [({"normalizer": "max"}, "normalizer"), ({"temperature": 0}, "temperature")]:
        with pytest.raises(ValueError, match=word):
            get_reward("grouprank", **args)([grouped("{}")], **columns)
    with pytest.raises(ValueError, match="tie_break"):
        grouprank_reward([grouped("{}")], tie_break="random", **columns)
    with pytest.raises(ValueError, match="malformed 'gold_scores'"):
        grouprank_reward([grouped("{}")], **{**columns, "gold_scores": [[{"doc": "a"}]]})
    with pytest.raises(ValueError, match="needs dataset column 'gold_scores'"):
        grouprank_reward([grouped("{}")], candidates=[GROUP], labels=[ONLY_A])
    mapping = {**columns, "gold_scores": [{"a": 10}]}  # a {doc_id: score} mapping is accepted too
    assert grouprank_reward([grouped('{"[1]": 9}')], **mapping) == grouprank_reward(
        [grouped('{"[1]": 9}')], **columns
    )


def test_score_helpers():
    assert normalize_scores([0, 0]).tolist() == [0.5, 0.5]  # all zero -> uniform
    assert normalize_scores([-3, 1, 3]).tolist() == [0.0, 0.25, 0.75]  # negatives clip to 0
    assert np.isfinite(normalize_scores([1e308, 1e308, -1e308])).all()
    assert np.isfinite(normalize_scores([1e308, -1e308], "softmax", 1e-9)).all()
    assert js_divergence([1, 0], [0, 1]) == 1.0 and js_divergence([0.3, 0.7], [0.3, 0.7]) == 0.0
    assert rank_by_scores(["a", "b", "c"], [1, 2, 1]) == ["b", "c", "a"]
    assert rank_by_scores(["a", "b", "c"], [1, 2, 1], "prompt") == ["b", "a", "c"]


# --- Retro* ----------------------------------------------------------------------------------------------


def scored(value) -> str:
    return "Query analysis... document analysis... relevance annotation." + (
        f"\n<score>{value}</score>" if value is not None else " I cannot decide."
    )


def test_retro_intra_hand_computed():
    groups = [
        [50, 60, 90, 40],  # mean 60, deviations 10, 0, 30, 20: 30 >= 20, so the 60 gets +1, the 90 −1
        [50, 55, 60, 45],  # mean 52.5, deviations 2.5, 2.5, 7.5, 7.5 < 20: all 0
        [
            70,
            None,
            75,
            20,
        ],  # invalid -> −1 and the gate holds; valid mean 55, deviations 15, 20, 35: 70 -> +1
        [None, None, None, None],  # all invalid: −1 each
    ]
    completions = [scored(value) for group in groups for value in group]
    expected = [0, 1, -1, 0] + [0, 0, 0, 0] + [1, -1, 0, 0] + [-1, -1, -1, -1]
    assert retro_intra_reward(completions, group_ids=consecutive_group_ids(16, 4)) == expected
    # tau = 40: the first group's 30 is below the gate.
    assert retro_intra_reward(completions[:4], group_ids=[7] * 4, tau=40) == [0, 0, 0, 0]
    assert retro_intra_reward(completions[8:12], group_ids=["g"] * 4, invalid_reward=-2) == [1, -2, 0, 0]
    # Groups are read from the ids, not from positions: interleave the first two groups.
    interleaved = [c for pair in zip(completions[:4], completions[4:8], strict=True) for c in pair]
    assert retro_intra_reward(interleaved, group_ids=[0, 1] * 4) == [0, 0, 1, 0, -1, 0, 0, 0]


def test_retro_intra_ties():
    # [0, 100]: mean 50, both deviate by 50 >= 20. "first": closest is the first, furthest the other one.
    assert intra_rewards([0, 100]) == [1.0, -1.0]
    assert intra_rewards([0, 100], ties="all") == [0.0, 0.0]  # each is tied for both
    # [40, 60, 60, 100]: mean 65, deviations 25, 5, 5, 35.
    assert intra_rewards([40, 60, 60, 100], ties="first") == [0.0, 1.0, 0.0, -1.0]
    assert intra_rewards([40, 60, 60, 100], ties="all") == [0.0, 1.0, 1.0, -1.0]


def test_retro_intra_groups_are_checked():
    completions = [scored(50)] * 4
    with pytest.raises(ValueError, match="needs the column 'group_ids'"):
        retro_intra_reward(completions)
    with pytest.raises(ValueError, match="3 entries for 4 completions"):
        retro_intra_reward(completions, group_ids=[0, 0, 1])
    with pytest.raises(ValueError, match="not hashable"):
        retro_intra_reward(completions, group_ids=[[0]] * 4)
    with pytest.raises(ValueError, match="groups of 3"):
        consecutive_group_ids(4, 3)
    with pytest.raises(ValueError, match="ties"):
        retro_intra_reward(completions, group_ids=[0] * 4, ties="random")


# One query with a positive and a negative document, G = 2 rollouts each.
INTER_SCORES = [80, 30, 40, None]
INTER_COLUMNS = {"query_id": ["q1"] * 4, "is_positive": [True, True, False, False]}


def test_retro_inter_hand_computed():
    # Positive 80 beats 40 and the invalid negative: 2/2. Positive 30 loses to 40, beats the invalid: 1/2.
    # Negative 40 is below 80 but not below 30: 1/2. The invalid negative loses everything: 0.
    completions = [scored(value) for value in INTER_SCORES]
    assert retro_inter_reward(completions, **INTER_COLUMNS) == [1.0, 0.5, 0.5, 0.0]
    # A tie is no win for either side: positive 50 vs negative 50 -> 0 and 0.
    tie = {"query_id": ["q", "q"], "is_positive": [1, 0]}
    assert retro_inter_reward([scored(50), scored(50)], **tie) == [0.0, 0.0]


def test_retro_inter_pairs_within_queries_only():
    completions = [scored(value) for value in [60, 20, 90, 10]]
    columns = {"query_id": ["q1", "q1", "q2", "q2"], "is_positive": [True, False, False, True]}
    # q1: 60 > 20 -> 1, 1. q2: negative 90 is not below 10 -> 0, positive 10 not above 90 -> 0.
    assert retro_inter_reward(completions, **columns) == [1.0, 1.0, 0.0, 0.0]
    unpaired = {"query_id": ["q1", "q1", "q2", "q3"], "is_positive": [True, False, False, True]}
    with pytest.raises(ValueError, match="query 'q2' .row 2. has no positive document"):
        retro_inter_reward(completions, **unpaired)
    assert get_reward("retro_inter", on_unpaired="none")(completions, **unpaired) == [1.0, 1.0, None, None]
    with pytest.raises(ValueError, match="is_positive"):
        retro_inter_reward(completions, query_id=["q"] * 4, is_positive=["yes"] * 4)


def test_retro_composite_hand_computed():
    # intra (G = 2): positive group [80, 30]: mean 55, deviations 25, 25 >= 20 -> +1, −1;
    #                negative group [40, invalid]: the invalid gets −1, 40 is the closest valid -> +1.
    # inter: [1, .5, .5, 0] (above). R = .75·intra + .25·inter.
    completions = [scored(value) for value in INTER_SCORES]
    expected = [0.75 + 0.25, -0.75 + 0.125, 0.75 + 0.125, -0.75 + 0.0]
    columns = {**INTER_COLUMNS, "group_ids": [0, 0, 1, 1]}
    assert retro_composite_reward(completions, **columns) == pytest.approx(expected)
    functions, weights = resolve_rewards([{"name": "retro_composite", "args": {"alpha": 0.5}}])
    assert functions[0](completions, **columns) == pytest.approx([1.0, -0.25, 0.75, -0.5])
    with pytest.raises(ValueError, match="alpha"):
        retro_composite_reward(completions, alpha=1.5, **columns)


# --- fuzz: 12,000 generated strings through every parser and reward ---------------------------------------

FRAGMENTS = [
    "<think>", "</think>", "<answer>", "</answer>", "<reason>", "</reason>", "<score>", "</score>",
    "<THINK>", "```json", "```", "{", "}", "[", "]", '"[1]"', '"[2]]"', '"[3]"', '"[9]"', ":", ",", " ",
    "\n", "5", "42", "100", "-1", "2.5", "NaN", "true", "x", "é", "\x00", "[1]", "[2]", "[02]",
]  # fmt: skip
TEMPLATES = [
    "<think>t</think><answer>[{d}]</answer>",
    '<reason>r</reason><answer>```json {{"[1]": {d}, "[2]": {e}, "[3]": 1}} ```</answer>',
    "analysis <score>{d}{e}</score>",
    "<think>t</think><answer>{d}</answer>",
]


def fuzz_strings(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        base = rng.choice(TEMPLATES).format(d=rng.randint(0, 12), e=rng.randint(0, 9))
        pieces, edits = (list(base), rng.randint(0, 3)) if rng.random() < 0.5 else ([], rng.randint(1, 12))
        for _ in range(edits):
            position = rng.randint(0, len(pieces))
            if pieces and rng.random() < 0.3:
                del pieces[min(position, len(pieces) - 1)]
            else:
                pieces.insert(position, rng.choice(FRAGMENTS + [chr(rng.randint(0, 0x2FFF))]))
        texts.append("".join(pieces))
    return texts


def test_fuzz_parsers_and_rewards_never_fail():
    texts = fuzz_strings(12_000)
    for text in texts:
        results = [
            parse_setwise_label(text, 20),
            parse_score_tag(text),
            parse_int_answer(text),
            parse_int_answer(text, require_think=True),
            parse_group_scores(text, 3),
            parse_group_scores(text, require_tags=False),
        ]
        assert all(result.valid or result.reason for result in results)
    n = len(texts)
    setwise_rewards = rank_r1_setwise_reward(texts, gold_label=[1] * n)
    assert set(setwise_rewards) <= {0.0, 1.0} and 0 < sum(setwise_rewards) < n
    group = grouprank_reward(texts, **group_columns(n, {"a": 10, "b": 4, "c": 0}))
    assert all(value in (-0.5, -0.1) or 0.0 <= value <= 1.3 + 1e-12 for value in group)
    assert {-0.5, -0.1} <= set(group) and max(group) > 0
    retro = {
        "group_ids": consecutive_group_ids(n, 4),
        "query_id": [i // 8 for i in range(n)],
        "is_positive": [i % 8 < 4 for i in range(n)],
    }
    assert set(retro_intra_reward(texts, **retro)) == {-1.0, 0.0, 1.0}
    assert all(0.0 <= value <= 1.0 for value in retro_inter_reward(texts, **retro))
    composite = retro_composite_reward(texts, **retro)
    assert all(-0.75 <= value <= 1.0 for value in composite)
    assert all(math.isfinite(value) for value in setwise_rewards + group + composite)
