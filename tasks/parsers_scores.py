"""Parsers of scores in untrusted model output; like :mod:`tasks.parsers` they never raise on any string.

- :func:`parse_int_answer`: ERank's ``<answer>int</answer>`` (0-10).
- :func:`parse_score_tag`: Retro*'s ``<score>N</score>`` (0-100).
- :func:`parse_group_scores`: GroupRank's ``<reason>...</reason> <answer> ```json {"[1]": 5} ``` </answer>``.

Each result is a frozen dataclass whose ``reason`` names the failure ("" on success; for group scores it may
name a repair instead). Only ASCII digits form numbers.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tasks.parsers import _tag_pair, parse_think_answer

_DIGITS = re.compile(r"[0-9]+")
_NEGATIVE = re.compile(r"-[0-9]+")
_MAX_DIGITS = 18
_EXTRA_BRACKET = re.compile(r"(\[[0-9]+\])\]")
_WHITESPACE = re.compile(r"\s+")
_LEADING_SPACE = re.compile(r"\s*")
_JSON_FENCE, _FENCE = "```json", "```"
_MAX_KEY_DIGITS = 9

#: Reasons of :func:`parse_group_scores` that mean the tags are wrong (GroupRank's -0.5 case).
GROUP_TAG_REASONS = frozenset(
    {"not_text", "missing_reason", "unclosed_reason", "missing_answer", "unclosed_answer"}
)


@dataclass(frozen=True)
class IntScore:
    """Result of :func:`parse_int_answer` / :func:`parse_score_tag`: an integer in [lo, hi] or None."""

    value: int | None
    reason: str

    @property
    def valid(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class GroupScores:
    """Result of :func:`parse_group_scores`: {1-based passage label: score}, or None with a reason.

    ``tags_ok`` says whether the ``<reason>``/``<answer>`` structure was found; :attr:`failure` tells a tag
    failure ("bad_tags") from a JSON failure ("bad_json"), which GroupRank penalises differently.
    """

    scores: dict[int, float] | None
    reason: str
    tags_ok: bool

    @property
    def valid(self) -> bool:
        return self.scores is not None

    @property
    def failure(self) -> str:
        if self.scores is not None:
            return ""
        return "bad_tags" if self.reason in GROUP_TAG_REASONS else "bad_json"


def parse_int_answer(text: str, lo: int = 0, hi: int = 10, *, require_think: bool = False) -> IntScore:
    """ERank's integer score: the first ``<answer>\\s*N\\s*</answer>`` with N in [lo, hi].

    With ``require_think`` the whole ``<think>...</think> <answer>N</answer>`` structure must hold (see
    :func:`tasks.parsers.parse_think_answer`, whose reasons then apply) and its answer must be N.
    Reasons: "not_text", "missing_tag", "unclosed_tag", "empty", "not_an_integer", "out_of_range".
    """
    _check_range(lo, hi)
    if not require_think:
        return _parse_int_tag(text, "answer", lo, hi)
    parsed = parse_think_answer(text)
    if not parsed.ok or parsed.answer is None:
        return IntScore(None, parsed.reason)
    return _classify(parsed.answer.strip(), lo, hi)


def parse_score_tag(text: str, lo: int = 0, hi: int = 100) -> IntScore:
    """Retro*'s score, N in [lo, hi]: ``re.search(r"<score>\\s*(\\d+)\\s*</score>")`` (reranker_sglang.py).

    The first tag holding only an integer counts, as in Retro*'s code. Retro* scores a failed parse as 0
    at inference; here it is None with a reason, so callers can count failures (a 0 biases the mean down).
    Reasons: "not_text", "missing_tag", "unclosed_tag", "empty", "not_an_integer", "out_of_range".
    """
    _check_range(lo, hi)
    return _parse_int_tag(text, "score", lo, hi)


def _check_range(lo: int, hi: int) -> None:
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (lo, hi)) or not 0 <= lo <= hi:
        raise ValueError(f"score range needs integers 0 <= lo <= hi, got lo={lo!r}, hi={hi!r}")


@lru_cache(maxsize=8)
def int_tag_pattern(tag: str) -> re.Pattern[str]:
    """The pattern of ``<tag>N</tag>`` (whitespace around N allowed); group 1 holds N's digits."""
    return re.compile(rf"<{tag}>\s*([0-9]+)\s*</{tag}>")


def _parse_int_tag(text: Any, tag: str, lo: int, hi: int) -> IntScore:
    if not isinstance(text, str):
        return IntScore(None, "not_text")
    match = int_tag_pattern(tag).search(text)
    if match is not None:
        return _classify(match.group(1), lo, hi)
    opening, closing, _ = _tag_pair(tag)
    start = text.find(opening)
    if start < 0:
        return IntScore(None, "missing_tag")
    end = text.find(closing, start)
    if end < 0:
        return IntScore(None, "unclosed_tag")
    return _classify(text[start + len(opening) : end].strip(), lo, hi)


def _classify(content: str, lo: int, hi: int) -> IntScore:
    """The integer ``content`` if it lies in [lo, hi] (lo >= 0, so a negative one is out of range)."""
    if _NEGATIVE.fullmatch(content):
        return IntScore(None, "out_of_range")
    if not _DIGITS.fullmatch(content):
        return IntScore(None, "not_an_integer" if content else "empty")
    digits = content.lstrip("0") or "0"
    value = int(digits) if len(digits) <= _MAX_DIGITS else None
    if value is None or not lo <= value <= hi:
        return IntScore(None, "out_of_range")
    return IntScore(value, "")


