"""SciFact with SmolLM2-135M: BM25 candidates, score learning, reranked test claims (recipes/scifact-smollm2).

Steps (``python benchmarks/scifact_smollm2.py STEP``; every output under ``--out``):

- ``prepare``: BEIR SciFact (``--data``): train rows for ``stage: score`` (the bm25s top ``--train-depth``
  of each train claim with its qrels labels, the claim's missed positives mixed in by
  ``data_synth.mining.mine_candidates(positives=1)``), written with ``core.data.write_dataset``; the fixed
  test subset (the first ``--queries`` test claims in the topics file that have qrels), its topics, qrels and
  two first-stage runs cut to ``--depth``: the Anserini BM25 flat run shipped with the data and bm25s's.
- ``eval MODEL NAME``: ``rankrl eval recipes/scifact-smollm2/eval.yaml`` of MODEL on the subset, then the same
  reranker scores fused with BM25 (min-max, weight ``--fusion-weight``) from the cached scores.
- ``table``: nDCG@10, MRR and MAP of both BM25 runs and every evaluated system, as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.data import write_dataset  # noqa: E402
from core.sources import read_corpus, read_qrels_file, read_queries  # noqa: E402
from data_synth.mining import BM25Index, mine_candidates  # noqa: E402
from evaluation.outputs import mean_metrics, per_query_metrics  # noqa: E402

DATA = Path("/work/shared/data/real/beir-scifact")
ANSERINI_RUN = "run.anserini-1.7.1.bm25-flat.scifact.top100.txt"
MEASURES = ("ndcg_cut_10", "recip_rank", "map")


def subset_ids(topics: dict[str, str], qrels: dict) -> list[str]:
    """Test claim ids in topics-file order that have at least one relevant document."""
    return [qid for qid in topics if any(grade > 0 for grade in qrels.get(qid, {}).values())]


def write_run(path: Path, hits: dict[str, list[tuple[str, float]]], tag: str) -> None:
    """A TREC run from ``{qid: [(doc_id, score), ...]}`` best first."""
    lines = [
        f"{qid} Q0 {doc} {rank} {score:.6f} {tag}"
        for qid, ranked in hits.items()
        for rank, (doc, score) in enumerate(ranked, 1)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_run(path: Path, depth: int) -> dict[str, list[tuple[str, float]]]:
    """The top ``depth`` lines of each query of a TREC run, in rank order."""
    hits: dict[str, list[tuple[int, str, float]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        qid, _, doc, rank, score, _ = line.split()
        hits.setdefault(qid, []).append((int(rank), doc, float(score)))
    return {qid: [(d, s) for _, d, s in sorted(ranked)[:depth]] for qid, ranked in hits.items()}


def prepare(args: argparse.Namespace) -> None:
    """Train rows and the fixed test subset with its two BM25 runs (module docstring)."""
    out, data = Path(args.out), Path(args.data)
    out.mkdir(parents=True, exist_ok=True)
    corpus = read_corpus(data / "corpus.jsonl.gz")
    index = BM25Index(corpus)
    train_queries = read_queries(data / "topics.beir-v1.0.0-scifact.train.tsv.gz")
    train_qrels = read_qrels_file(data / "qrels.beir-v1.0.0-scifact.train.txt")
    rows = mine_candidates(corpus, train_queries, args.train_depth, train_qrels, positives=1, index=index)
    rows = [row for row in rows if any(label["relevance"] > 0 for label in row["labels"])]
    write_dataset(rows, out / "train.jsonl")
    topics = read_queries(data / "topics.beir-v1.0.0-scifact.test.tsv.gz")
    qrels = read_qrels_file(data / "qrels.beir-v1.0.0-scifact.test.txt")
    ids = subset_ids(topics, qrels)[: args.queries]
    (out / "topics.tsv").write_text("".join(f"{q}\t{topics[q]}\n" for q in ids), encoding="utf-8")
    qrel_lines = [f"{q} 0 {d} {g}\n" for q in ids for d, g in sorted(qrels[q].items())]
    (out / "qrels.txt").write_text("".join(qrel_lines), encoding="utf-8")
    anserini = read_run(data / ANSERINI_RUN, args.depth)
    write_run(out / "bm25-anserini.run", {q: anserini.get(q, []) for q in ids}, "anserini")
    bm25s_hits = index.search({q: topics[q] for q in ids}, args.depth)
    write_run(out / "bm25-bm25s.run", {q: bm25s_hits[q] for q in ids}, "bm25s")
    print(
        f"train rows {len(rows)} of {len(train_queries)} claims; test claims {len(ids)}, depth {args.depth}"
    )


def rankrl_eval(args: argparse.Namespace, model: str, out_dir: Path, extra: list[str]) -> None:
    """One ``rankrl eval`` of the recipe's eval.yaml on the prepared subset."""
    out = Path(args.out)
    command = [
        str(ROOT / ".venv/bin/rankrl"), "eval", str(ROOT / "recipes/scifact-smollm2/eval.yaml"),
        f"model={model}", f"output_dir={out_dir}", f"run={out / args.run}", f"topics={out / 'topics.tsv'}",
        f"qrels={out / 'qrels.txt'}", f"corpus={Path(args.data) / 'corpus.jsonl.gz'}", f"depth={args.depth}",
        *extra,
    ]  # fmt: skip
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def evaluate(args: argparse.Namespace) -> None:
    """The reranker alone, then fused with BM25 from its cached scores (fusion is not in the cache key)."""
    base = Path(args.out) / "eval" / args.name
    rankrl_eval(args, args.model, base, [])
    fused = base.with_name(f"{args.name}+bm25")
    fused.mkdir(parents=True, exist_ok=True)
    shutil.copy(base / "cache.jsonl", fused / "cache.jsonl")
    rankrl_eval(args, args.model, fused, ["fusion=minmax", f"fusion_weight={args.fusion_weight}"])


