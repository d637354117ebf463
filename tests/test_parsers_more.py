"""Tests of the setwise, integer-score and group-score parsers: hand cases per reason, parity with the
reference implementations (Rank-R1, Retro*, GroupRank) on generated tag soup, and megabyte inputs."""

from __future__ import annotations

import json
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.parsers import parse_setwise_label, parse_think_answer
from tasks.parsers_scores import (
    GROUP_TAG_REASONS,
    parse_group_scores,
    parse_int_answer,
    parse_score_tag,
)

FAST = settings(max_examples=300, deadline=None)
RANK_R1_PATTERN = re.compile(r"<think>.*?</think>\s*<answer>(.*?)</answer>", re.DOTALL)
RETRO_PATTERN = re.compile(r"<score>\s*(\d+)\s*</score>")


def soup(fragments: list[str], max_size: int = 30) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(fragments), max_size=max_size).map("".join)


# --- setwise label (Rank-R1) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("<think>doc 3 answers it</think> <answer>[3]</answer>", 3),
        ("pre <think>x</think>\n<answer>\n [12] \n</answer> post", 12),
        ("<THINK>x</THINK><ANSWER>[2]</ANSWER>", 2),  # lowercased first, as Rank-R1's inference does
    ],
)
def test_setwise_label_ok(text, label):
    assert parse_setwise_label(text) == parse_setwise_label(text, 20)
    assert (parse_setwise_label(text).label, parse_setwise_label(text).reason) == (label, "")


@pytest.mark.parametrize(
    ("text", "n", "reason"),
    [
        (None, None, "not_text"),
        ("[3]", None, "missing_think"),
        ("<think>x <answer>[3]</answer>", None, "unclosed_think"),
        ("<think>x</think> so <answer>[3]</answer>", None, "missing_answer"),
        ("<think>x</think><answer>[3]", None, "unclosed_answer"),
        ("<think>x</think><answer>  </answer>", None, "empty_answer"),
        ("<think>x</think><answer>3</answer>", None, "not_a_label"),
        ("<think>x</think><answer>[03]</answer>", None, "not_a_label"),
        ("<think>x</think><answer>[ 3 ]</answer>", None, "not_a_label"),
        ("<think>x</think><answer>[0]</answer>", None, "not_a_label"),
        ("<think>x</think><answer>[3] because</answer>", None, "not_a_label"),
        ("<think>x</think><answer>[3], [4]</answer>", None, "not_a_label"),
        ("<think>x</think><answer>[21]</answer>", 20, "out_of_range"),
        ("<think>x</think><answer>[" + "9" * 5000 + "]</answer>", None, "out_of_range"),
    ],
)
def test_setwise_label_failures(text, n, reason):
    result = parse_setwise_label(text, n)
    assert (result.label, result.reason, result.valid) == (None, reason, False)


def test_setwise_label_case_sensitive_mode():
    assert (
        parse_setwise_label("<THINK>x</THINK><ANSWER>[2]</ANSWER>", lowercase=False).reason == "missing_think"
    )


SETWISE_FRAGMENTS = ["<think>", "</think>", "<answer>", "</answer>", "<THINK>"]
SETWISE_FRAGMENTS += ["[1]", "[2]", "[02]", " ", "\n", "x"]
setwise_soup = st.one_of(
    soup(SETWISE_FRAGMENTS),
    st.builds(
        "{}<think>{}</think>{}<answer>{}</answer>{}".format,
        soup(SETWISE_FRAGMENTS, 4),
        soup(SETWISE_FRAGMENTS, 4),
        st.sampled_from(["", " ", "\n\n", " x "]),
        st.sampled_from(["[1]", " [2]\n", "[02]", "[1][2]", "", "2", "[1] x"]),
        soup(SETWISE_FRAGMENTS, 4),
    ),
)


@FAST
@given(setwise_soup, st.sampled_from(["[1]", "[2]"]), st.booleans())
def test_setwise_label_matches_rank_r1(text, gold, lowercase):
    """Rank-R1: ``match and match.group(1).strip() == gold`` (training: as is; inference: lowercased)."""
    match = RANK_R1_PATTERN.search(text.lower() if lowercase else text)
    expected = bool(match) and match.group(1).strip() == gold
    label = parse_setwise_label(text, lowercase=lowercase).label
    assert (label is not None and f"[{label}]" == gold) == expected


