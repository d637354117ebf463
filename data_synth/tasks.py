"""Synthesis tasks: how source rows become teacher prompts ("units"), how answers are read and agreed on,
and which SFT and RL rows a kept unit gives.

Every task has the same shape (:class:`SynthTask`): ``units(rows)`` builds the prompts and counts the rows it
could not use; ``parse(unit, text)`` reads one teacher sample with the task's parser from :mod:`rewards`
(``(value, "")`` or ``(None, reason)``, never raising); ``agreement`` says how the samples of one unit are
combined (``first`` valid, ``majority`` vote, ``consensus`` pick closest to the mean, see
:mod:`data_synth.agreement`); ``accept(unit, value)`` is the task's own filter (ReasonRank's self-consistency,
Rank-R1's gold label, the math reference answer); ``rows(...)`` gives the SFT row (chat ``messages``) and
the RL row (the columns the task's rewards read).

Per-paper selection, as each paper builds its data: listwise keeps the first ``list_size`` candidates
(ReasonRank, arXiv 2508.07050 §4.1: 20); setwise and the pointwise tasks take ``positives_per_query`` labelled
positives and the first ``negatives_per_query`` unlabelled candidates (hardest first: Rank-R1 1 + 19, its
``create_dataset.py``; ERank 1 + 19, arXiv 2509.00520 §3.2; Retro* 1 + 1, arXiv 2509.24869);
groupwise shuffles the first ``list_size`` candidates and cuts them into groups of ``group_size``.
Shuffles are seeded per query, so units never depend on run order.
"""

from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

from data_synth.agreement import mean_scores
from data_synth.filters import FilterStats, self_consistency_filter
from rewards.answers import normalize_answer
from rewards.listwise import read_listwise_answer
from tasks import prompts
from tasks.listwise import ListwiseTask
from tasks.parsers import parse_setwise_label, parse_think_answer
from tasks.parsers_scores import parse_group_scores, parse_int_answer, parse_score_tag


@dataclass(frozen=True)
class Unit:
    """One teacher prompt: a stable id, the student's chat messages and what the task needs later."""

    unit_id: str
    messages: prompts.Messages
    data: dict[str, Any]


@dataclass(frozen=True)
class TaskOptions:
    """The recipe fields tasks read (see :class:`data_synth.config.SynthConfig` for their help)."""

    list_size: int = 20
    group_size: int = 10
    positives_per_query: int = 1
    negatives_per_query: int = 19
    consistency_alpha: float = 0.4
    use_system_prompt: bool = True
    relevance_definition: str | None = None
    query_type: str = "query"
    doc_type: str = "document"
    seed: int = 0


class SynthTask(Protocol):
    """What the pipeline needs from a task (see the module docstring)."""

    name: str
    agreement: str

    def units(self, rows: list[dict]) -> tuple[list[Unit], FilterStats]: ...

    def parse(self, unit: Unit, text: str) -> tuple[Any, str]: ...

    def accept(self, unit: Unit, value: Any) -> str | None: ...

    def rows(self, unit: Unit, text: str, value: Any, values: list[Any]) -> tuple[dict, dict]: ...


def _grades(row: dict) -> dict[str, int]:
    return {label["doc_id"]: int(label["relevance"]) for label in row.get("labels") or []}


def _assistant(messages: prompts.Messages, text: str) -> prompts.Messages:
    return [*messages, {"role": "assistant", "content": text.strip()}]


def _positives_negatives(
    row: dict, options: TaskOptions, stats: FilterStats
) -> tuple[list[dict], list[dict]] | None:
    """The row's first labelled positives and unlabelled negatives, the row counted as kept; None, counted
    as dropped, when it has no positive or no negative."""
    grades = _grades(row)
    positives = [c for c in row["candidates"] if grades.get(c["doc_id"], 0) > 0]
    negatives = [c for c in row["candidates"] if grades.get(c["doc_id"], 0) <= 0]
    if not positives:
        stats.drop("no_positive")
    elif not negatives:
        stats.drop("no_negative")
    else:
        stats.kept += 1
        return positives[: options.positives_per_query], negatives[: options.negatives_per_query]
    return None


def _sft_rl(unit: Unit, text: str, ids: tuple[str, ...], **rl_columns: Any) -> tuple[dict, dict]:
    """The SFT row (the ``ids`` columns of the unit's data and the chat ending in the teacher's answer) and
    the RL row (the student's prompt, the unit's data and ``rl_columns``)."""
    sft = {key: unit.data[key] for key in ids}
    sft["messages"] = _assistant(unit.messages, text)
    return sft, {"prompt": unit.messages, **unit.data, **rl_columns}