def bm25_metrics(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Mean metrics of the two prepared BM25 runs (top ``--depth``) on the subset's qrels."""
    out = Path(args.out)
    qrels = read_qrels_file(out / "qrels.txt")
    return {
        f"BM25 {name} top-{args.depth}": mean_metrics(
            per_query_metrics(
                {q: [d for d, _ in hits] for q, hits in read_run(out / run, args.depth).items()},
                qrels,
                MEASURES,
            ),
            MEASURES,
        )
        for name, run in (("Anserini", "bm25-anserini.run"), ("bm25s", "bm25-bm25s.run"))
    }


def table(args: argparse.Namespace) -> None:
    """Markdown table of both BM25 runs and every system evaluated under ``--out``/eval."""
    rows = bm25_metrics(args)
    for manifest in sorted((Path(args.out) / "eval").glob("*/manifest.json")):
        rows[manifest.parent.name] = json.loads(manifest.read_text(encoding="utf-8"))["metrics"]["reranked"]
    print("| system | " + " | ".join(MEASURES) + " |")
    print("|---|" + "---|" * len(MEASURES))
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(f"{values[m]:.4f}" for m in MEASURES) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("prepare", "eval", "table"))
    parser.add_argument("model", nargs="?", help="eval: checkpoint folder")
    parser.add_argument("name", nargs="?", help="eval: system name (folder under OUT/eval)")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--out", default="outputs/scifact-smollm2")
    parser.add_argument("--queries", type=int, default=50, help="first N test claims with qrels")
    parser.add_argument("--depth", type=int, default=10, help="BM25 candidates reranked per test claim")
    parser.add_argument("--train-depth", type=int, default=20, help="BM25 candidates mined per train claim")
    parser.add_argument("--run", default="bm25-anserini.run", help="first stage under OUT")
    parser.add_argument("--fusion-weight", type=float, default=0.5)
    args = parser.parse_args()
    {"prepare": prepare, "eval": evaluate, "table": table}[args.step](args)


if __name__ == "__main__":
    main()
