"""Parsers for untrusted model output: they never raise on any string and run in linear time.

- :func:`parse_think_answer` finds ReasonRank's ``<think>...</think> <answer>...</answer>`` structure.
- :func:`parse_permutation` turns an answer such as ``[3] > [1] > [2]`` into 0-based candidate positions.
- :func:`parse_setwise_label` reads Rank-R1's single label ``[k]``.

Score parsers (pointwise integers, Retro*'s ``<score>`` tag, GroupRank's JSON) are in
:mod:`tasks.parsers_scores`.

Only ASCII digits 0-9 form identifiers; other characters, including non-ASCII digits, are separators.
(ReasonRank keeps every ``str.isdigit`` character and scores 0 when ``int()`` then fails on one, e.g. on a
superscript; a real model answer practically never contains such characters.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_ANSWER_CLOSE = "</answer>"
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_SETWISE_LABEL = re.compile(r"\[([1-9][0-9]*)\]")
_MAX_LABEL_DIGITS = 9
_ASCII_INT = re.compile(r"[0-9]+")
_BRACKET_ID_LIST = re.compile(r"\s*\[[0-9]+\](?:\s*>\s*\[[0-9]+\])*\s*")

MODES = ("strict", "partial", "lenient")


@dataclass(frozen=True)
class ThinkAnswer:
    """Result of :func:`parse_think_answer`; ``reason`` is "" when ``ok``."""

    ok: bool
    think: str | None
    answer: str | None
    reason: str


@dataclass(frozen=True)
class SetwiseLabel:
    """Result of :func:`parse_setwise_label`: the 1-based label ``k`` of ``[k]``, or None with a reason."""

    label: int | None
    reason: str

    @property
    def valid(self) -> bool:
        return self.label is not None


@dataclass(frozen=True)
class Permutation:
    """Result of :func:`parse_permutation`: 0-based candidate positions, best first, or None if invalid.

    ``reason`` names the failure of an invalid result; for a valid one it is "" or names a repair.
    ``num_listed`` counts the leading entries of ``order`` that the answer itself named; the rest were
    filled in prompt order.
    """

    order: tuple[int, ...] | None
    reason: str
    num_listed: int = 0

    @property
    def valid(self) -> bool:
        return self.order is not None


def parse_think_answer(text: str, think_tag: str = "think") -> ThinkAnswer:
    """Search ``text`` for ReasonRank's ``<think>.*?</think>\\s*<answer>(.*?)</answer>`` (DOTALL, unanchored).

    The result equals ``re.search`` with that pattern, computed without its quadratic backtracking: a match
    can only start at the first ``<think>``, it ends the think part at the first ``</think>`` that is directly
    followed (after whitespace) by ``<answer>``, and the answer runs to the next ``</answer>``.
    ``think_tag`` renames the first tag (GroupRank uses ``<reason>``); the reasons name it too.
    Reasons: "not_text", "missing_think", "unclosed_think", "missing_answer", "unclosed_answer".
    """
    if not isinstance(text, str):
        return ThinkAnswer(False, None, None, "not_text")
    opening, closing, boundary_pattern = _tag_pair(think_tag)
    start = text.find(opening)
    if start < 0:
        return ThinkAnswer(False, None, None, f"missing_{think_tag}")
    body = start + len(opening)
    boundary = boundary_pattern.search(text, body)
    if boundary is None:
        reason = "missing_answer" if text.find(closing, body) >= 0 else f"unclosed_{think_tag}"
        return ThinkAnswer(False, None, None, reason)
    end = text.find(_ANSWER_CLOSE, boundary.end())
    if end < 0:
        return ThinkAnswer(False, None, None, "unclosed_answer")
    return ThinkAnswer(True, text[body : boundary.start()], text[boundary.end() : end], "")


@lru_cache(maxsize=16)
def _tag_pair(tag: str) -> tuple[str, str, re.Pattern[str]]:
    """``<tag>``, ``</tag>`` and the compiled boundary ``</tag>\\s*<answer>``."""
    if not isinstance(tag, str) or _TAG_NAME.fullmatch(tag) is None:
        raise ValueError(f"tag name must be letters, digits, '_' or '-', got {tag!r}")
    return f"<{tag}>", f"</{tag}>", re.compile(rf"</{tag}>\s*<answer>")


def parse_setwise_label(text: str, n: int | None = None, *, lowercase: bool = True) -> SetwiseLabel:
    """Rank-R1's setwise answer: the think/answer structure, then ``answer.strip()`` exactly ``[k]``.

    ``lowercase`` lowercases ``text`` first, as Rank-R1's inference does (llmrankers/setwise.py); its training
    reward (train_grpo.py) does not, see :func:`rewards.setwise.rank_r1_setwise_reward`. ``k`` must be written
    canonically (``[3]``, not ``[03]`` or ``[ 3 ]``), so ``label == k`` exactly when ``answer.strip() ==
    f"[{k}]"``, Rank-R1's string test. Reasons: those of :func:`parse_think_answer`, "empty_answer",
    "not_a_label" (anything but ``[k]`` with k >= 1) and "out_of_range" (k > ``n`` when given, or k over
    9 digits).
    """
    if not isinstance(text, str):
        return SetwiseLabel(None, "not_text")
    parsed = parse_think_answer(text.lower() if lowercase else text)
    if not parsed.ok or parsed.answer is None:
        return SetwiseLabel(None, parsed.reason)
    answer = parsed.answer.strip()
    match = _SETWISE_LABEL.fullmatch(answer)
    if match is None:
        return SetwiseLabel(None, "not_a_label" if answer else "empty_answer")
    digits = match.group(1)
    if len(digits) > _MAX_LABEL_DIGITS or (n is not None and int(digits) > n):
        return SetwiseLabel(None, "out_of_range")
    return SetwiseLabel(int(digits), "")


def parse_permutation(answer: str | None, n: int, mode: str = "strict") -> Permutation:
    """Parse 1-based identifiers of ``n`` candidates into a permutation of ``range(n)``.

    - ``strict`` (ReasonRank's reward): every non-digit is a separator; valid only with exactly n ids, no
      duplicates, all in 1..n.
    - ``partial``: the answer must be ``[i] > [j] > ...`` (whitespace allowed around ``>``) with at least one
      id, all in 1..n, no duplicates; unlisted candidates follow in prompt order ("filled_missing").
    - ``lenient`` (inference repair): every integer is read, out-of-range and repeated ids are dropped
      ("dropped_invalid") and unlisted candidates are appended in prompt order ("filled_missing"); always
      valid, the identity order when nothing usable is found ("no_answer" / "empty").

    Invalid reasons, checked in this order: "no_answer" (None or not a string), "empty" (no id),
    "not_an_id_list" (partial only), "out_of_range", "duplicate_id", "wrong_count" (strict only).
    """
    if mode not in MODES:
        raise ValueError(f"unknown permutation mode {mode!r}; expected one of {', '.join(MODES)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of candidates n must be a positive int, got {n!r}")
    if not isinstance(answer, str):
        return _lenient_fallback(n, "no_answer") if mode == "lenient" else Permutation(None, "no_answer")
    if mode == "lenient":
        return _parse_lenient(answer, n)
    if mode == "partial" and _BRACKET_ID_LIST.fullmatch(answer) is None:
        return Permutation(None, "empty" if not answer.strip() else "not_an_id_list")
    ids = [_to_index(token, n) for token in _ASCII_INT.findall(answer)]
    reason = _first_problem(ids, n, need_all=mode == "strict")
    if reason:
        return Permutation(None, reason)
    return _complete(ids, n, "")


def _to_index(token: str, n: int) -> int | None:
    """0-based index of a 1-based id token, or None outside 1..n (never calls int() on a huge token)."""
    digits = token.lstrip("0")
    if not digits or len(digits) > len(str(n)):
        return None
    value = int(digits)
    return value - 1 if value <= n else None


def _first_problem(ids: list[int | None], n: int, need_all: bool) -> str:
    if not ids:
        return "empty"
    if None in ids:
        return "out_of_range"
    if len(set(ids)) != len(ids):
        return "duplicate_id"
    if need_all and len(ids) != n:
        return "wrong_count"
    return ""


def _parse_lenient(answer: str, n: int) -> Permutation:
    ids = [_to_index(token, n) for token in _ASCII_INT.findall(answer)]
    if not ids:
        return _lenient_fallback(n, "empty")
    kept = list(dict.fromkeys(index for index in ids if index is not None))
    return _complete(kept, n, "dropped_invalid" if len(kept) < len(ids) else "")


def _lenient_fallback(n: int, reason: str) -> Permutation:
    return Permutation(tuple(range(n)), reason)


def _complete(ids: list[int], n: int, reason: str) -> Permutation:
    """Append the candidates missing from ``ids`` in prompt order, noting "filled_missing" if any were."""
    if len(ids) == n:
        return Permutation(tuple(ids), reason, n)
    listed = set(ids)
    order = tuple(ids) + tuple(index for index in range(n) if index not in listed)
    return Permutation(order, "+".join(filter(None, (reason, "filled_missing"))), len(ids))
