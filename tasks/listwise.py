"""Listwise reranking in ReasonRank's format (arXiv 2508.07050 Fig. 12; code rerank/rank_listwise_os_llm.py).

The model sees numbered passages ``[1]..[n]`` between a prefix and a suffix that both name the query, and
answers ``<think>...</think><answer>[3] > [1] > ...</answer>``. An example is a ranking row cut to its first
``list_size`` candidates (ReasonRank §4.1: 20); the SFT target comes from the teacher order when there is
one, else from the labels; GRPO scores with ReasonRank's multi-view reward; evaluation slides a window over
the first-stage list (:mod:`tasks.sliding_window`), parsing each answer leniently so every query gets a
full permutation of its candidates. Synthesis asks the teacher for a strict permutation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from core.data import labels_to_qrels
from core.generation import Messages, Sampling
from tasks.base import Parsed, RankingTask
from tasks.parsers import MODES, parse_permutation, parse_think_answer
from tasks.strategy import StrategyOptions

SYSTEM_PROMPT = (
    "You are RankLLM, an intelligent assistant that can rank passages based on their relevance to the query. "
    "Given a query and a passage list, you first thinks about the reasoning process in the mind and then "
    "provides the answer (i.e., the reranked passage list). The reasoning process and answer are enclosed "
    "within <think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process here "
    "</think> <answer> answer here </answer>."
)
PREFIX_TEMPLATE = (
    "I will provide you with {num} passages, each indicated by a numerical identifier []. "
    "Rank the passages based on their relevance to the search query: {query}."
)
SUFFIX_TEMPLATE = (
    "Search Query: {query}.\nRank the {num} passages above based on their relevance to the search query. "
    "All the passages should be included and listed using identifiers, in descending order of relevance. "
    "The format of the answer should be [] > [], e.g., [2] > [1]."
)
_BRACKETED_NUMBER = re.compile(r"\[(\d+)\]")


def _escape_ids(text: str) -> str:
    """Rewrite ``[n]`` inside passages or queries to ``(n)`` so it cannot be read as a passage identifier."""
    return _BRACKETED_NUMBER.sub(r"(\1)", " ".join(text.split()))


@dataclass(frozen=True)
class ListwiseTask(RankingTask):
    """Prompt builder, SFT target and inference parser for listwise reranking.

    ``answer_mode`` is the parse mode a clean answer must pass (``strict``: a full permutation, as
    ReasonRank's reward demands; ``partial``: valid ids, the rest implied); inference always ranks with
    the ``lenient`` repair and reports whether the answer was clean.
    """

    use_system_prompt: bool = True
    max_passage_words: int = 300
    answer_mode: str = "strict"
    list_size: int = 20

    name: ClassVar[str] = "listwise"
    summary: ClassVar[str] = "ReasonRank: order n numbered passages, <answer>[3] > [1] > ...</answer>"
    agreement: ClassVar[str] = "first"

    def __post_init__(self) -> None:
        if self.answer_mode not in MODES:
            expected = ", ".join(MODES)
            raise ValueError(f"task_args: answer_mode {self.answer_mode!r}; expected one of {expected}")

    def user_message(self, query: str, passages: Sequence[str]) -> str:
        """ReasonRank's user turn: prefix, one ``[i] passage`` line per candidate, suffix."""
        query, num = _escape_ids(query), len(passages)
        lines = [PREFIX_TEMPLATE.format(num=num, query=query)]
        for i, passage in enumerate(passages, start=1):
            words = _escape_ids(passage).split()[: self.max_passage_words]
            lines.append(f"[{i}] {' '.join(words)}")
        lines.append(SUFFIX_TEMPLATE.format(num=num, query=query))
        return "\n".join(lines)

    def template_phrases(self, max_identifiers: int = 20) -> list[str]:
        """The prompt's constant stretches and the identifiers ``[1]..[max_identifiers]``.

        A tiny tokenizer holds each as one token, so a from-scratch model reads an identifier as one symbol
        and spends its compute on the passages rather than on the fixed instruction.
        """
        templates = [PREFIX_TEMPLATE, SUFFIX_TEMPLATE] + ([SYSTEM_PROMPT] if self.use_system_prompt else [])
        pieces = (t.format(num="\0", query="\0").split("\0") for t in templates)
        phrases = {piece.rstrip(" ") for parts in pieces for piece in parts if len(piece.strip()) > 1}
        return sorted(phrases) + [f"[{i}]" for i in range(1, max_identifiers + 1)]

    @property
    def default_rewards(self) -> tuple[Any, ...]:
        """ReasonRank's multi-view reward, parsing answers with this task's ``answer_mode``."""
        return ({"name": "reasonrank", "args": {"mode": self.answer_mode}},)

    def examples(self, row: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """One example per row: its first ``list_size`` candidates and their labels."""
        candidates = list(row["candidates"][: self.list_size])
        kept = {candidate["doc_id"] for candidate in candidates}
        labels = [label for label in row["labels"] if label["doc_id"] in kept]
        teacher_order = [doc_id for doc_id in row.get("teacher_order") or [] if doc_id in kept]
        example = {**row, "candidates": candidates, "labels": labels, "teacher_order": teacher_order}
        return [{**example, "task": self.name, "example_id": str(row["query_id"])}], ""

    def prompt(self, example: Mapping[str, Any]) -> Messages:
        """Chat messages for one ranking example."""
        passages = [candidate["text"] for candidate in example["candidates"]]
        messages = [{"role": "user", "content": self.user_message(example["query"], passages)}]
        if self.use_system_prompt:
            messages.insert(0, {"role": "system", "content": SYSTEM_PROMPT})
        return messages

    def target(self, example: Mapping[str, Any]) -> str:
        """SFT completion: the teacher's reasoning and order, or the relevant passages by grade.

        Without a teacher order the labels only order the relevant passages (every unlabelled passage ties
        at 0), so the target lists just those and a ``partial``/``lenient`` parse appends the rest in order;
        under ``strict`` (a full permutation) the rest follow in their given order, so the target parses.
        """
        if example.get("completion"):
            return example["completion"]
        doc_ids = [candidate["doc_id"] for candidate in example["candidates"]]
        order = list(example.get("teacher_order") or [])
        if not order:
            grades = labels_to_qrels(example["labels"])
            order = sorted((d for d in doc_ids if grades.get(d, 0) > 0), key=lambda d: -grades[d])
            if self.answer_mode == "strict":
                order += [doc_id for doc_id in doc_ids if grades.get(doc_id, 0) <= 0]
        position = {doc_id: i for i, doc_id in enumerate(doc_ids, start=1)}
        answer = " > ".join(f"[{position[doc_id]}]" for doc_id in order)
        return f"<think>{example.get('reasoning') or ''}</think>\n<answer>{answer}</answer>"

    def parse(self, example: Mapping[str, Any], text: str) -> Parsed:
        """The doc ids best first of an answer that passes ``answer_mode``, or the reason it does not."""
        parsed = parse_think_answer(text)
        if not parsed.ok:
            return Parsed(reason=parsed.reason)
        permutation = parse_permutation(parsed.answer, len(example["candidates"]), mode=self.answer_mode)
        if permutation.order is None:
            return Parsed(reason=permutation.reason)
        doc_ids = [candidate["doc_id"] for candidate in example["candidates"]]
        return Parsed(tuple(doc_ids[i] for i in permutation.order))

    def reward_columns(self, example: Mapping[str, Any]) -> dict[str, Any]:
        """Nothing beyond the example: ReasonRank's rewards read ``candidates``, ``labels`` and
        ``teacher_order``."""
        return {}

    def strategy(self, options: StrategyOptions) -> Any:
        """The sliding window over the first-stage list (ReasonRank §3: window 20, step 10)."""
        from tasks.sliding_window import SlidingWindow

        sampling = options.sampling(Sampling(max_new_tokens=1024))
        return SlidingWindow(options.window, options.step, options.passes, options.parse, sampling, self)

    def accept(self, example: Mapping[str, Any], value: Any) -> str | None:
        """Any strict permutation; ReasonRank's self-consistency filter is synthesis's
        (``data_synth.filters``)."""
        return None

    def teacher_example(
        self, example: Mapping[str, Any], text: str, value: Any, values: Sequence[Any]
    ) -> dict[str, Any]:
        """The example with the teacher's order and reasoning (the target is rebuilt from them)."""
        reasoning = parse_think_answer(text).think.strip()
        return {**example, "teacher_order": list(value), "reasoning": reasoning, "completion": ""}

    def rank(self, example: Mapping[str, Any], completion: str) -> tuple[list[str], bool]:
        """Doc ids best first from a completion (lenient repair) and whether it parsed without repair."""
        doc_ids = [candidate["doc_id"] for candidate in example["candidates"]]
        parsed = parse_think_answer(completion)
        answer = parsed.answer if parsed.ok else completion
        repaired = parse_permutation(answer, len(doc_ids), mode="lenient")
        clean = parsed.ok and parse_permutation(answer, len(doc_ids), mode=self.answer_mode).valid
        return [doc_ids[i] for i in repaired.order], clean
