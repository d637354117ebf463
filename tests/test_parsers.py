"""Tests of tasks.parsers: hand cases per mode and reason, regex parity, adversarial and huge inputs."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.parsers import MODES, parse_permutation, parse_think_answer

# ReasonRank's pattern, with the think part captured too (a group does not change what matches).
REASONRANK_PATTERN = re.compile(r"<think>(.*?)</think>\s*<answer>(.*?)</answer>", re.DOTALL)
FAST = settings(max_examples=200, deadline=None)


def test_think_answer_ok_and_unanchored():
    parsed = parse_think_answer("preamble <think>why\n</think>\n\n <answer>[2] > [1]</answer> trailing")
    assert (parsed.ok, parsed.think, parsed.answer, parsed.reason) == (True, "why\n", "[2] > [1]", "")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[2] > [1]", "missing_think"),
        ("<answer>[1]</answer>", "missing_think"),
        ("<think>never closed <answer>[1]</answer>", "unclosed_think"),
        ("<think>x</think> words <answer>[1]</answer>", "missing_answer"),
        ("<think>x</think>", "missing_answer"),
        ("<think>x</think><answer>[1]", "unclosed_answer"),
        (None, "not_text"),
        (b"<think></think><answer>1</answer>", "not_text"),
    ],
)
def test_think_answer_failures(text, reason):
    parsed = parse_think_answer(text)
    assert (parsed.ok, parsed.answer, parsed.reason) == (False, None, reason)


def test_injected_and_nested_tags_follow_the_regex():
    fake_inside = "<think>a <answer>[1]</answer> b</think>\n<answer>[2] > [1]</answer>"
    assert parse_think_answer(fake_inside).answer == "[2] > [1]"
    two_answers = "<think>x</think><answer>[1]</answer> <think>y</think><answer>[2]</answer>"
    assert parse_think_answer(two_answers).answer == "[1]"
    nested = "<think><think>inner</think> not an answer</think><answer>[3]</answer>"
    assert parse_think_answer(nested).answer == "[3]"
    assert parse_think_answer(nested).think == "<think>inner</think> not an answer"


tag_soup = st.lists(
    st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", " ", "\n", "x", "[1]", "<", ">"]),
    max_size=25,
).map("".join)


@FAST
@given(st.one_of(tag_soup, st.text(max_size=60)))
def test_think_answer_equals_reasonrank_regex(text):
    match = REASONRANK_PATTERN.search(text)
    parsed = parse_think_answer(text)
    assert parsed.ok == (match is not None)
    if match:
        assert (parsed.think, parsed.answer) == match.groups()


@pytest.mark.parametrize(
    ("answer", "order"),
    [
        ("[3] > [1] > [2]", (2, 0, 1)),
        ("3,1,2", (2, 0, 1)),
        ("[03] [1] [2]", (2, 0, 1)),
        ("\n[1]>[2]>[3]\n", (0, 1, 2)),
    ],
)
def test_strict_valid(answer, order):
    assert parse_permutation(answer, 3) == parse_permutation(answer, 3, "strict")
    assert parse_permutation(answer, 3).order == order
    assert parse_permutation(answer, 3).valid


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (None, "no_answer"),
        ("", "empty"),
        ("no ids here", "empty"),
        ("[3] > [1]", "wrong_count"),
        ("[1] > [2] > [3] > [1]", "duplicate_id"),
        ("[1] > [1] > [2]", "duplicate_id"),
        ("[4] > [1] > [2]", "out_of_range"),
        ("[0] > [1] > [2]", "out_of_range"),
        ("[" + "9" * 5000 + "] > [1] > [2]", "out_of_range"),
        ("[١] > [2] > [3]", "wrong_count"),  # non-ASCII digits are separators
    ],
)
def test_strict_invalid(answer, reason):
    result = parse_permutation(answer, 3, "strict")
    assert (result.order, result.reason, result.valid) == (None, reason, False)


@pytest.mark.parametrize(
    ("answer", "order", "reason", "num_listed"),
    [
        ("[3] > [1] > [2]", (2, 0, 1), "", 3),
        ("  [3]>[1]  ", (2, 0, 1), "filled_missing", 2),
        ("[2]", (1, 0, 2), "filled_missing", 1),
    ],
)
def test_partial_valid(answer, order, reason, num_listed):
    result = parse_permutation(answer, 3, "partial")
    assert (result.order, result.reason, result.num_listed) == (order, reason, num_listed)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (None, "no_answer"),
        ("   ", "empty"),
        ("3 > 1", "not_an_id_list"),
        ("[3] > [1] and then [2]", "not_an_id_list"),
        ("[3] [1]", "not_an_id_list"),
        ("[4] > [1]", "out_of_range"),
        ("[1] > [1]", "duplicate_id"),
    ],
)
def test_partial_invalid(answer, reason):
    result = parse_permutation(answer, 3, "partial")
    assert (result.order, result.reason) == (None, reason)


@pytest.mark.parametrize(
    ("answer", "order", "reason"),
    [
        ("[3] > [1] > [2]", (2, 0, 1), ""),
        ("[3] > [9] > [1] > [3] > [2]", (2, 0, 1), "dropped_invalid"),
        ("I'd say 2 then 0", (1, 0, 2), "dropped_invalid+filled_missing"),
        ("[3]", (2, 0, 1), "filled_missing"),
        ("nothing", (0, 1, 2), "empty"),
        ("", (0, 1, 2), "empty"),
        (None, (0, 1, 2), "no_answer"),
    ],
)
def test_lenient_repairs(answer, order, reason):
    result = parse_permutation(answer, 3, "lenient")
    assert (result.order, result.reason, result.valid) == (order, reason, True)


def test_bad_mode_or_n_raises():
    with pytest.raises(ValueError, match="mode"):
        parse_permutation("[1]", 1, "fuzzy")
    for bad_n in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="n must be"):
            parse_permutation("[1]", bad_n)


id_soup = st.lists(
    st.one_of(
        st.integers(-2, 30).map(str), st.sampled_from(["[", "]", " > ", ">", " ", ",", "\n", "x", "0"])
    ),
    max_size=40,
).map("".join)


@FAST
@given(st.one_of(st.none(), st.text(max_size=80), id_soup), st.integers(1, 25), st.sampled_from(MODES))
def test_any_text_gives_permutation_or_none(answer, n, mode):
    result = parse_permutation(answer, n, mode)
    assert result.order is None or sorted(result.order) == list(range(n))
    assert result.valid == (result.order is not None)
    assert mode != "lenient" or result.valid
    assert result.valid or result.reason


@FAST
@given(st.integers(1, 25).flatmap(lambda n: st.permutations(range(n))), st.sampled_from(MODES))
def test_well_formed_answer_round_trips(order, mode):
    answer = " > ".join(f"[{i + 1}]" for i in order)
    assert parse_permutation(answer, len(order), mode).order == tuple(order)


HUGE = [
    "<think>" * 150_000,
    "<think>" + "</think> " * 120_000,
    "<think>x</think><answer>" + "[1] > " * 170_000,
    "1" * 1_000_000,
    "[1] > " * 170_000 + "[2]",
    "é" * 1_000_000,
]


@pytest.mark.parametrize("text", HUGE, ids=range(len(HUGE)))
def test_megabyte_inputs_are_fast(text):
    start = time.perf_counter()
    parse_think_answer(text)
    for mode in MODES:
        parse_permutation(text, 20, mode)
    assert time.perf_counter() - start < 1.0
