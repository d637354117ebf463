"""Ranking rows written as a benchmark folder for ``rankrl eval``: corpus, topics, qrels, first-stage run.

The inverse of :func:`core.sources.rows_from_run` for a set of ranking rows: each row's candidates become
corpus documents and its first-stage ranking (candidate order, scores descending), its labels the qrels.
``--smoke`` evaluations and offline examples use it to evaluate a model on held-out toy rows end to end.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BenchmarkFiles:
    """Paths of a benchmark folder."""

    folder: Path
    corpus: Path
    topics: Path
    qrels: Path
    run: Path


def write_benchmark(
    rows: Iterable[Mapping[str, Any]], folder: str | Path, tag: str = "first"
) -> BenchmarkFiles:
    """Write ``rows`` as ``corpus.jsonl``, ``topics.tsv``, ``qrels.txt`` and ``run.txt`` under ``folder``;
    a document shared by several rows is written once."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = BenchmarkFiles(
        folder, folder / "corpus.jsonl", folder / "topics.tsv", folder / "qrels.txt", folder / "run.txt"
    )
    seen: set[str] = set()
    with (
        files.corpus.open("w") as corpus,
        files.topics.open("w") as topics,
        files.qrels.open("w") as qrels,
        files.run.open("w") as run,
    ):
        for row in rows:
            query_id, candidates = row["query_id"], row["candidates"]
            topics.write(f"{query_id}\t{row['query']}\n")
            for rank, candidate in enumerate(candidates, start=1):
                if candidate["doc_id"] not in seen:
                    seen.add(candidate["doc_id"])
                    record = {"_id": candidate["doc_id"], "title": "", "text": candidate["text"]}
                    corpus.write(json.dumps(record) + "\n")
                run.write(f"{query_id} Q0 {candidate['doc_id']} {rank} {len(candidates) - rank + 1} {tag}\n")
            for label in row["labels"]:
                qrels.write(f"{query_id} 0 {label['doc_id']} {label['relevance']}\n")
    return files
