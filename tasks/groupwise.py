"""Groupwise reranking in GroupRank's format (arXiv 2511.11653 §3; code AQ-MedAI/Diver
``Reranker/rerank_groupwise.py``).

The model sees a group of documents ``[1]. text`` and answers
``<reason>...</reason> <answer> ```json {"[1]": 7, "[2]": 0, ...} ``` </answer>``, one 0-10 score per
document. An example is one group: the first ``list_size`` candidates of a ranking row, shuffled with a seed
per query and cut into groups of ``group_size`` (as ``rankrl synth`` builds them). The SFT target is the
teacher's answer, or one built from the labels; GRPO scores with GroupRank's reward (Eq. 4-6: nDCG@10 +
0.2·Recall@10 + 0.1·(1 − JS(P‖Q)), see :func:`rewards.groupwise.grouprank_reward`), whose gold scores Q are
the teacher's scores, or the label scores when there is no teacher. Evaluation scores random groups with
shuffled repeats and averages each document's scores (:mod:`tasks.group_scoring`, GroupRank §3.1).
Synthesis keeps the teacher sample closest to the mean (``consensus``) and the mean of the samples' scores
as gold scores.

Choices GroupRank does not fix, documented as options or here:

- ``list_size`` 20: GroupRank pools 50 candidates per query (top-10 plus 40 random from ranks 11-200,
  §3.2); set ``list_size: 50`` to match.
- ``group_size`` 10: the released inference default; GroupRank's training groups are of sizes 5-20, mostly
  10 and 20 (§3.2), and its evaluation uses 20 (``group_size`` of the evaluation config).
- Label scores (no teacher): a document of grade g in a group whose best grade is G > 0 scores
  round(10 · g / G) (Python's round, halves to even); grade <= 0 and unjudged documents score 0, and every
  document scores 0 when G <= 0.
  This is the per-group scaling to [0, 10] GroupRank's data figure suggests (scores "10, 9.3, ... 0").
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from core.data import labels_to_qrels
from core.generation import Messages, Sampling
from tasks.base import Parsed, RankingTask, check_at_least_one
from tasks.parsers_scores import parse_group_scores
from tasks.strategy import StrategyOptions, passage_text

MAX_SCORE = 10  # GroupRank's 0-10 scale
INFERENCE_SAMPLING = Sampling(max_new_tokens=8000, temperature=0.3, top_p=0.8)  # rerank_groupwise.py
GROUPRANK_SYSTEM = (  # rerank_groupwise.py
    "Your task is to evaluate and rank documents based on how well they help answer the given "
    "query. Follow this evaluation priority:\n"
    "1. PRIMARY: Usefulness & Helpfulness - Does the document provide actionable information, "
    "solutions, or direct answers that help address the user's needs?\n"
    "2. SECONDARY: Relevance - Does the document contain information related to the query "
    "topic?\n"
    "\n"
    "Evaluation Process:\n"
    "1. First, identify the user's core intent and what kind of help they need from the query\n"
    "2. For each document, assess:\n"
    "   - How directly it addresses the user's intent\n"
    "   - What actionable information or answers it provides\n"
    "   - How much it helps solve the user's problem or need\n"
    "3. Compare documents against each other to ensure proper ranking\n"
    "4. Assign scores that reflect the relative usefulness ranking\n"
    "\n"
    "Scoring Scale (0-10):\n"
    "- 9-10: Extremely helpful, directly answers the query with actionable information\n"
    "- 7-8: Very helpful, provides substantial useful information for the query\n"
    "- 5-6: Moderately helpful, contains some useful information but incomplete\n"
    "- 3-4: Minimally helpful, limited useful information despite topic relevance\n"
    "- 1-2: Barely helpful, mentions related topics but provides little useful information\n"
    "- 0: Not helpful at all, cannot assist with answering the query\n"
)
GROUPRANK_USER = (
    "I will provide you {TOPK} documents, each indicated by a numerical identifier []. Score "
    "these documents based on their Usefulness and Relevance to the query.\n"
    "Query:\n"
    "{QUERY}\n"
    "\n"
    "Documents:\n"
    "{PASSAGES}\n"
    "\n"
    "## Final Output Format\n"
    "You must structure your response in exactly two parts: provide your brief reasoning "
    "process first, then output final scores in JSON format like below, with document IDs as "
    "string keys and integer scores as values for all {TOPK} documents. \n"
    "The reasoning process and answer are enclosed within <reason> </reason> and <answer> "
    "</answer> tags, respectively. Do NOT output anything outside the specified tags. Follow "
    "this exact format:\n"
    "<reason> \n"
    "[Analyze each document's usefulness and relevance to the query, explaining your scoring "
    "rationale]\n"
    "</reason>\n"
    "<answer> \n"
    "```json\n"
    '{{"[1]": 5, "[2]": 3, "[3]": 8}}\n'
    "``` \n"
    "</answer>\n"
)
GROUPRANK_MAX_DOC_CHARS = 3000  # rerank_groupwise.py max_doc_lens


def grouprank_messages(query: str, passages: Sequence[str]) -> Messages:
    """GroupRank's groupwise prompt: ``[i]. text`` blocks, newlines folded and text cut at 3000 chars."""
    texts = (re.sub(r"\n+", " ", text)[:GROUPRANK_MAX_DOC_CHARS] for text in passages)
    blocks = "".join(f"[{i}]. {text}\n\n" for i, text in enumerate(texts, start=1))
    user = GROUPRANK_USER.format(TOPK=len(passages), QUERY=query, PASSAGES=blocks)
    return [{"role": "system", "content": GROUPRANK_SYSTEM}, {"role": "user", "content": user}]


