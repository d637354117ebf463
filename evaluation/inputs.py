"""Inputs of ``rankrl eval``: a first-stage run with topics and a corpus, or rank_llm requests, plus qrels.

Everything is read through :mod:`core.sources`, so files mean the same here as in data synthesis. The
first-stage run is checked line by line by :func:`core.sources.read_run_scores`: each problem is a one-line
:class:`core.data.DataError` naming the file and 1-based line, or, with ``skip_missing``, the line is dropped
and counted under its kind (:data:`core.sources.RUN_PROBLEMS`) in the manifest; rank_llm request topics
missing from the qrels are counted as ``topics_missing_from_qrels``.

Each query's first-stage order is the run's trec_eval order (score descending, then doc id descending) or
the requests' hit order; its top ``depth`` candidates are reranked and the rest form its *tail*, kept in that
order.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.data import DataError
from core.sources import (
    RunScores,
    doc_text,
    ranking_row,
    read_beir,
    read_corpus,
    read_qrels_file,
    read_queries,
    read_rankllm_requests,
    read_run_scores,
)
from core.trec import rank_by_score


@dataclass
class EvalInputs:
    """Ranking rows to rerank (each query's top ``depth``), the first-stage scores, the qrels (None: no
    metrics), file checksums, the counts of skipped input by kind, and each query's tail: its candidates below
    ``depth`` (``{"doc_id", "text"}``, first-stage order)."""

    rows: list[dict[str, Any]]
    first_stage: RunScores
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
    scores = read_run_scores(config.run, corpus, qrels, queries, skipped if config.skip_missing else None)
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


def _request_scores(path: str | Path) -> RunScores:
    """First-stage scores of rank_llm hits (already validated by the reader; a missing score is 0)."""
    requests = json.loads(Path(path).read_text(encoding="utf-8"))
    return {
        str(request["hits"][0]["qid"]): {
            str(hit["docid"]): float(hit.get("score", 0.0)) for hit in request["hits"]
        }
        for request in requests
    }