def test_think_tag_can_be_renamed():
    parsed = parse_think_answer("<reason>r</reason> <answer>a</answer>", "reason")
    assert (parsed.ok, parsed.think, parsed.answer) == (True, "r", "a")
    assert parse_think_answer("<think>r</think><answer>a</answer>", "reason").reason == "missing_reason"
    assert parse_think_answer("<reason>r <answer>a</answer>", "reason").reason == "unclosed_reason"
    with pytest.raises(ValueError, match="tag name"):
        parse_think_answer("x", "a>b")


# --- integer scores (ERank, Retro*) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("reasoning... <score>85</score>", 85),
        ("<score>\n 0 \n</score>", 0),
        ("<score>100</score>", 100),
        ("<score>007</score>", 7),
        ("<score>x</score> then <score>42</score>", 42),  # the first tag holding an integer, as re.search
        ("<score>42</score><score>7</score>", 42),
    ],
)
def test_score_tag_ok(text, value):
    assert parse_score_tag(text) == parse_score_tag(text, 0, 100)
    assert (parse_score_tag(text).value, parse_score_tag(text).reason) == (value, "")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (None, "not_text"),
        ("the score is 85", "missing_tag"),
        ("<score>85", "unclosed_tag"),
        ("<score> </score>", "empty"),
        ("<score>85.5</score>", "not_an_integer"),
        ("<score>eighty</score>", "not_an_integer"),
        ("<score>+5</score>", "not_an_integer"),
        ("<score>101</score>", "out_of_range"),
        ("<score>-5</score>", "out_of_range"),
        ("<score>" + "9" * 10_000 + "</score>", "out_of_range"),
    ],
)
def test_score_tag_failures(text, reason):
    assert parse_score_tag(text) == parse_score_tag(text, 0, 100)
    assert (parse_score_tag(text).value, parse_score_tag(text).reason) == (None, reason)


SCORE_FRAGMENTS = ["<score>", "</score>", " ", "\n", "5", "42", "100", "101", "-3", "007", "x", "<", ">"]
score_soup = st.one_of(
    soup(SCORE_FRAGMENTS),
    st.builds(
        "{}<score>{}</score>{}".format,
        soup(SCORE_FRAGMENTS, 6),
        soup(SCORE_FRAGMENTS, 3),
        soup(SCORE_FRAGMENTS, 6),
    ),
)


@FAST
@given(score_soup)
def test_score_tag_matches_retro_star(text):
    """Retro*: ``int(re.search(r"<score>\\s*(\\d+)\\s*</score>", text).group(1))``, here within 0..100."""
    match = RETRO_PATTERN.search(text)
    expected = int(match.group(1)) if match and int(match.group(1)) <= 100 else None
    assert parse_score_tag(text).value == expected


@pytest.mark.parametrize(
    ("text", "require_think", "value", "reason"),
    [
        ("<think>x</think><answer>7</answer>", False, 7, ""),
        ("<think>x</think><answer>7</answer>", True, 7, ""),
        ("<answer> 10 </answer>", False, 10, ""),
        ("<answer> 10 </answer>", True, None, "missing_think"),
        ("<think>x</think><answer>11</answer>", True, None, "out_of_range"),
        ("<think>x</think><answer>seven</answer>", True, None, "not_an_integer"),
        ("<think>x</think><answer></answer>", True, None, "empty"),
        ("<answer>7", False, None, "unclosed_tag"),
        ("7", False, None, "missing_tag"),
        ("<answer>7.0</answer>", False, None, "not_an_integer"),
        ("<answer>-1</answer>", False, None, "out_of_range"),
    ],
)
def test_int_answer(text, require_think, value, reason):
    result = parse_int_answer(text, 0, 10, require_think=require_think)
    assert (result.value, result.reason) == (value, reason)


