"""Listwise sliding-window evaluation batched across queries against a per-query loop (issue 6 benchmark).

50 toy queries x 100 first-stage candidates, ReasonRank prompts, window 20 / step 10 (9 windows per query),
greedy decoding on rankrl's tiny model. The batched run sends the window at the same depth of every query in
one ``generate`` call (9 calls); the loop reranks one query at a time (450 calls). Both must write the same
run file; the script prints both throughputs and their ratio (target: at least 3x).

    PYTHONPATH=. python benchmarks/eval_batching.py [--queries 50] [--candidates 100] [--max-new-tokens 48]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

from core.generation import HFBackend, Sampling
from core.sources import read_corpus, read_trec
from evaluation.outputs import write_trec_run
from tasks.sliding_window import SlidingWindow
from tasks.strategy import QueryResult, rerank_rows
from tests.toy_benchmark import build_toy_model, write_toy_benchmark


def timed(label: str, rerank) -> tuple[list[QueryResult], float]:
    start = time.perf_counter()
    results = rerank()
    seconds = time.perf_counter() - start
    print(f"{label:>10}: {seconds:7.2f} s  {len(results) / seconds:6.2f} queries/s")
    return results, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=64, help="prompts per generate call")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rankrl-eval-batching-"))
    bench = write_toy_benchmark(folder / "bench", args.queries, args.candidates)
    model_dir = build_toy_model(folder / "model", bench)
    rows = read_trec(bench.topics, bench.qrels, bench.run, read_corpus(bench.corpus), depth=args.candidates)
    backend = HFBackend(
        AutoModelForCausalLM.from_pretrained(model_dir),
        AutoTokenizer.from_pretrained(model_dir),
        args.batch_size,
    )
    strategy = SlidingWindow(sampling=Sampling(max_new_tokens=args.max_new_tokens))
    print(
        f"{len(rows)} queries x {args.candidates} candidates, window 20 step 10, {args.max_new_tokens} tokens"
    )
    batched, batched_s = timed("batched", lambda: rerank_rows(rows, strategy, backend))
    looped, looped_s = timed("per-query", lambda: [rerank_rows([row], strategy, backend)[0] for row in rows])
    paths = []
    for name, results in (("batched", batched), ("looped", looped)):
        paths.append(folder / f"{name}.trec")
        write_trec_run(paths[-1], {r.query_id: r.doc_ids for r in results}, name)
    same = [line.rsplit(" ", 1)[0] for line in paths[0].read_text().splitlines()] == [
        line.rsplit(" ", 1)[0] for line in paths[1].read_text().splitlines()
    ]
    print(f"throughput ratio (batched / per-query): {looped_s / batched_s:.1f}x; identical run files: {same}")


if __name__ == "__main__":
    main()