@dataclass(frozen=True)
class _RowByRow(ABC):
    """What every task shares: ``units`` collects the :meth:`row_units` of each row, and a task accepts
    every parsed value unless it has a filter of its own."""

    options: TaskOptions

    def units(self, rows: list[dict]) -> tuple[list[Unit], FilterStats]:
        units, stats = [], FilterStats()
        for position, row in enumerate(rows):
            units += self.row_units(position, row, stats)
        return units, stats

    @abstractmethod
    def row_units(self, position: int, row: dict, stats: FilterStats) -> list[Unit]:
        """The units of row number ``position``, counting the row as kept or dropped in ``stats``."""

    def accept(self, unit: Unit, value: Any) -> str | None:
        return None


@dataclass(frozen=True)
class ListwiseSynth(_RowByRow):
    """ReasonRank: the teacher ranks the list with reasoning; rows kept if nDCG@10 vs labels >= alpha."""

    name = "listwise"
    agreement = "first"

    def row_units(self, position: int, row: dict, stats: FilterStats) -> list[Unit]:
        candidates = row["candidates"][: self.options.list_size]
        kept = {c["doc_id"] for c in candidates}
        data = {**row, "candidates": candidates}
        data["labels"] = [label for label in row["labels"] if label["doc_id"] in kept]
        passages = [c["text"] for c in candidates]
        messages = prompts.listwise_messages(row["query"], passages, self.options.use_system_prompt)
        stats.kept += 1
        return [Unit(row["query_id"], messages, data)]

    def parse(self, unit: Unit, text: str) -> tuple[Any, str]:
        _, permutation = read_listwise_answer(text, len(unit.data["candidates"]), "strict")
        if permutation.order is None:
            return None, permutation.reason
        doc_ids = [c["doc_id"] for c in unit.data["candidates"]]
        return (tuple(doc_ids[i] for i in permutation.order), parse_think_answer(text).think.strip()), ""

    def _ranking_row(self, unit: Unit, value: Any) -> dict:
        order, reasoning = value
        return {**unit.data, "teacher_order": list(order), "reasoning": reasoning}

    def accept(self, unit: Unit, value: Any) -> str | None:
        kept, stats = self_consistency_filter(
            [self._ranking_row(unit, value)], self.options.consistency_alpha
        )
        return None if kept else next(iter(stats.reasons))

    def rows(self, unit: Unit, text: str, value: Any, values: list[Any]) -> tuple[dict, dict]:
        ranking = self._ranking_row(unit, value)
        target = ListwiseTask(use_system_prompt=self.options.use_system_prompt).target(ranking)
        return {**ranking, "messages": _assistant(unit.messages, target)}, ranking


@dataclass(frozen=True)
class SetwiseSynth(_RowByRow):
    """Rank-R1: one positive among negatives; the majority label of the samples must be the positive's."""

    name = "setwise"
    agreement = "majority"

    def row_units(self, position: int, row: dict, stats: FilterStats) -> list[Unit]:
        selected = _positives_negatives(row, self.options, stats)
        if selected is None:
            return []
        positives, negatives = selected
        docs = [positives[0], *negatives]
        random.Random(f"{self.options.seed}:{row['query_id']}").shuffle(docs)
        gold = 1 + docs.index(positives[0])
        messages = prompts.setwise_messages(row["query"], [d["text"] for d in docs])
        data = {"query_id": row["query_id"], "candidates": docs, "gold_label": f"[{gold}]"}
        return [Unit(row["query_id"], messages, data)]

    def parse(self, unit: Unit, text: str) -> tuple[Any, str]:
        label = parse_setwise_label(text, len(unit.data["candidates"]))
        return (label.label, "") if label.valid else (None, label.reason)

    def accept(self, unit: Unit, value: Any) -> str | None:
        return None if f"[{value}]" == unit.data["gold_label"] else "wrong_label"

    def rows(self, unit: Unit, text: str, value: Any, values: list[Any]) -> tuple[dict, dict]:
        return _sft_rl(unit, text, ("query_id",))


