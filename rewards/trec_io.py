"""Readers for TREC qrels and run files, with trec_eval's ordering of tied scores.

- qrels lines: ``qid iter docid grade`` (the second column is ignored).
- run lines: ``qid Q0 docid rank score tag``; the rank column is ignored, as trec_eval ignores it.

trec_eval orders a query's retrieved documents by score descending and breaks ties by docid descending
(``strcmp`` order, which for UTF-8 byte strings equals Python's ``str`` order); :func:`rank_by_score`
reproduces that ordering and ``tests/test_metrics.py`` checks it against pytrec_eval.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike


def rank_by_score(scores: Mapping[str, float]) -> list[str]:
    """Doc ids ordered the trec_eval way: score descending, then docid descending."""
    return sorted(scores, key=lambda docid: (scores[docid], docid), reverse=True)


def read_qrels(path: str | PathLike[str]) -> dict[str, dict[str, int]]:
    """Read a TREC qrels file into ``{qid: {docid: grade}}`` (a repeated judgement keeps the last grade)."""
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if fields:
                qid, _, docid, grade = fields
                qrels.setdefault(qid, {})[docid] = int(grade)
    return qrels


def read_run(path: str | PathLike[str]) -> dict[str, list[str]]:
    """Read a TREC run file into ``{qid: [docid, ...]}`` ordered by :func:`rank_by_score`.

    A docid repeated within a query keeps its last score (trec_eval rejects such runs outright).
    """
    scores: dict[str, dict[str, float]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if fields:
                qid, _, docid, _, score, _ = fields
                scores.setdefault(qid, {})[docid] = float(score)
    return {qid: rank_by_score(doc_scores) for qid, doc_scores in scores.items()}