def test_score_range_is_checked():
    assert parse_int_answer("<answer>3</answer>", 4, 6).reason == "out_of_range"
    for lo, hi in [(5, 4), (-1, 3), (0, 2.5), (True, 3)]:
        with pytest.raises(ValueError, match="lo <= hi"):
            parse_score_tag("<score>1</score>", lo, hi)


# --- group scores (GroupRank) ----------------------------------------------------------------------------

GOOD_GROUP = (
    '<reason>\n[2] is best\n</reason>\n<answer>\n```json\n{"[1]": 5, "[2]": 9, "[3]": 0.5}\n```\n</answer>'
)


def test_group_scores_ok():
    result = parse_group_scores(GOOD_GROUP, 3)
    assert (result.scores, result.reason, result.tags_ok, result.failure) == (
        {1: 5.0, 2: 9.0, 3: 0.5},
        "",
        True,
        "",
    )


@pytest.mark.parametrize(
    ("answer", "scores", "reason"),
    [
        ('```json\n{"[7]]": 5, "[2]": 3}\n```', {7: 5.0, 2: 3.0}, "repaired_bracket"),
        ('```json\n{"[1]": 5, "[2]": 3\n```', {1: 5.0, 2: 3.0}, "closed_brace"),
        ('```json {"[1]]": 5 ```', {1: 5.0}, "repaired_bracket+closed_brace"),
        ('```json {"[1]": 1} ``` and later ```json {"[1]": 2} ```', {1: 2.0}, ""),  # the last block
        ('first {"[1]": 1} then {"[2]": 2}', {2: 2.0}, ""),  # no block: the last {...}
        ('{"1": 4, " [2] ": 6.5, "03": 1}', {1: 4.0, 2: 6.5, 3: 1.0}, ""),
    ],
)
def test_group_scores_extraction_and_repairs(answer, scores, reason):
    result = parse_group_scores(f"<reason>r</reason><answer>{answer}</answer>")
    assert (result.scores, result.reason) == (scores, reason)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (None, "not_text"),
        ('```json {"[1]": 5} ```', "missing_reason"),
        ('<reason>r <answer>{"[1]": 5}</answer>', "unclosed_reason"),
        ('<reason>r</reason> {"[1]": 5}', "missing_answer"),
        ('<reason>r</reason><answer>{"[1]": 5}', "unclosed_answer"),
    ],
)
def test_group_scores_bad_tags(text, reason):
    result = parse_group_scores(text, 3)
    assert (result.scores, result.reason, result.tags_ok, result.failure) == (None, reason, False, "bad_tags")
    assert reason in GROUP_TAG_REASONS


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("I like [1] best", "no_json"),
        ('{"[1]": 5', "no_json"),  # outside a ```json block there is no {...} to repair
        ('```json {"[1]": 5,, } ```', "invalid_json"),
        ("```json ```", "invalid_json"),  # an empty block
        ('```json [["[1]", 5]] ```', "not_an_object"),
        ("{}", "empty"),
        ('{"first": 5}', "bad_key"),
        ('{"[1a]": 5}', "bad_key"),
        ('{"[4]": 5}', "out_of_range"),
        ('{"[0]": 5}', "out_of_range"),
        ('{"[1]": 5, "1": 6}', "duplicate_key"),
        ('{"[1]": 5, "[1]": 6}', "duplicate_key"),
        ('{"[1]": "5"}', "bad_value"),
        ('{"[1]": true}', "bad_value"),
        ('{"[1]": NaN}', "bad_value"),
        ('{"[1]": 1e999}', "bad_value"),
        ('{"[1]": {"score": 5}}', "bad_value"),
    ],
)
def test_group_scores_bad_json(answer, reason):
    result = parse_group_scores(f"<reason>r</reason><answer>{answer}</answer>", 3)
    assert (result.scores, result.reason, result.tags_ok, result.failure) == (None, reason, True, "bad_json")


def test_group_scores_without_required_tags():
    assert parse_group_scores('<answer>{"[1]": 2}</answer>', require_tags=False).scores == {1: 2.0}
    assert parse_group_scores('noise {"[1]": 2} noise', require_tags=False).scores == {1: 2.0}
    assert parse_group_scores("nothing", require_tags=False).failure == "bad_json"


