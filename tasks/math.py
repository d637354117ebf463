"""Reasoners on GSM8K / MATH-style problems: think, then give one final answer, checked for equivalence.

The prompt is DeepSeek-R1's system prompt (arXiv 2501.12948 §2.2.1, Table 1;
:data:`tasks.setwise.R1_SYSTEM_PROMPT`, which Rank-R1's setwise prompt uses too) and the problem with
Rank-R1's closing instruction adapted to a final answer (:data:`MATH_USER`; no paper gives a math prompt).
An example is one problem; the SFT target is the teacher's completion, else the worked solution as thinking
and the reference's final answer in ``<answer>`` tags. An output's answer is its final answer after the last
``</think>`` (``<answer>`` tags, the last ``\\boxed{}``, ``####`` or a ``Final answer:`` line), normalised
(:mod:`tasks.answers`); it is right when equivalent to the reference under math-verify (``\\frac{1}{2}`` ==
``0.5``). GRPO scores with ``answer_match`` (:mod:`rewards.answers`); synthesis keeps a problem when the
teachers' majority answer is right; evaluation is ``rankrl tts`` (:mod:`evaluation.tts_run`), so there is no
ranking strategy.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from core.generation import Messages
from tasks.answers import answers_match, final_answer, read_answer
from tasks.base import Parsed
from tasks.setwise import R1_SYSTEM_PROMPT

TOY_OPERANDS = 100  # toy problems add or subtract two numbers below this
MATH_USER = (
    "{problem}\nAfter completing the reasoning process, please provide only the final answer within the "
    "answer tags. For example: <think> reasoning process here </think> <answer>42</answer>."
)


@dataclass(frozen=True)
class MathTask:
    """Prompt, SFT target, answer parser and synthesis check for problems with a reference answer.

    ``use_system_prompt``: put R1's system prompt first (the user turn alone still asks for the tags).
    """

    use_system_prompt: bool = True

    name: ClassVar[str] = "math"
    summary: ClassVar[str] = (
        "Reasoners: GSM8K/MATH problems, <think>...</think> <answer>final answer</answer>"
    )
    row_kind: ClassVar[str] = "reasoning"
    default_rewards: ClassVar[tuple[Any, ...]] = ("answer_match",)
    agreement: ClassVar[str] = "majority"

    def examples(self, row: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """One example per problem; its id is the row's ``id``, else a hash of the problem text."""
        if not final_answer(row.get("answer") or ""):
            return [], "no_answer"
        example_id = row.get("id") or hashlib.sha256(row["problem"].encode()).hexdigest()[:16]
        return [{**row, "task": self.name, "example_id": example_id}], ""

    def prompt(self, example: Mapping[str, Any]) -> Messages:
        """R1's system prompt (``use_system_prompt``) and the problem with the answer-tag instruction."""
        messages = [{"role": "user", "content": MATH_USER.format(problem=example["problem"])}]
        if self.use_system_prompt:
            messages.insert(0, {"role": "system", "content": R1_SYSTEM_PROMPT})
        return messages

    def target(self, example: Mapping[str, Any]) -> str:
        """The teacher's completion, else ``<think>solution</think>`` and the reference's final answer.

        Without a ``solution`` the thinking is the rationale before a GSM8K reference's ``####``, if any.
        """
        if example.get("completion"):
            return example["completion"]
        reference = example["answer"]
        reasoning = example.get("solution") or reference.rpartition("####")[0]
        return f"<think>{reasoning.strip()}</think>\n<answer>{final_answer(reference)}</answer>"

    def parse(self, example: Mapping[str, Any], text: str) -> Parsed:
        """The normalised final answer, or the reason: ``not_text``, ``no_answer`` or ``empty_answer``."""
        answer, reason = read_answer(text)
        return Parsed(reason=reason) if reason else Parsed(answer)

    def reward_columns(self, example: Mapping[str, Any]) -> dict[str, Any]:
        """Nothing beyond the example: ``answer_match`` reads the ``answer`` column."""
        return {}

    def strategy(self, options: Any) -> None:
        """None: reasoners are evaluated by ``rankrl tts``."""
        return None

    def accept(self, example: Mapping[str, Any], value: Any) -> str | None:
        """None when the agreed answer is equivalent to the reference, else ``wrong_answer``."""
        return None if answers_match(str(value), example["answer"]) else "wrong_answer"

    def teacher_example(
        self, example: Mapping[str, Any], text: str, value: Any, values: Sequence[Any]
    ) -> dict[str, Any]:
        """The example with the teacher's completion (the SFT target)."""
        return {**example, "completion": text.strip()}

    def toy_splits(self, num_train: int, num_heldout: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
        """Sums and differences of two numbers below :data:`TOY_OPERANDS` ("What is 3 + 4?" -> "7"),
        shuffled by ``seed``; held-out problems never occur in training (training cycles when it asks
        for more problems than remain)."""
        pool = [(a, op, b) for a in range(TOY_OPERANDS) for b in range(TOY_OPERANDS) for op in "+-"]
        if num_heldout >= len(pool):
            raise ValueError(
                f"toy math has {len(pool)} problems; {num_heldout} held out leaves none to train"
            )
        random.Random(seed).shuffle(pool)
        heldout, rest = pool[:num_heldout], pool[num_heldout:]
        train = [rest[i % len(rest)] for i in range(num_train)]
        return _toy_rows(train, "train"), _toy_rows(heldout, "heldout")

    def template_phrases(self) -> list[str]:
        """The prompt's constant stretches (one token each in a tiny test tokenizer)."""
        pieces = [*MATH_USER.format(problem="\0").split("\0")]
        pieces += [R1_SYSTEM_PROMPT] if self.use_system_prompt else []
        return sorted({piece.strip(" \n") for piece in pieces if len(piece.strip()) > 1})


def _toy_rows(problems: Sequence[tuple[int, str, int]], split: str) -> list[dict[str, str]]:
    rows = []
    for number, (a, op, b) in enumerate(problems):
        result = a + b if op == "+" else a - b
        rows.append(
            {
                "id": f"toy-{split}-{number}",
                "problem": f"What is {a} {op} {b}?",
                "answer": str(result),
                "solution": f"{a} {op} {b} = {result}",
            }
        )
    return rows
