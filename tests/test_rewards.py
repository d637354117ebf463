"""Tests of the listwise rewards and the reward registry: hand-computed values, gates, errors, robustness."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards import (
    RewardError,
    available_rewards,
    get_reward,
    listwise_format_reward,
    ranking_metric_reward,
    reasonrank_reward,
    register_reward,
    resolve_rewards,
)

CANDIDATES = [{"doc_id": d, "text": f"passage {d}"} for d in "abcde"]
LABELS = [
    {"doc_id": "a", "relevance": 0},
    {"doc_id": "b", "relevance": 3},
    {"doc_id": "c", "relevance": 1},
    {"doc_id": "e", "relevance": 2},
]  # d is unlabelled, hence grade 0
TEACHER = ["b", "e", "c", "a", "d"]

# [3] > [2] > [1] > [5] > [4] is the doc ranking c, b, a, e, d.
GOOD = "<think>c looks relevant</think>\n<answer>[3] > [2] > [1] > [5] > [4]</answer>"
IDEAL_DCG = 3 + 2 / math.log2(3) + 1 / math.log2(4)
NDCG10 = (1 + 3 / math.log2(3) + 0 + 2 / math.log2(5)) / IDEAL_DCG
NDCG2 = (1 + 3 / math.log2(3)) / (3 + 2 / math.log2(3))
AGREEMENT = [0, 1 / 2, 2 / 3, 4 / 4, 5 / 5]  # |pred[:d] ∩ teacher[:d]| / d
AO = sum(AGREEMENT) / 5
FAST = settings(max_examples=200, deadline=None)


def columns(n: int, teacher=TEACHER) -> dict:
    return {"candidates": [CANDIDATES] * n, "labels": [LABELS] * n, "teacher_order": [teacher] * n}


def test_reasonrank_default_value():
    assert reasonrank_reward([GOOD], **columns(1)) == [
        pytest.approx(NDCG10 + 0.2 * 1.0 + 0.1 * AO, abs=1e-12)
    ]


def test_reasonrank_logs_each_view_over_valid_completions():
    logged = {}
    reasonrank_reward([GOOD, GOOD, "no tags"], log_metric=logged.__setitem__, **columns(3))
    assert logged["reasonrank/ndcg/mean"] == pytest.approx(NDCG10) and logged["reasonrank/ndcg/std"] == 0
    assert logged["reasonrank/recall/mean"] == 1.0 and logged["reasonrank/rbo/mean"] == pytest.approx(AO)


def test_reasonrank_factory_args_via_get_reward():
    reward = get_reward("reasonrank", phi=0.5, gamma=0.0, k=2)
    assert reward([GOOD], **columns(1)) == [pytest.approx(NDCG2 + 0.5 * 2 / 3, abs=1e-12)]
    strict_relevance = get_reward("reasonrank", k=2, relevance_threshold=2, gamma=0.0)
    assert strict_relevance([GOOD], **columns(1)) == [pytest.approx(NDCG2 + 0.2 * 1 / 2, abs=1e-12)]
    webber = get_reward("reasonrank", phi=0.0, rbo_p=0.9)
    rbo_09 = 0.1 * sum(0.9**d * a for d, a in enumerate(AGREEMENT))
    assert webber([GOOD], **columns(1)) == [pytest.approx(NDCG10 + 0.1 * rbo_09, abs=1e-12)]


def test_reasonrank_without_teacher_drops_rbo_term():
    expected = [pytest.approx(NDCG10 + 0.2, abs=1e-12)]
    assert reasonrank_reward([GOOD], **columns(1, teacher=None)) == expected
    no_column = {key: value for key, value in columns(1).items() if key != "teacher_order"}
    assert reasonrank_reward([GOOD], **no_column) == expected


@pytest.mark.parametrize("fn", [reasonrank_reward, ranking_metric_reward])
def test_gates(fn):
    completions = [
        "[3] > [2] > [1] > [5] > [4]",  # no think/answer structure
        "<think>x</think><answer>[3] > [2]</answer>",  # too few ids
        "<think>x</think><answer>[3] > [3] > [1] > [5] > [4]</answer>",  # duplicate
        "<think>x</think><answer>[6] > [2] > [1] > [5] > [4]</answer>",  # out of range
    ]
    assert fn(completions, **columns(4)) == [-1.0, 0.0, 0.0, 0.0]
    custom = get_reward(fn.reward_name, format_fail=-0.5, answer_fail=-0.25)
    assert custom(completions, **columns(4)) == [-0.5, -0.25, -0.25, -0.25]


@pytest.mark.parametrize(
    ("metric", "k", "threshold", "expected"),
    [
        # Ranking c, b, a, e, d with grades 1, 3, 0, 2, 0: relevant (>= 1) c, b, e; (>= 2) b, e.
        ("recall", 2, 1, 2 / 3),
        ("recall", 2, 2, 1 / 2),
        ("precision", 5, 1, 3 / 5),
        ("mrr", 10, 1, 1.0),
        ("mrr", 10, 2, 1 / 2),
        ("map", 10, 1, (1 + 1 + 3 / 4) / 3),
        ("map", 10, 2, (1 / 2 + 2 / 4) / 2),
    ],
)
def test_ranking_metric_reward_hand_computed(metric, k, threshold, expected):
    reward = get_reward("ranking_metric", metric=metric, k=k, relevance_threshold=threshold)
    assert reward([GOOD, "no tags"], **columns(2)) == [pytest.approx(expected, abs=1e-12), -1.0]


def test_ranking_metric_rejects_an_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric 'err'"):
        get_reward("ranking_metric", metric="err")([GOOD], **columns(1))


def test_partial_mode_accepts_short_answers():
    short = "<think>x</think><answer>[2] > [5]</answer>"  # b, e, then a, c, d in prompt order
    expected = (3 + 2 / math.log2(3) + 1 / math.log2(5)) / IDEAL_DCG
    assert ranking_metric_reward([short], **columns(1)) == [0.0]
    assert get_reward("ranking_metric", mode="partial")([short], **columns(1)) == [
        pytest.approx(expected, abs=1e-12)
    ]


def test_score_unlisted_false_gives_left_out_passages_no_gain():
    short = "<think>x</think><answer>[2] > [5]</answer>"  # names b and e; c (grade 1) is left out
    listed_only = get_reward("ranking_metric", mode="partial", score_unlisted=False)
    expected = (3 + 2 / math.log2(3)) / IDEAL_DCG
    assert listed_only([short, GOOD, "no tags"], **columns(3)) == [
        pytest.approx(expected, abs=1e-12),
        pytest.approx(NDCG10, abs=1e-12),
        -1.0,
    ]


def test_ndcg_and_format_rewards():
    completions = [GOOD, "<think>x</think><answer>[1]</answer>", "no tags"]
    assert ranking_metric_reward(completions, **columns(3)) == [pytest.approx(NDCG10), 0.0, -1.0]
    assert listwise_format_reward(completions, **columns(3)) == [1.0, 0.0, 0.0]
    assert get_reward("listwise_format", mode="lenient")(completions, **columns(3)) == [1.0, 1.0, 0.0]


def test_conversational_completions_match_strings():
    conversational = [
        [{"role": "assistant", "content": GOOD}],
        [{"role": "assistant", "content": None}],
        [],
    ]
    assert reasonrank_reward(conversational, **columns(3)) == [
        reasonrank_reward([GOOD], **columns(1))[0],
        -1.0,
        -1.0,
    ]


def test_trl_call_convention():
    reward = get_reward("reasonrank")
    extra = {"trainer_state": None, "log_extra": print, "log_metric": print, "completion_ids": [[1, 2]]}
    assert reward(prompts=["p"], completions=[GOOD], **extra, **columns(1)) == reasonrank_reward(
        [GOOD], **columns(1)
    )
    assert reward.__name__ == "reasonrank"


completion_text = st.lists(
    st.sampled_from(
        ["<think>", "</think>", "<answer>", "</answer>", "[1]", "[5]", "[9]", " > ", "2", "\n", "é"]
    ),
    max_size=30,
).map("".join)


@FAST
@given(st.lists(st.one_of(completion_text, st.text(max_size=50)), min_size=1, max_size=4))
def test_rewards_never_raise_and_stay_in_range(completions):
    for fn, low, high in [
        (reasonrank_reward, -1.0, 1.3),
        (ranking_metric_reward, -1.0, 1.0),
        (listwise_format_reward, 0, 1),
    ]:
        values = fn(completions, **columns(len(completions)))
        assert len(values) == len(completions)
        assert all(isinstance(v, float) and math.isfinite(v) and low <= v <= high + 1e-12 for v in values)


def test_malformed_rows_raise_one_line_value_errors():
    cases = [
        ({"labels": [LABELS]}, "'reasonrank' needs dataset column 'candidates'"),
        ({"candidates": [CANDIDATES]}, "'reasonrank' needs dataset column 'labels'"),
        ({**columns(1), "labels": [[{"doc_id": "a"}]]}, "malformed 'labels'"),
        ({**columns(1), "candidates": [[{"text": "no id"}]]}, "malformed 'candidates'"),
        ({**columns(1), "candidates": [[]]}, "empty 'candidates'"),
        ({**columns(2)}, "2 entries for 1 completions"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            reasonrank_reward([GOOD], **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="unknown mode"):
        reasonrank_reward([GOOD], mode="fuzzy", **columns(1))


def test_registry_lists_builtins():
    assert available_rewards() == sorted(available_rewards())
    assert {"reasonrank", "ranking_metric", "listwise_format"} <= set(available_rewards())


def test_unknown_reward_lists_known_names_and_closest():
    with pytest.raises(ValueError) as info:
        get_reward("reasonrnak")
    message = str(info.value)
    assert "\n" not in message
    assert ", ".join(available_rewards()) in message
    assert "unknown reward 'reasonrnak' (did you mean 'reasonrank'?); known rewards: " in message


def test_bad_factory_argument_names_reward_argument_and_accepted():
    with pytest.raises(ValueError) as info:
        get_reward("ranking_metric", phi=0.3)
    message = str(info.value)
    assert "'ranking_metric'" in message and "phi" in message
    assert "metric, k, relevance_threshold, mode, format_fail, answer_fail" in message
    assert "\n" not in message


def constant_reward(completions, value=1.0, **kwargs):
    """A reward outside the registry, reached by dotted path."""
    return [value] * len(completions)


def test_dotted_paths():
    assert get_reward("rewards.listwise:ranking_metric_reward").__name__ == "ranking_metric"
    assert get_reward("rewards.listwise.ranking_metric_reward", k=2)([GOOD], **columns(1)) == [
        pytest.approx(NDCG2)
    ]
    local = get_reward(f"{__name__}:constant_reward", value=0.5)
    assert (local.__name__, local(["x", "y"])) == ("constant_reward", [0.5, 0.5])
    with pytest.raises(ValueError, match="cannot import reward 'no_such_module:fn'"):
        get_reward("no_such_module:fn")
    with pytest.raises(ValueError, match="cannot import"):
        get_reward("rewards.listwise:no_such_reward")


def test_column_clashing_with_config_raises():
    with pytest.raises(ValueError, match="phi clash"):
        get_reward("reasonrank")([GOOD], phi=[0.9], **columns(1))
    with pytest.raises(ValueError, match="value clash"):
        get_reward(f"{__name__}:constant_reward", value=2.0)(["x"], value=["column"])


def test_resolve_rewards():
    entries = ["ranking_metric", {"name": "reasonrank", "weight": 0.5, "args": {"phi": 0.0, "gamma": 0.0}}]
    resolved, weights = resolve_rewards(entries)
    assert [fn.__name__ for fn in resolved] == ["ranking_metric", "reasonrank"]
    assert weights == [1.0, 0.5]
    assert resolved[1]([GOOD], **columns(1)) == [pytest.approx(NDCG10)]
    for bad in [{"phi": 0.2}, 3]:
        with pytest.raises(TypeError, match="'name' key"):
            resolve_rewards([bad])
    with pytest.raises(ValueError, match="unknown key.*phi"):
        resolve_rewards([{"name": "ranking_metric", "phi": 0.2}])
    with pytest.raises(TypeError, match="'weight' a number"):
        resolve_rewards([{"name": "ranking_metric", "weight": "high"}])


def test_registering_a_taken_name_raises():
    with pytest.raises(ValueError, match="'ranking_metric' is taken"):
        register_reward("ranking_metric")(constant_reward)


def nan_reward(completions, **columns):
    return [0.5, float("nan")][: len(completions)]


def test_unusable_reward_output_names_the_reward_and_row():
    reward = get_reward(f"{__name__}:nan_reward")
    with pytest.raises(RewardError, match=r"'nan_reward' returned nan on completion 1 \(query_id 'q2'\)"):
        reward(["a", "b"], query_id=["q1", "q2"])
    with pytest.raises(RewardError, match="'nan_reward' returned 2 values for 3 completions"):
        reward(["a", "b", "c"])
    assert reward(["a"]) == [0.5]


def fragile_reward(completions, **columns):
    return [1.0 / len(text) for text in completions]


def string_reward(completions, **columns):
    return ["high"] * len(completions)


def test_exception_inside_a_user_reward_names_the_reward_and_row():
    reward = get_reward(f"{__name__}:fragile_reward")
    expected = r"^reward 'fragile_reward' failed on completion 2 \(query_id 'q3'\): ZeroDivisionError"
    with pytest.raises(RewardError, match=expected) as caught:
        reward(["ok", "fine", ""], query_id=["q1", "q2", "q3"])
    assert isinstance(caught.value.__cause__, ZeroDivisionError)
    with pytest.raises(RewardError, match="'string_reward' returned 'high' on completion 0"):
        get_reward(f"{__name__}:string_reward")(["a"])


def test_exception_inside_a_group_reward_names_the_reward():
    expected = (
        r"^reward 'retro_intra' failed \(row not isolated: it scores whole groups\): "
        "ValueError: .*needs the column 'group_ids'"
    )
    with pytest.raises(RewardError, match=expected):
        get_reward("retro_intra")(["<score>1</score>"] * 2)


def sampling_reward(completions, *, generate, **columns):
    """Samples from the policy once (a collective call), then fails on an empty completion."""
    generate(
        ["p"] * len(completions), completions, num_samples=1, temperature=1.0, top_p=1.0, max_new_tokens=1
    )
    return [1.0 / len(text) for text in completions]


sampling_reward.uses_generator = True


def query_length_reward(completions, **columns):
    """A query-scoped reward that records its calls and fails on an empty completion."""
    query_length_reward.calls += 1
    return [1.0 / len(text) for text in completions]


query_length_reward.reward_scope = "query"


def test_a_failing_reward_that_samples_or_scores_groups_is_not_rerun_row_by_row():
    # generate is collective: a row-by-row re-run on one process would hang the others in a multi-process run.
    calls = []

    def generate(prompts, prefixes, **settings):
        calls.append(list(prefixes))
        return [[""] * settings["num_samples"] for _ in prefixes]

    expected = (
        r"^reward 'sampling_reward' failed \(row not isolated: it samples from the policy\): ZeroDivision"
    )
    with pytest.raises(RewardError, match=expected) as caught:
        get_reward(f"{__name__}:sampling_reward")(
            ["ok", "fine", ""], generate=generate, query_id=["q1", "q2", "q3"]
        )
    assert isinstance(caught.value.__cause__, ZeroDivisionError) and "\n" not in str(caught.value)
    assert calls == [["ok", "fine", ""]]  # the failing call only: generate is not called again
    calls.clear()
    with pytest.raises(RewardError, match=r"^reward 'mrt_progress' failed \(row not isolated: .*ValueError"):
        get_reward("mrt_progress")(
            ["a", "b"], generate=lambda *args, **kw: calls.append(args) or [], answer=["1"] * 2
        )
    assert len(calls) == 1  # a sampler that returns nothing: MRT's reward fails on its one collective call
    query_length_reward.calls = 0
    expected = (
        r"^reward 'query_length_reward' failed \(row not isolated: it scores whole queries\): ZeroDivision"
    )
    with pytest.raises(RewardError, match=expected):
        get_reward(f"{__name__}:query_length_reward")(["ok", ""], query_id=["q1", "q1"])
    assert query_length_reward.calls == 1