@dataclass(frozen=True)
class PointwiseSynth(_RowByRow):
    """ERank (0-10, ``<answer>``) or Retro* (0-100 rubric, ``<score>``): one unit per (query, document),
    the training sample is the consensus pick of the teacher's samples, as both papers keep theirs."""

    name: str = "pointwise"
    agreement = "consensus"

    def row_units(self, position: int, row: dict, stats: FilterStats) -> list[Unit]:
        selected = _positives_negatives(row, self.options, stats)
        if selected is None:
            return []
        grades, units = _grades(row), []
        for doc in [*selected[0], *selected[1]]:
            data = {
                "query_id": row["query_id"],
                "doc_id": doc["doc_id"],
                "is_positive": grades.get(doc["doc_id"], 0) > 0,
                "relevance": grades.get(doc["doc_id"], 0),
            }
            unit_id = json.dumps([row["query_id"], doc["doc_id"]], ensure_ascii=False)
            units.append(Unit(unit_id, self._messages(row["query"], doc["text"]), data))
        return units

    def _messages(self, query: str, document: str) -> prompts.Messages:
        definition = self.options.relevance_definition
        if self.name == "rubric":
            return prompts.retro_messages(
                query, document, definition, self.options.query_type, self.options.doc_type
            )
        return prompts.erank_messages(query, document, definition or prompts.ERANK_INSTRUCTION)

    def parse(self, unit: Unit, text: str) -> tuple[Any, str]:
        score = parse_score_tag(text) if self.name == "rubric" else parse_int_answer(text, require_think=True)
        return (score.value, "") if score.valid else (None, score.reason)

    def rows(self, unit: Unit, text: str, value: Any, values: list[Any]) -> tuple[dict, dict]:
        return _sft_rl(unit, text, ("query_id", "doc_id"), ref_score=int(value))


@dataclass(frozen=True)
class GroupwiseSynth(_RowByRow):
    """GroupRank: the teacher scores each group of passages as JSON; gold scores are the mean over the
    samples, the SFT sample is the one closest to that mean."""

    name = "groupwise"
    agreement = "consensus"

    def row_units(self, position: int, row: dict, stats: FilterStats) -> list[Unit]:
        pool, size = list(row["candidates"][: self.options.list_size]), self.options.group_size
        random.Random(f"{self.options.seed}:{row['query_id']}").shuffle(pool)
        grades, units = _grades(row), []
        for number, start in enumerate(range(0, len(pool), size)):
            group = pool[start : start + size]
            judged = [d["doc_id"] for d in group if d["doc_id"] in grades]
            labels = [{"doc_id": doc_id, "relevance": grades[doc_id]} for doc_id in judged]
            data = {"query_id": row["query_id"], "group_id": number, "candidates": group, "labels": labels}
            messages = prompts.grouprank_messages(row["query"], [d["text"] for d in group])
            units.append(Unit(json.dumps([row["query_id"], number]), messages, data))
        stats.kept += 1
        return units

    def parse(self, unit: Unit, text: str) -> tuple[Any, str]:
        size = len(unit.data["candidates"])
        parsed = parse_group_scores(text, size)
        if parsed.scores is None:
            return None, parsed.reason
        if len(parsed.scores) != size:
            return None, "missing_scores"
        return tuple(parsed.scores[i] for i in range(1, size + 1)), ""

    def rows(self, unit: Unit, text: str, value: Any, values: list[Any]) -> tuple[dict, dict]:
        means = mean_scores(values) or ()
        pairs = zip(unit.data["candidates"], means, strict=True)
        gold = [{"doc_id": doc["doc_id"], "score": score} for doc, score in pairs]
        return _sft_rl(unit, text, ("query_id", "group_id"), gold_scores=gold)


@dataclass(frozen=True)
class MathSynth(_RowByRow):
    """Reasoning chains: the majority final answer of the samples must match the reference answer."""

    name = "math"
    agreement = "majority"

    def row_units(self, position: int, row: dict, stats: FilterStats) -> list[Unit]:
        unit_id = row.get("id") or f"row{position}"
        stats.kept += 1
        return [Unit(unit_id, prompts.math_messages(row["problem"]), {"id": unit_id, **row})]

    def parse(self, unit: Unit, text: str) -> tuple[Any, str]:
        parsed = parse_think_answer(text)
        if not parsed.ok or not parsed.answer or not parsed.answer.strip():
            return None, parsed.reason or "empty_answer"
        return normalize_answer(parsed.answer), ""

    def accept(self, unit: Unit, value: Any) -> str | None:
        return None if value == normalize_answer(unit.data["answer"]) else "wrong_answer"

    def rows(self, unit: Unit, text: str, value: Any, values: list[Any]) -> tuple[dict, dict]:
        sft = {"id": unit.data["id"], "messages": _assistant(unit.messages, text)}
        rl = {"id": unit.data["id"], "prompt": unit.messages, "problem": unit.data["problem"]}
        return sft, {**rl, "answer": unit.data["answer"]}


TASKS = ("listwise", "setwise", "pointwise", "rubric", "groupwise", "math")


def make_task(name: str, options: TaskOptions) -> SynthTask:
    """The synthesis task called ``name`` (one of :data:`TASKS`)."""
    if name not in TASKS:
        raise ValueError(f"unknown synthesis task {name!r}; expected one of {', '.join(TASKS)}")
    if name in ("pointwise", "rubric"):
        return PointwiseSynth(options, name)
    builders = {"listwise": ListwiseSynth, "setwise": SetwiseSynth, "groupwise": GroupwiseSynth}
    return builders.get(name, MathSynth)(options)