def reference_group_scores(output_str: str) -> dict | None:
    """GroupRank's ``_extract_rerank_output`` (Diver Reranker/rerank_groupwise.py), None where it raises."""
    answer_match = re.search(r"<answer>(.*?)</answer>", output_str, re.DOTALL)
    if answer_match:
        output_str = answer_match.group(1).strip()
    json_matches = re.findall(r"(?:```json\s*)([\s\S]+?)(?:\s*```)", output_str)
    braced = re.findall(r"\{[\s\S]*?\}", output_str)
    if not json_matches and not braced:
        return None
    json_str = json_matches[-1].strip() if json_matches else braced[-1]
    json_str = re.sub(r"(\[\d+\])\]", r"\1", json_str.strip())
    if json_str.count("{") > json_str.count("}"):
        json_str += "}"
    json_str = re.sub(r"\s+", " ", json_str).strip()
    try:
        pairs = json.loads(json_str, object_pairs_hook=lambda items: items)
        return {"dict": dict(json.loads(json_str)), "pairs": pairs}
    except (ValueError, TypeError, RecursionError):
        return None


def well_formed(pairs) -> bool:
    """GroupRank's parse succeeded on an object of label keys, finite numeric values and distinct labels."""
    if not pairs or not isinstance(pairs, list) or not all(isinstance(p, tuple) for p in pairs):
        return False
    keys = [key.strip().strip("[]").strip() for key, _ in pairs]
    values_ok = all(type(v) in (int, float) and abs(v) < float("inf") for _, v in pairs)
    labels_ok = all(k.isascii() and k.isdigit() and int(k) >= 1 for k in keys)
    return values_ok and labels_ok and len({int(k) for k in keys}) == len(keys)


group_soup = soup(
    ["<answer>", "</answer>", "```json", "```", "{", "}", '"[1]"', '"[2]]"', '"3"', '"[1]"', ":", " 5", "7.5"]
    + [",", " ", "\n", "[", "]", "x", '"a"', "true", "-1", "NaN", '{"[1]": 4, "[2]": 6}']
)


@settings(max_examples=500, deadline=None)
@given(group_soup)
def test_group_scores_match_grouprank(text):
    """Without <reason> tags (require_tags=False) the parse follows GroupRank's inference code."""
    ours = parse_group_scores(text, require_tags=False)
    reference = reference_group_scores(text)
    if ours.valid:
        assert reference is not None
        assert ours.scores == {
            int(k.strip().strip("[]").strip()): float(v) for k, v in reference["dict"].items()
        }
    elif reference is not None and well_formed(reference["pairs"]):
        pytest.fail(f"GroupRank parses {text!r} but we report {ours.reason}")


# --- robustness ----------------------------------------------------------------------------------------

HUGE = [
    "<score>" + " " * 1_000_000,
    "<score>" + "1" * 1_000_000 + " x",
    "<answer>" * 125_000,
    "```json" * 150_000,
    "{" * 500_000 + "}" * 500_000,
    "{}" * 500_000,
    "<reason>x</reason><answer>```json " + "[" * 1_000_000 + "```</answer>",
    "<reason>x</reason><answer>```json {" + '"[1]]": 1, ' * 90_000 + "```</answer>",
    "<think>x</think><answer>[" + "9" * 1_000_000 + "]</answer>",
    '<reason>x</reason><answer>```json {"[1]": ' + "9" * 1_000_000 + "}```</answer>",
    "<THINK>" + "</THINK> " * 110_000,
    "é" * 1_000_000,
]


@pytest.mark.parametrize("text", HUGE, ids=range(len(HUGE)))
def test_megabyte_inputs_do_not_backtrack_catastrophically(text):
    """Termination, not speed: a parser quadratic in the input would need hours on a megabyte, so a bound
    of 30 s on a busy 2-core machine only fails on super-linear work (the parsers take milliseconds)."""
    start = time.perf_counter()
    parse_setwise_label(text, 20)
    parse_score_tag(text)
    parse_int_answer(text)
    parse_int_answer(text, require_think=True)
    parse_group_scores(text, 20)
    parse_group_scores(text, require_tags=False)
    assert time.perf_counter() - start < 30.0
