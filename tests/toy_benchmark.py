"""A toy benchmark on disk (corpus, topics, qrels, first-stage run) and a tiny model that reads it.

The queries and passages are :mod:`tasks.toy`'s (relevance = number of query words a passage
contains), written in the BEIR / TREC formats ``rankrl eval`` reads, with the candidates' random order as
the first-stage ranking. Tests, ``benchmarks/eval_batching.py`` and the docs' example use it, so an
evaluation runs end to end offline in seconds.
"""

from __future__ import annotations

import random
from pathlib import Path

from core.benchmark_files import BenchmarkFiles, write_benchmark
from core.tiny import TinyModelSpec, build_tiny_model
from tasks.listwise import ListwiseTask
from tasks.toy import ToySpec, split_queries, toy_example, toy_vocabulary

SMALL_MODEL = TinyModelSpec(vocab_size=400, hidden_size=64, num_hidden_layers=1, num_attention_heads=4)


def write_toy_benchmark(
    folder: str | Path, num_queries: int, num_candidates: int, seed: int = 0
) -> BenchmarkFiles:
    """Write ``num_queries`` toy queries with ``num_candidates`` first-stage candidates each."""
    spec = ToySpec(min_candidates=num_candidates, max_candidates=num_candidates)
    words, (queries, _) = toy_vocabulary(spec.num_words, seed), split_queries(spec, seed)
    rng = random.Random(seed)
    rows = [toy_example(rng, queries[i % len(queries)], words, spec, f"q{i}") for i in range(num_queries)]
    return write_benchmark(rows, folder, tag="toy")


def build_toy_model(folder: str | Path, benchmark: BenchmarkFiles, spec: TinyModelSpec = SMALL_MODEL) -> Path:
    """A tiny untrained model whose tokenizer knows the benchmark's words and ReasonRank's prompt phrases."""
    texts = benchmark.corpus.read_text().splitlines() + benchmark.topics.read_text().splitlines()
    texts += ["<think>x</think>\n<answer>[2] > [1]</answer>", "<answer>[3]</answer> <score>42</score>"] * 10
    return build_tiny_model(folder, texts, spec, phrases=ListwiseTask().template_phrases())
