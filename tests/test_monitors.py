"""The listwise monitor: per-reason invalid rates, identity rate, order correlations, never raising."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from rewards import get_reward
from rewards.monitors import (
    FORMAT_REASONS,
    PERMUTATION_REASONS,
    kendall_initial,
    listwise_monitor,
    spearman_initial,
)


def _candidates(n: int, size: int) -> list[list[dict[str, str]]]:
    return [[{"doc_id": f"d{i}", "text": f"t{i}"} for i in range(n)]] * size


def _answer(body: str) -> str:
    return f"<think>ok</think> <answer>{body}</answer>"


def _run(completions: list, n: int = 3, **kwargs) -> tuple[list[float], dict[str, float]]:
    logged: dict[str, float] = {}
    rewards = listwise_monitor(
        completions, candidates=_candidates(n, len(completions)), log_metric=logged.__setitem__, **kwargs
    )
    return rewards, logged


CASES = {
    "missing_think": "no tags [1] > [2] > [3]",
    "unclosed_think": "<think> forever",
    "missing_answer": "<think>x</think> done",
    "unclosed_answer": "<think>x</think><answer>[1] > [2]",
    "empty": _answer(" "),
    "out_of_range": _answer("[1] > [2] > [4]"),
    "duplicate_id": _answer("[1] > [1] > [2]"),
    "wrong_count": _answer("[2] > [1]"),
}


def test_each_reason_is_counted_and_valid_answers_score_one():
    completions = [*CASES.values(), _answer("[1] > [2] > [3]"), _answer("[3] > [2] > [1]")]
    rewards, logged = _run(completions)
    total = len(completions)
    assert rewards == [0.0] * len(CASES) + [1.0, 1.0]
    for reason in CASES:
        assert logged[f"monitor/invalid/{reason}"] == pytest.approx(1 / total), reason
    assert logged["monitor/invalid/not_an_id_list"] == 0.0
    assert logged["monitor/invalid_rate"] == pytest.approx(len(CASES) / total)
    assert logged["monitor/identity_rate"] == pytest.approx(1 / total)
    assert logged["monitor/spearman_initial"] == pytest.approx(0.0)
    assert logged["monitor/kendall_initial"] == pytest.approx(0.0)


def test_partial_mode_reason_and_filled_prefix_counts_as_identity():
    rewards, logged = _run([_answer("1, 2"), _answer("[1] > [2]")], mode="partial")
    assert rewards == [0.0, 1.0]
    assert logged["monitor/invalid/not_an_id_list"] == 0.5
    assert logged["monitor/identity_rate"] == 0.5


def test_logged_names_are_the_documented_ones():
    _, logged = _run([_answer("[2] > [1] > [3]")])
    reasons = {f"monitor/invalid/{reason}" for reason in (*FORMAT_REASONS, *PERMUTATION_REASONS)}
    expected = {"monitor/invalid_rate", "monitor/identity_rate", "monitor/spearman_initial"}
    assert set(logged) == reasons | expected | {"monitor/kendall_initial"}


def test_correlations_of_identity_and_reversed_orders():
    assert spearman_initial((0, 1, 2, 3)) == pytest.approx(1.0)
    assert kendall_initial((0, 1, 2, 3)) == pytest.approx(1.0)
    assert spearman_initial((3, 2, 1, 0)) == pytest.approx(-1.0)
    assert kendall_initial((3, 2, 1, 0)) == pytest.approx(-1.0)
    _, logged = _run([_answer("[4] > [3] > [2] > [1]")] * 2, n=4)
    assert logged["monitor/spearman_initial"] == pytest.approx(-1.0)
    assert logged["monitor/identity_rate"] == 0.0


@settings(max_examples=60, deadline=None)
@given(st.permutations(range(9)), st.integers(min_value=2, max_value=9))
def test_spearman_initial_matches_scipy_on_permutations(permutation, n):
    order = tuple(i for i in permutation if i < n)
    assert spearman_initial(order) == pytest.approx(spearmanr(range(n), order).statistic, abs=1e-12)


def test_no_correlation_without_valid_answers_and_no_logger_is_fine():
    _, logged = _run(["junk"])
    assert "monitor/spearman_initial" not in logged and logged["monitor/invalid_rate"] == 1.0
    assert listwise_monitor([_answer("[1]")], candidates=_candidates(1, 1)) == [1.0]


def test_registry_binds_mode_and_passes_trl_keywords():
    reward = get_reward("listwise_monitor", mode="partial")
    logged: dict[str, float] = {}
    values = reward(
        [[{"role": "assistant", "content": _answer("[2]")}]],
        candidates=_candidates(3, 1),
        log_metric=logged.__setitem__,
        log_extra=lambda column, values: None,
        trainer_state=None,
    )
    assert values == [1.0] and logged["monitor/identity_rate"] == 0.0


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=60),
            st.text(alphabet="<>/[]0123456789 thinkanswer,", max_size=60),
            st.builds(_answer, st.text(alphabet="[]>0123456789 ,", max_size=30)),
        ),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 12),
    st.sampled_from(["strict", "partial", "lenient"]),
)
def test_never_raises_on_any_text(texts, n, mode):
    rewards, logged = _run(texts, n=n, mode=mode)
    assert all(value in (0.0, 1.0) for value in rewards)
    assert all(math.isfinite(value) for value in logged.values())
    assert 0.0 <= logged["monitor/invalid_rate"] <= 1.0
