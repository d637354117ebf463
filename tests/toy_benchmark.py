"""A toy benchmark on disk (corpus, topics, qrels, first-stage run) and a tiny model that reads it.

The queries and passages are :mod:`tasks.toy`'s (relevance = number of query words a passage
contains), written in the BEIR / TREC formats ``rankrl eval`` reads, with the candidates' random order as
the first-stage ranking. Tests, ``benchmarks/eval_batching.py`` and the docs' example use it, so an
evaluation runs end to end offline in seconds.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from core.tiny import TinyModelSpec, build_tiny_model
from tasks.listwise import ListwiseTask
from tasks.toy import ToySpec, split_queries, toy_example, toy_vocabulary

SMALL_MODEL = TinyModelSpec(vocab_size=400, hidden_size=64, num_hidden_layers=1, num_attention_heads=4)


@dataclass(frozen=True)
class ToyBenchmark:
    """Paths of a toy benchmark folder."""

    folder: Path
    corpus: Path
    topics: Path
    qrels: Path
    run: Path


def write_toy_benchmark(
    folder: str | Path, num_queries: int, num_candidates: int, seed: int = 0
) -> ToyBenchmark:
    """Write ``num_queries`` toy queries with ``num_candidates`` first-stage candidates each."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = ToySpec(min_candidates=num_candidates, max_candidates=num_candidates)
    words, (queries, _) = toy_vocabulary(spec.num_words, seed), split_queries(spec, seed)
    rng = random.Random(seed)
    rows = [toy_example(rng, queries[i % len(queries)], words, spec, f"q{i}") for i in range(num_queries)]
    paths = ToyBenchmark(
        folder, folder / "corpus.jsonl", folder / "topics.tsv", folder / "qrels.txt", folder / "run.txt"
    )
    with paths.corpus.open("w") as corpus, paths.run.open("w") as run, paths.qrels.open("w") as qrels:
        for row in rows:
            for rank, candidate in enumerate(row["candidates"], start=1):
                corpus.write(
                    json.dumps({"_id": candidate["doc_id"], "title": "", "text": candidate["text"]}) + "\n"
                )
                run.write(
                    f"{row['query_id']} Q0 {candidate['doc_id']} {rank} {num_candidates - rank + 1} toy\n"
                )
            for label in row["labels"]:
                qrels.write(f"{row['query_id']} 0 {label['doc_id']} {label['relevance']}\n")
    paths.topics.write_text("".join(f"{row['query_id']}\t{row['query']}\n" for row in rows))
    return paths


def build_toy_model(folder: str | Path, benchmark: ToyBenchmark, spec: TinyModelSpec = SMALL_MODEL) -> Path:
    """A tiny untrained model whose tokenizer knows the benchmark's words and ReasonRank's prompt phrases."""
    texts = benchmark.corpus.read_text().splitlines() + benchmark.topics.read_text().splitlines()
    texts += ["<think>x</think>\n<answer>[2] > [1]</answer>", "<answer>[3]</answer> <score>42</score>"] * 10
    return build_tiny_model(folder, texts, spec, phrases=ListwiseTask().template_phrases())