def parse_group_scores(text: str, n: int | None = None, *, require_tags: bool = True) -> GroupScores:
    """GroupRank's scores (Diver Reranker/rerank_groupwise.py ``_extract_rerank_output``, made total).

    1. Tags: ``<reason>...</reason>\\s*<answer>...</answer>`` searched like
       :func:`tasks.parsers.parse_think_answer`. Without ``require_tags`` a failure is tolerated and, as in
       GroupRank's inference, the body is the first ``<answer>...</answer>`` or else the whole text.
    2. JSON text: the last ```` ```json ... ``` ```` block of the body, else its last ``{...}`` (up to the
       first ``}``). Repairs: ``[k]]`` -> ``[k]`` ("repaired_bracket"), one ``}`` appended when ``{``
       outnumber ``}`` ("closed_brace"); whitespace runs become one space.
    3. The JSON must be an object whose keys are passage labels (``"[k]"``, ``"k"``; ASCII digits) and whose
       values are finite numbers (not booleans); the result maps k to float(value).

    Tag reasons (:data:`GROUP_TAG_REASONS`): "not_text", "missing_reason", "unclosed_reason",
    "missing_answer", "unclosed_answer". JSON reasons: "no_json", "invalid_json", "not_an_object", "empty",
    "bad_key", "out_of_range" (k < 1 or k > ``n``), "duplicate_key" (one label twice, e.g. ``"[1]"`` and
    ``"1"``; GroupRank keeps the last), "bad_value". GroupRank treats any failure as all-zero scores.
    """
    tags = parse_think_answer(text, "reason")
    if tags.ok and tags.answer is not None:
        body = tags.answer
    elif require_tags or not isinstance(text, str):
        return GroupScores(None, tags.reason, False)
    else:
        body = _first_answer(text)
    candidate = _json_text(body.strip())
    if candidate is None:
        return GroupScores(None, "no_json", tags.ok)
    repaired, notes = _repair(candidate)
    scores, reason = _scores_from_json(repaired, n)
    return GroupScores(scores, reason or notes, tags.ok)


def _first_answer(text: str) -> str:
    """The first ``<answer>(.*?)</answer>`` of ``text`` (as ``re.search`` finds it), else ``text``."""
    start = text.find("<answer>")
    end = text.find("</answer>", start + len("<answer>")) if start >= 0 else -1
    return text[start + len("<answer>") : end] if end >= 0 else text


def _json_text(body: str) -> str | None:
    """The last ```json block, as ``(?:```json\\s*)([\\s\\S]+?)(?:\\s*```)`` finds it, else the last
    ``{...}``."""
    block, pos = None, 0
    while (start := body.find(_JSON_FENCE, pos)) >= 0:
        content = start + len(_JSON_FENCE)
        skipped = _LEADING_SPACE.match(body, content).end() - content
        end = body.find(_FENCE, content + skipped + 1)
        if end < 0:
            if skipped and body.startswith(_FENCE, content + skipped):  # "```json  ```": an empty block
                block = ""
            break
        block, pos = body[content:end].strip(), end + len(_FENCE)
    return block if block is not None else _last_braced(body)


def _last_braced(body: str) -> str | None:
    """The last non-overlapping ``{...}`` match of ``\\{[\\s\\S]*?\\}``, in linear time."""
    found, pos = None, 0
    while (start := body.find("{", pos)) >= 0 and (end := body.find("}", start + 1)) >= 0:
        found, pos = body[start : end + 1], end + 1
    return found


def _repair(candidate: str) -> tuple[str, str]:
    """GroupRank's repairs; returns the repaired text and the names of the repairs made."""
    notes = []
    repaired = _EXTRA_BRACKET.sub(r"\1", candidate)
    if repaired != candidate:
        notes.append("repaired_bracket")
    if repaired.count("{") > repaired.count("}"):
        repaired += "}"
        notes.append("closed_brace")
    return _WHITESPACE.sub(" ", repaired).strip(), "+".join(notes)


def _scores_from_json(text: str, n: int | None) -> tuple[dict[int, float] | None, str]:
    try:
        parsed = json.loads(text, object_pairs_hook=tuple)
    except (ValueError, RecursionError):
        return None, "invalid_json"
    if not isinstance(parsed, tuple):
        return None, "not_an_object"
    if not parsed:
        return None, "empty"
    scores: dict[int, float] = {}
    for key, value in parsed:
        index, score = _label_index(key), _finite(value)
        if index is None:
            return None, "bad_key"
        if index < 1 or (n is not None and index > n):
            return None, "out_of_range"
        if index in scores:
            return None, "duplicate_key"
        if score is None:
            return None, "bad_value"
        scores[index] = score
    return scores, ""


def _label_index(key: str) -> int | None:
    """k for a key ``"[k]"`` or ``"k"`` (whitespace allowed); 0 when k has too many digits."""
    digits = key.strip().strip("[]").strip()
    if not (digits.isascii() and digits.isdigit()):
        return None
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _MAX_KEY_DIGITS else 0


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