def mean_scores(scores: Sequence[Sequence[float] | None]) -> tuple[float, ...] | None:
    """Component-wise mean of the valid score vectors (None entries are failed samples), None if none.

    GroupRank's gold scores of a group are the mean over the teacher's samples; the vectors must have one
    length (one score per document of the group).
    """
    valid = [tuple(float(x) for x in vector) for vector in scores if vector is not None]
    if not valid:
        return None
    return tuple(sum(column) / len(valid) for column in zip(*valid, strict=True))


def label_scores(example: Mapping[str, Any]) -> list[int]:
    """0-10 scores of the example's candidates from their grades (see the module docstring)."""
    qrels = labels_to_qrels(example.get("labels") or [])
    grades = {doc_id: max(grade, 0) for doc_id, grade in qrels.items()}  # a negative grade scores 0
    doc_grades = [grades.get(candidate["doc_id"], 0) for candidate in example["candidates"]]
    top = max(doc_grades, default=0)
    if top <= 0:
        return [0] * len(doc_grades)
    return [round(MAX_SCORE * grade / top) for grade in doc_grades]


def answer_text(scores: Sequence[int], reason: str = " ") -> str:
    """A completion in GroupRank's output format scoring passage ``[i]`` with ``scores[i - 1]``."""
    scored = json.dumps({f"[{i}]": score for i, score in enumerate(scores, start=1)})
    return f"<reason>{reason}</reason>\n<answer> ```json {scored} ``` </answer>"


