"""The Task protocol: everything a paradigm (listwise, setwise, pointwise, ...) means, in one object.

A task is built from a recipe's ``task`` and ``task_args`` (:func:`tasks.get_task`) and is the only place
that knows its paradigm. Synthesis, training and evaluation all call the same object, so the prompt a
teacher labels, the prompt the policy trains on and the prompt evaluation ranks with are one rendering.

What a task owns:

- ``row_kind``: the dataset kind it reads (:mod:`core.data`: ``ranking`` or ``reasoning``).
- :meth:`Task.examples`: the examples one source row gives (1 -> N: one per list, per (query, document),
  per group, per problem). An example is a row of the same kind, its ``task`` column set to the task's name
  and ``example_id`` unique; rows that already are this task's examples (``rankrl synth`` output) are used
  as they are (:func:`expand_rows`).
- :meth:`Task.prompt` (chat messages) and :meth:`Task.target` (the SFT completion: the teacher's
  ``completion`` when there is one, else one built from the labels).
- :meth:`Task.parse`: the never-raising parser of one model output, a :class:`Parsed` with a named failure
  reason.
- :meth:`Task.reward_columns`: the columns its GRPO rewards read besides the example's own, and
  ``default_rewards``: the reward specs a recipe gets when it names none.
- :meth:`Task.strategy`: how ``rankrl eval`` (and evaluation during training) ranks with it; None for
  tasks evaluated by ``rankrl tts``.
- synthesis: ``agreement`` (how a unit's teacher samples are combined: ``first``, ``majority`` or
  ``consensus``), :meth:`Task.accept` (the task's own check of the agreed value) and
  :meth:`Task.teacher_example` (the example with the teacher's answer, written by ``rankrl synth``).
- :meth:`Task.toy_splits`: source rows (train, held-out) for ``--smoke`` runs, the demo and tests, and
  :meth:`Task.template_phrases`: the prompt's constant stretches a tiny test tokenizer keeps whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from core.data import labels_to_qrels
from core.generation import Messages
from tasks.toy import make_toy_splits


@dataclass(frozen=True)
class Parsed:
    """One parsed model output: ``value`` when it parsed, else None and ``reason`` naming why not."""

    value: Any = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason


class Task(Protocol):
    """What synthesis, training and evaluation need from a task (see the module docstring)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    row_kind: ClassVar[str]
    agreement: ClassVar[str]

    @property
    def default_rewards(self) -> tuple[Any, ...]:
        """Reward specs (names or ``{name, weight, args}``) a GRPO recipe gets when it names none."""
        ...

    def examples(self, row: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]: ...

    def prompt(self, example: Mapping[str, Any]) -> Messages: ...

    def target(self, example: Mapping[str, Any]) -> str: ...

    def parse(self, example: Mapping[str, Any], text: str) -> Parsed: ...

    def reward_columns(self, example: Mapping[str, Any]) -> dict[str, Any]: ...

    def strategy(self, options: Any) -> Any: ...

    def accept(self, example: Mapping[str, Any], value: Any) -> str | None: ...

    def teacher_example(
        self, example: Mapping[str, Any], text: str, value: Any, values: Sequence[Any]
    ) -> dict[str, Any]: ...

    def toy_splits(self, num_train: int, num_heldout: int, seed: int = 0) -> tuple[list, list]: ...

    def template_phrases(self) -> list[str]: ...


class ExampleError(ValueError):
    """A dataset row that is another task's example; the message is one line."""


def expand_rows(
    task: Task, rows: Iterable[Mapping[str, Any]], source: str = "dataset"
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The task's examples of ``rows`` and how many rows gave none, by reason (nothing dropped silently).

    A row whose ``task`` column names this task is already an example and is kept as it is; a row with
    another task's name is a one-line :class:`ExampleError`; any other row is expanded by
    :meth:`Task.examples`.
    """
    examples: list[dict[str, Any]] = []
    dropped: dict[str, int] = {}
    for number, row in enumerate(rows):
        made_for = row.get("task") or ""
        if made_for == task.name:
            examples.append(dict(row))
            continue
        if made_for:
            raise ExampleError(
                f"{source} row {number}: field 'task' is {made_for!r} (expected {task.name!r} examples or "
                "source rows without a task)"
            )
        made, reason = task.examples(row)
        if not made:
            dropped[reason] = dropped.get(reason, 0) + 1
        examples.extend(made)
    return examples, dropped


def assistant_turn(messages: Messages, text: str) -> Messages:
    """``messages`` followed by the assistant's ``text`` (an SFT conversation)."""
    return [*messages, {"role": "assistant", "content": text.strip()}]


def labelled_split(
    row: Mapping[str, Any], positives: int, negatives: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """The row's first ``positives`` relevant candidates (grade > 0), its first ``negatives`` others (the
    hardest, in first-stage order) and ``""``; or two empty lists and the reason the row gives no example:
    ``no_positive``, or ``no_negative`` when negatives are asked for (Rank-R1, ERank and Retro* all pair
    labelled positives with the first-stage's unlabelled candidates)."""
    grades = labels_to_qrels(row.get("labels") or [])
    relevant = [c for c in row["candidates"] if grades.get(c["doc_id"], 0) > 0]
    others = [c for c in row["candidates"] if grades.get(c["doc_id"], 0) <= 0]
    if not relevant:
        return [], [], "no_positive"
    if negatives and not others:
        return [], [], "no_negative"
    return relevant[:positives], others[:negatives], ""


def check_at_least_one(task: Any, *options: str) -> None:
    """A one-line ``ValueError`` for the first of ``task``'s ``options`` below 1."""
    for option in options:
        if getattr(task, option) < 1:
            raise ValueError(f"task_args: {task.name} {option} must be >= 1, got {getattr(task, option)}")


class RankingTask:
    """What the reranking tasks share: they read ranking rows, train on the toy ranking corpus in smoke runs
    and keep a teacher's whole answer as the SFT target (a task with more to keep overrides
    :meth:`teacher_example`)."""

    row_kind: ClassVar[str] = "ranking"

    def teacher_example(
        self, example: Mapping[str, Any], text: str, value: Any, values: Sequence[Any]
    ) -> dict[str, Any]:
        """The example with the teacher's answer as its SFT target."""
        return {**example, "completion": text.strip()}

    def toy_splits(self, num_train: int, num_heldout: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
        """Toy ranking rows (:mod:`tasks.toy`) for training and held-out queries."""
        return make_toy_splits(num_train, num_heldout, seed=seed)
