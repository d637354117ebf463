"""What ``rankrl eval`` writes: the TREC run, rank_llm JSON results, metrics and per-query metrics.

- ``run.trec``: ``qid Q0 docid rank score tag``; the score column is n, n-1, ..., 1 for a query's n documents
  (the reranked top ``depth``, then, with ``keep_tail``, the first-stage tail) so that trec_eval, pytrec_eval
  or any reader that sorts by score reproduces the ranking exactly (the strategy's own scores, which may tie,
  are in the JSON results).
- ``results.json``: rank_llm's request format, best first, readable back by
  :func:`core.sources.read_rankllm_requests` (e.g. to rerank the top 30 again):
  ``[{"query": text, "hits": [{"content", "qid", "docid", "rank", "score"}]}]``.
- metrics: trec_eval conventions through :func:`rewards.metrics.evaluate_batch` (linear-gain nDCG, binary
  measures at ``relevance_threshold``), averaged over **every query in the qrels** (trec_eval ``-c``: a qrels
  query missing from the run scores 0).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rewards.metrics import evaluate_batch

PerQuery = dict[str, dict[str, float]]


def write_trec_run(path: str | Path, rankings: Mapping[str, Sequence[str]], tag: str) -> None:
    """Write ``{qid: [doc_id, ...]}`` (best first) as a TREC run with rank-based scores."""
    with open(path, "w", encoding="utf-8") as handle:
        for qid, doc_ids in rankings.items():
            for rank, doc_id in enumerate(doc_ids, start=1):
                handle.write(f"{qid} Q0 {doc_id} {rank} {len(doc_ids) - rank + 1} {tag}\n")


def write_rankllm_json(
    path: str | Path,
    rows: Sequence[Mapping[str, Any]],
    rankings: Mapping[str, Sequence[str]],
    scores: Mapping[str, Sequence[float] | None],
) -> None:
    """Write each row's ranked candidates (``rankings``, texts from ``rows``) in rank_llm's request format."""
    requests = []
    for row in rows:
        qid, texts = row["query_id"], {c["doc_id"]: c["text"] for c in row["candidates"]}
        doc_ids, doc_scores = rankings[qid], scores.get(qid)
        hits = [
            {
                "content": texts[doc_id],
                "qid": qid,
                "docid": doc_id,
                "rank": rank,
                "score": float(doc_scores[rank - 1]) if doc_scores else float(len(doc_ids) - rank + 1),
            }
            for rank, doc_id in enumerate(doc_ids, start=1)
        ]
        requests.append({"query": row["query"], "hits": hits})
    Path(path).write_text(json.dumps(requests, indent=1), encoding="utf-8")


def per_query_metrics(
    rankings: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    measures: Sequence[str],
    threshold: int = 1,
) -> PerQuery:
    """``{qid: {measure: value}}`` for every qrels query (0 for queries the run lacks)."""
    qids = sorted(qrels)
    values = evaluate_batch(
        [list(rankings.get(q, [])) for q in qids], [qrels[q] for q in qids], measures, threshold
    )
    return {qid: {m: float(values[m][i]) for m in measures} for i, qid in enumerate(qids)}


def mean_metrics(per_query: PerQuery, measures: Sequence[str]) -> dict[str, float]:
    """Each measure's mean over the queries of ``per_query``."""
    return {
        m: float(np.mean([values[m] for values in per_query.values()])) if per_query else 0.0
        for m in measures
    }


def write_per_query_csv(path: str | Path, per_query: PerQuery, cost: Mapping[str, Mapping[str, Any]]) -> None:
    """One row per qrels query: its metrics, then its cost columns (empty for a query not reranked)."""
    measures = list(next(iter(per_query.values()), {}))
    cost_columns = ["prompts", "generated_tokens", "latency_s", "fallbacks", "repairs"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["qid", *measures, *cost_columns])
        for qid, values in per_query.items():
            spent = cost.get(qid, {})
            writer.writerow(
                [qid, *(f"{values[m]:.6f}" for m in measures), *(spent.get(c, "") for c in cost_columns)]
            )


def format_table(columns: Mapping[str, Mapping[str, float]], extra: Mapping[str, str] | None = None) -> str:
    """A plain-text table: one row per measure, one column per run (``columns[run][measure]``)."""
    names = list(columns)
    measures = list(next(iter(columns.values()), {}))
    width = max([len(m) for m in measures] + [len("measure")])
    header = f"{'measure':<{width}}  " + "  ".join(f"{name:>12}" for name in names)
    lines = [header, "-" * len(header)]
    lines += [f"{m:<{width}}  " + "  ".join(f"{columns[name][m]:>12.4f}" for name in names) for m in measures]
    lines += [f"{key:<{width}}  {value}" for key, value in (extra or {}).items()]
    return "\n".join(lines)
