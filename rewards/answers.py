"""Final-answer extraction and normalised exact match for reasoning tasks (GSM8K, MATH-style problems).

The final answer of a text is, in this order of precedence: what follows the last ``####`` (GSM8K's
marker), the content of the last ``\\boxed{...}`` (braces balanced), the content of the last
``<answer>...</answer>``, else the whole text; stripped. Two answers match when their normalised forms are
equal: commas, ``$`` and a trailing period dropped, numbers in canonical decimal form (``18.00`` == ``18``,
``-.5`` == ``-0.50``), other text lower-cased with runs of spaces collapsed.

Hand-written because math-verify style libraries pull sympy/latex parsers; these few rules are what GSM8K
grading needs, and they never raise on untrusted model output.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from rewards.listwise import _column, completion_text
from rewards.registry import register_reward

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def final_answer(text: str) -> str:
    """The final answer of ``text`` (see the module docstring); ``""`` for a non-string."""
    if not isinstance(text, str):
        return ""
    marker = text.rfind("####")
    if marker >= 0:
        return text[marker + 4 :].strip()
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    tags = _ANSWER_TAG.findall(text)
    return (tags[-1] if tags else text).strip()


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` with balanced braces, None if there is none or it is unclosed."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for index in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth < 0:
            return text[begin:index]
    return None


def normalize_answer(text: str) -> str:
    """The canonical form of ``final_answer(text)`` used for matching (see the module docstring)."""
    answer = final_answer(text).replace(",", "").replace("$", "").strip().rstrip(".").strip()
    try:
        number = Decimal(answer)
    except InvalidOperation:
        return " ".join(answer.lower().split())
    if not number.is_finite():
        return answer.lower()
    return format(number.normalize(), "f") if number != 0 else "0"


def answers_match(predicted: str, reference: str) -> bool:
    """Normalised exact match of two answers; an empty prediction never matches."""
    predicted_answer = normalize_answer(predicted)
    return bool(predicted_answer) and predicted_answer == normalize_answer(reference)


@register_reward("answer_match")
def answer_match_reward(completions: list[Any], **columns: Any) -> list[float]:
    """Outcome reward for reasoners: 1.0 when the final answer after ``</think>`` (or of the whole text)
    matches the ``answer`` column, else 0.0."""
    references = _column("answer_match", columns, "answer", len(completions))
    answers = [completion_text(completion).split("</think>")[-1] for completion in completions]
    return [float(answers_match(a, str(r))) for a, r in zip(answers, references, strict=True)]
