"""Inputs of ``rankrl eval``: a first-stage run with topics and a corpus, or rank_llm requests, plus qrels.

Everything is read through :mod:`core.sources`, so files mean the same here as in data synthesis. The
first-stage run is read line by line here because a bad line may be skipped: each problem below is a
one-line :class:`core.data.DataError` naming the file and 1-based line, or, with ``skip_missing``, the
line (or topic) is dropped and counted under its kind in the manifest:

- ``malformed_lines``: not 6 fields; ``bad_scores``: a score that is not a finite number;
- ``docs_missing_from_corpus``; ``topics_missing_from_qrels``; ``topics_missing_text`` (not in the topics);
- ``duplicate_lines``: a second line for the same (query, document); the first one is kept.

An empty run (or one left empty after skipping) is always an error. Each query's first-stage order is the
run's trec_eval order (score descending, then doc id descending) or the requests' hit order; its top
``depth`` candidates are reranked and the rest form its *tail*, kept in that order.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.data import DataError
from core.sources import (
    _lines,
    doc_text,
    ranking_row,
    read_beir,
    read_corpus,
    read_qrels_file,
    read_queries,
    read_rankllm_requests,
)
from core.trec import rank_by_score

Scores = dict[str, dict[str, float]]


@dataclass
class EvalInputs:
    """Ranking rows to rerank (each query's top ``depth``), the first-stage scores, the qrels (None: no
    metrics), file checksums, the counts of skipped input by kind, and each query's tail: its candidates below
    ``depth`` (``{"doc_id", "text"}``, first-stage order)."""

    rows: list[dict[str, Any]]
    first_stage: Scores
    qrels: dict[str, dict[str, int]] | None
    checksums: dict[str, str] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    tails: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def full_rows(self) -> list[dict[str, Any]]:
        """The rows with every first-stage candidate: the top ``depth``, then the tail."""
        return [
            {**row, "candidates": [*row["candidates"], *self.tails.get(row["query_id"], [])]}
            for row in self.rows
        ]


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_inputs(config: Any) -> EvalInputs:
    """Read what ``config`` (an :class:`evaluation.config.EvalConfig`) names."""
    if config.requests:
        return _from_requests(config)
    if not config.run or not config.corpus:
        raise DataError("eval: give 'requests' (rank_llm JSON) or 'run' and 'corpus' (with 'topics')")
    corpus, queries, qrels = _corpus_queries_qrels(config)
    skipped: Counter = Counter()
    scores = read_first_stage(config.run, corpus, queries, qrels, config.skip_missing, skipped)
    rows, tails = [], {}
    for qid, doc_scores in scores.items():
        ranked = rank_by_score(doc_scores)
        top = [(d, doc_text(corpus[d])) for d in ranked[: config.depth]]
        rows.append(ranking_row(qid, queries[qid], top, qrels))
        tails[qid] = [{"doc_id": d, "text": doc_text(corpus[d])} for d in ranked[config.depth :]]
    checksums = {
        role: sha256(getattr(config, role)) for role in ("run", "qrels", "topics") if _file(config, role)
    }
    return EvalInputs(rows, scores, qrels, checksums, skipped, tails)


def _file(config: Any, role: str) -> bool:
    value = getattr(config, role)
    return bool(value) and Path(value).is_file()


def _corpus_queries_qrels(config: Any) -> tuple[dict, dict, dict | None]:
    """Corpus, topics and qrels from a BEIR folder, overridden by the explicit ``topics`` / ``qrels``."""
    queries = read_queries(config.topics) if config.topics else None
    qrels = read_qrels_file(config.qrels) if config.qrels else None
    if Path(config.corpus).is_dir():
        corpus, folder_queries, folder_qrels = read_beir(config.corpus)
        return corpus, queries or folder_queries, qrels if config.qrels else folder_qrels
    if queries is None:
        raise DataError("eval: 'topics' is required when 'corpus' is a file rather than a BEIR folder")
    return read_corpus(config.corpus), queries, qrels


def read_first_stage(
    path: str | Path,
    corpus: Mapping[str, Any],
    queries: Mapping[str, str],
    qrels: Mapping[str, Any] | None,
    skip: bool,
    skipped: Counter,
) -> Scores:
    """``{qid: {doc_id: score}}`` from a TREC run, every line checked (see the module docstring)."""
    scores: Scores = {}
    for number, line in _lines(path):
        fields = line.split()
        problem = _line_problem(fields, corpus, queries, qrels, scores)
        if problem is None:
            scores.setdefault(fields[0], {})[fields[2]] = float(fields[4])
        elif skip:
            skipped[problem[0]] += 1
        else:
            raise DataError(f"{path}:{number}: {problem[1]}")
    if not scores:
        raise DataError(f"{path}: empty run" + (" after skipping bad lines" if skipped else ""))
    return scores


def _line_problem(
    fields: list[str],
    corpus: Mapping[str, Any],
    queries: Mapping[str, str],
    qrels: Mapping[str, Any] | None,
    scores: Scores,
) -> tuple[str, str] | None:
    """``(kind, message)`` of the first problem of one run line, or None for a good line."""
    if len(fields) != 6:
        return "malformed_lines", f"expected 6 fields 'qid Q0 docid rank score tag', got {len(fields)}"
    qid, _, doc_id, _, score, _ = fields
    if not _finite(score):
        return "bad_scores", f"score {score!r} is not a finite number"
    if doc_id not in corpus:
        return "docs_missing_from_corpus", f"document {doc_id!r} is not in the corpus"
    if qid not in queries:
        return "topics_missing_text", f"topic {qid!r} is not among the topics"
    if qrels is not None and qid not in qrels:
        return "topics_missing_from_qrels", f"topic {qid!r} is not in the qrels"
    if doc_id in scores.get(qid, {}):
        return "duplicate_lines", f"duplicate line for ({qid!r}, {doc_id!r})"
    return None


def _finite(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _from_requests(config: Any) -> EvalInputs:
    """Rows and first-stage scores from rank_llm requests; topics without qrels skipped if asked."""
    qrels = read_qrels_file(config.qrels) if config.qrels else None
    rows = read_rankllm_requests(config.requests, None if config.skip_missing else qrels)
    skipped: Counter = Counter()
    if qrels is not None:
        kept = [row for row in rows if row["query_id"] in qrels]
        skipped["topics_missing_from_qrels"] = len(rows) - len(kept)
        rows = kept
    if not rows:
        raise DataError(f"{config.requests}: no request left to rerank")
    tails = {}
    for row in rows:
        tails[row["query_id"]] = row["candidates"][config.depth :]
        row["candidates"] = row["candidates"][: config.depth]
        kept_ids = {c["doc_id"] for c in row["candidates"]}
        row["labels"] = [label for label in row["labels"] if label["doc_id"] in kept_ids]
    checksums = {"requests": sha256(config.requests), **({"qrels": sha256(config.qrels)} if qrels else {})}
    return EvalInputs(rows, _request_scores(config.requests), qrels, checksums, +skipped, tails)


def _request_scores(path: str | Path) -> Scores:
    """First-stage scores of rank_llm hits (already validated by the reader; a missing score is 0)."""
    requests = json.loads(Path(path).read_text(encoding="utf-8"))
    return {
        str(request["hits"][0]["qid"]): {
            str(hit["docid"]): float(hit.get("score", 0.0)) for hit in request["hits"]
        }
        for request in requests
    }
