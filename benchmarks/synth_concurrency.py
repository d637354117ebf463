"""Synthesis throughput: concurrent teacher requests vs sequential ones, and BM25 mining of 100k passages.

1. The endpoint teacher (:class:`data_synth.teachers.OpenAITeacher`) against the local test server
   (tests/fault_server.py, in its own process as an endpoint would be) adding 200 ms to every request:
   requests per second at concurrency 1 and at concurrency 32, and their ratio (target: at least 25x).
   Every response is also written to an fsync'd response cache, as in a real run.
2. :func:`data_synth.mining.mine_candidates` over 100,000 synthetic passages (30 words each from a
   20,000-word Zipf vocabulary) for 1,000 queries, top 20 (target: under 60 s on 2 cores).

Run: ``PYTHONPATH=. python benchmarks/synth_concurrency.py [--requests 320] [--passages 100000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.generation import Sampling
from data_synth.cache import ResponseCache
from data_synth.mining import mine_candidates
from data_synth.teachers import OpenAITeacher, TeacherCall

LATENCY_S = 0.2


def requests_per_second(base_url: str, concurrency: int, count: int, cache_path: Path) -> float:
    """Send ``count`` distinct requests at ``concurrency``; requests per second, caching each answer."""
    teacher = OpenAITeacher("toy", base_url, None, Sampling(), concurrency=concurrency, timeout_s=30)
    requests = [
        TeacherCall(f"c{concurrency}-{i}", [{"role": "user", "content": f"What is {i} + 1?"}], 0)
        for i in range(count)
    ]
    with ResponseCache(cache_path) as cache:

        def on_done(request: TeacherCall, completion) -> None:
            cache.append(
                {
                    "key": request.key,
                    "example_id": request.key,
                    "teacher_id": "toy",
                    "prompt_hash": "",
                    "sample_index": 0,
                    "text": completion.text,
                }
            )

        start = time.perf_counter()
        asyncio.run(teacher.generate(requests, on_done))
        return count / (time.perf_counter() - start)


def concurrency_benchmark(total: int) -> None:
    command = [sys.executable, "-m", "tests.fault_server", "--latency", str(LATENCY_S)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        base_url = server.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as folder:
            sequential = requests_per_second(base_url, 1, 20, Path(folder) / "sequential.jsonl")
            concurrent = requests_per_second(base_url, 32, total, Path(folder) / "concurrent.jsonl")
    finally:
        server.kill()
        server.wait()
    ratio = concurrent / sequential
    print(
        f"teacher at {LATENCY_S * 1000:.0f} ms latency: sequential {sequential:.2f} req/s, "
        f"concurrency 32 {concurrent:.1f} req/s ({total} requests), ratio {ratio:.1f}x "
        f"({'meets' if ratio >= 25 else 'MISSES'} the 25x target)"
    )


def synthetic_corpus(passages: int, seed: int = 0) -> tuple[dict, dict]:
    """``passages`` documents of 30 Zipf-distributed words and 1,000 four-word queries."""
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(20_000)]
    weights = [1.0 / (rank + 1) for rank in range(len(vocabulary))]
    words = rng.choices(vocabulary, weights, k=passages * 30)
    corpus = {f"d{i}": {"title": "", "text": " ".join(words[i * 30 : (i + 1) * 30])} for i in range(passages)}
    queries = {f"q{i}": " ".join(rng.choices(vocabulary[:5000], k=4)) for i in range(1000)}
    return corpus, queries


def mining_benchmark(passages: int) -> None:
    corpus, queries = synthetic_corpus(passages)
    start = time.perf_counter()
    rows = mine_candidates(corpus, queries, k=20)
    seconds = time.perf_counter() - start
    print(
        f"BM25 mining: {passages:,} passages, {len(rows):,} queries x top 20 in {seconds:.1f} s "
        f"({'meets' if seconds < 60 else 'MISSES'} the 60 s target)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=320, help="requests at concurrency 32")
    parser.add_argument("--passages", type=int, default=100_000, help="passages to index and mine")
    args = parser.parse_args()
    concurrency_benchmark(args.requests)
    mining_benchmark(args.passages)


if __name__ == "__main__":
    main()
