"""Filters for synthesized data: self-consistency, answer verification and n-gram decontamination.

- :func:`self_consistency_filter` is ReasonRank's filter (arXiv 2508.07050 §4.1): keep a row when nDCG@10 of
  its ``teacher_order`` against its own ``labels`` is at least ``alpha`` (0.4 in the paper, grid over
  [0.1, 0.7]). nDCG comes from :func:`rewards.metrics.ndcg_at_k` (trec_eval's linear gain).
- :func:`verify_answers` does normalised exact match for reasoning data with
  :func:`tasks.answers.answers_match` (the math task and its reward use the same answer extraction).
- :func:`decontaminate` drops training rows sharing an n-gram (``n=13``, as in GPT-3's decontamination) of
  lower-cased word tokens with any evaluation topic and reports which row overlapped which topic. A text
  shorter than ``n`` words counts as one n-gram of its whole length, so a short query is caught when it
  equals a short topic; a longer text only through a shared n-gram.

These are hand-written because each is a few lines over the project's own metric code, and the libraries
that offer them (e.g. ``lm-eval``'s decontamination) bring large dependency trees.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from core.data import labels_to_qrels
from rewards.metrics import ndcg_at_k
from tasks.answers import answers_match, final_answer


@dataclass
class FilterStats:
    """How many rows a filter kept and dropped, with a count per drop reason."""

    kept: int = 0
    dropped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def drop(self, reason: str) -> None:
        self.dropped += 1
        self.reasons[reason] += 1

    def as_dict(self) -> dict:
        return {"kept": self.kept, "dropped": self.dropped, "reasons": dict(self.reasons)}


def consistency_problem(row: Mapping, alpha: float, k: int) -> str | None:
    """The reason to drop ``row``, or ``None`` to keep it."""
    if not row.get("teacher_order"):
        return "no_teacher_order"
    qrels = labels_to_qrels(row.get("labels") or [])
    if not any(grade > 0 for grade in qrels.values()):
        return "no_relevant_label"
    if ndcg_at_k(row["teacher_order"], qrels, k) < alpha:
        return "ndcg_below_alpha"
    return None


def self_consistency_filter(
    rows: Iterable[Mapping], alpha: float = 0.4, k: int = 10
) -> tuple[list[Mapping], FilterStats]:
    """Keep rows whose teacher order scores nDCG@``k`` >= ``alpha`` against their labels (ReasonRank).

    Drop reasons: ``no_teacher_order``, ``no_relevant_label`` (nDCG undefined), ``ndcg_below_alpha``.
    """
    kept, stats = [], FilterStats()
    for row in rows:
        reason = consistency_problem(row, alpha, k)
        if reason is None:
            kept.append(row)
            stats.kept += 1
        else:
            stats.drop(reason)
    return kept, stats


def verify_answers(
    rows: Iterable[Mapping], predicted_field: str = "solution", reference_field: str = "answer"
) -> tuple[list[Mapping], FilterStats]:
    """Keep reasoning rows whose predicted final answer matches the reference; reasons ``no_prediction``,
    ``wrong_answer``."""
    kept, stats = [], FilterStats()
    for row in rows:
        predicted = row.get(predicted_field) or ""
        if not final_answer(predicted):
            stats.drop("no_prediction")
        elif not answers_match(predicted, row.get(reference_field) or ""):
            stats.drop("wrong_answer")
        else:
            kept.append(row)
            stats.kept += 1
    return kept, stats


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """Word n-grams of lower-cased ``\\w+`` tokens; a text shorter than ``n`` is one n-gram of itself."""
    words = re.findall(r"\w+", text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@dataclass
class DecontaminationReport:
    """Which training rows shared an n-gram with which evaluation topics."""

    n: int
    kept: int = 0
    dropped: int = 0
    overlaps: dict[str, list[str]] = field(default_factory=dict)  # row id -> topic ids

    def as_dict(self) -> dict:
        return {"n": self.n, "kept": self.kept, "dropped": self.dropped, "overlaps": self.overlaps}


def decontaminate(
    rows: Iterable[Mapping],
    topics: Mapping[str, str],
    n: int = 13,
    text_field: str = "query",
    id_field: str = "query_id",
) -> tuple[list[Mapping], DecontaminationReport]:
    """Drop rows whose ``text_field`` shares a word ``n``-gram with any topic text; report the overlaps.

    Rows without ``id_field`` are named by their 0-based position.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    index: dict[tuple[str, ...], set[str]] = {}
    for topic_id, text in topics.items():
        for gram in ngrams(text, n):
            index.setdefault(gram, set()).add(topic_id)
    kept, report = [], DecontaminationReport(n=n)
    for position, row in enumerate(rows):
        hits = set().union(*(index.get(g, set()) for g in ngrams(row.get(text_field) or "", n)))
        if hits:
            report.overlaps[str(row.get(id_field, position))] = sorted(hits)
            report.dropped += 1
        else:
            kept.append(row)
            report.kept += 1
    return kept, report