@dataclass(frozen=True)
class GroupwiseTask(RankingTask):
    """GroupRank's groupwise scoring: examples, prompt, target, parser, reward columns, strategy."""

    list_size: int = 20
    group_size: int = 10
    max_passage_words: int = 300
    seed: int = 0

    name: ClassVar[str] = "groupwise"
    summary: ClassVar[str] = 'GroupRank: score a group of documents 0-10 as JSON, {"[1]": 7, "[2]": 0, ...}'
    default_rewards: ClassVar[tuple[Any, ...]] = ("grouprank",)
    agreement: ClassVar[str] = "consensus"

    def __post_init__(self) -> None:
        check_at_least_one(self, "list_size", "group_size", "max_passage_words")

    def examples(self, row: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """One example per group of the row's first ``list_size`` candidates, shuffled per query."""
        pool = list(row["candidates"][: self.list_size])
        random.Random(f"{self.seed}:{row['query_id']}").shuffle(pool)
        scores = row.get("teacher_scores") or []
        teacher = dict(zip((c["doc_id"] for c in row["candidates"]), scores, strict=True)) if scores else {}
        examples = []
        for number, start in enumerate(range(0, len(pool), self.group_size)):
            group = pool[start : start + self.group_size]
            kept = {candidate["doc_id"] for candidate in group}
            example = {
                **row,
                "candidates": group,
                "labels": [label for label in row["labels"] if label["doc_id"] in kept],
                "teacher_order": [d for d in row.get("teacher_order") or [] if d in kept],
                "teacher_scores": [teacher[c["doc_id"]] for c in group] if teacher else [],
                "reasoning": "",
                "completion": "",
                "task": self.name,
                "example_id": json.dumps([row["query_id"], number]),
            }
            examples.append(example)
        return examples, ""

    def prompt(self, example: Mapping[str, Any]) -> Messages:
        """GroupRank's prompt over the group, each passage cut to ``max_passage_words`` words first."""
        texts = [passage_text(c["text"], self.max_passage_words) for c in example["candidates"]]
        return grouprank_messages(example["query"], texts)

    def target(self, example: Mapping[str, Any]) -> str:
        """The teacher's answer, else an empty reason and the label scores (:func:`label_scores`)."""
        if example.get("completion"):
            return example["completion"]
        return answer_text(label_scores(example))

    def parse(self, example: Mapping[str, Any], text: str) -> Parsed:
        """The scores in candidate order, or a reason of :func:`tasks.parsers_scores.parse_group_scores` or
        "missing_scores" (a passage without a score)."""
        size = len(example["candidates"])
        parsed = parse_group_scores(text, size)
        if parsed.scores is None:
            return Parsed(reason=parsed.reason)
        if len(parsed.scores) != size:
            return Parsed(reason="missing_scores")
        return Parsed(tuple(parsed.scores[i] for i in range(1, size + 1)))

    def reward_columns(self, example: Mapping[str, Any]) -> dict[str, Any]:
        """``gold_scores`` of the group for the JS term: the teacher's scores, else :func:`label_scores`."""
        scores = example.get("teacher_scores") or label_scores(example)
        pairs = zip(example["candidates"], scores, strict=True)
        return {"gold_scores": [{"doc_id": c["doc_id"], "score": float(score)} for c, score in pairs]}

    def strategy(self, options: StrategyOptions) -> Any:
        """Shuffled groups of ``options.group_size`` with ``options.repeats`` averaged repeats (GroupRank
        §3.1), sampling as the released inference does (temperature 0.3, top-p 0.8, 8000 tokens)."""
        from tasks.group_scoring import Groupwise

        sampling = options.sampling(INFERENCE_SAMPLING)
        return Groupwise(
            options.group_size, options.repeats, options.shuffle_groups, options.seed, sampling, self
        )

    def accept(self, example: Mapping[str, Any], value: Any) -> str | None:
        """Every complete score vector (GroupRank filters nothing per group)."""
        return None

    def teacher_example(
        self, example: Mapping[str, Any], text: str, value: Any, values: Sequence[Any]
    ) -> dict[str, Any]:
        """The example with the chosen answer and the mean of the samples' scores as ``teacher_scores``."""
        means = mean_scores(values) or tuple(value)
        return {**example, "completion": text.strip(), "teacher_scores": list(means)}

    def template_phrases(self, max_identifiers: int = 20) -> list[str]:
        """The system prompt, the user template's constant stretches, the answer's tags and the
        identifiers ``[1]..[max_identifiers]``, each kept whole by a tiny test tokenizer."""
        pieces = GROUPRANK_USER.format(TOPK="\0", QUERY="\0", PASSAGES="\0").split("\0")
        phrases = {piece.strip(" ") for piece in pieces if len(piece.strip()) > 1}
        phrases |= {GROUPRANK_SYSTEM, "<reason>", "</reason>", "```json"}
        return sorted(phrases) + [f"[{i}]" for i in range(1, max_identifiers + 1)]
