"""Tests for data_synth sources, BM25 mining and filters, on the real files in ../shared/data/real.

Published numbers (Anserini regressions, trec_eval): SciFact BM25 flat nDCG@10 0.6789 and R@100 0.9253;
DL19 BM25 nDCG@10 0.5058. bm25s is not Lucene: its tokenizer and our stemmer (Porter via PyStemmer when
installed, else the S-stemmer) differ from Lucene's analyzer, so our own BM25 lands at 0.667-0.677 nDCG@10
rather than exactly 0.6789, and R@100 at 0.903-0.929; the R@100 tolerance of 0.03 covers both stemmers.
Reading Anserini's own run file must reproduce 0.6789 to 1e-4.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest
import pytrec_eval

from core.data import DataError, labels_to_qrels, load_dataset_file, write_dataset
from core.sources import (
    read_beir,
    read_corpus,
    read_qrels_file,
    read_queries,
    read_rankllm_requests,
    read_run_file,
    read_trec,
)
from core.trec import rank_by_score
from data_synth.filters import (
    answers_match,
    decontaminate,
    final_answer,
    self_consistency_filter,
    verify_answers,
)
from data_synth.mining import BM25Index, mine_candidates, mix_positives
from rewards.metrics import evaluate_batch, ndcg_at_k

REAL = Path(__file__).resolve().parents[2] / "shared/data/real"
SCIFACT, DL19 = REAL / "beir-scifact", REAL / "trec-dl19"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real benchmark data not found at {REAL}")


def _mean(rankings: list[list[str]], qrels: dict, measure: str) -> float:
    """trec_eval -c mean over every qrels query."""
    qids = list(qrels)
    return float(
        evaluate_batch([rankings[q] for q in qids], [qrels[q] for q in qids], [measure])[measure].mean()
    )


@pytest.fixture(scope="module")
def scifact():
    if not REAL.is_dir():
        pytest.skip(f"real benchmark data not found at {REAL}")
    start = time.perf_counter()
    corpus, queries, qrels = read_beir(SCIFACT)
    read_s = time.perf_counter() - start
    index = BM25Index(corpus)
    return corpus, queries, qrels, index, read_s, time.perf_counter() - start - read_s


def test_scifact_bm25_close_to_anserini(scifact):
    corpus, queries, qrels, index, read_s, index_s = scifact
    assert len(corpus) == 5183 and len(queries) == 300 and len(qrels) == 300
    start = time.perf_counter()
    hits = index.search({q: queries[q] for q in qrels}, k=100)
    search_s = time.perf_counter() - start
    run = {q: [d for d, _ in h] for q, h in hits.items()}
    ndcg, recall = _mean(run, qrels, "ndcg_cut_10"), _mean(run, qrels, "recall_100")
    print(
        f"bm25s[{index.stemmer_name}] nDCG@10={ndcg:.4f} R@100={recall:.4f} read={read_s:.2f}s "
        f"index={index_s:.2f}s search={search_s:.2f}s"
    )
    assert index.stemmer_name.lower().startswith("porter") or "stemmer" in index.stemmer_name.lower()
    assert 0.672 <= ndcg <= 0.685  # published 0.6789 (Lucene analyzer); 0.6769 with bm25s + Porter
    assert abs(recall - 0.9253) <= 0.01
    assert index_s < 30


def test_mining_rows_and_positive_mix(scifact, tmp_path):
    corpus, queries, qrels, index, *_ = scifact
    some = {q: queries[q] for q in list(qrels)[:20]}
    plain = mine_candidates(corpus, some, k=10, qrels=qrels, index=index)
    mixed = mine_candidates(corpus, some, k=10, qrels=qrels, positives=1, seed=3, index=index)
    assert all(len(r["candidates"]) == 10 for r in plain + mixed)
    assert all(r["labels"] for r in mixed)  # every query now has a labelled positive
    assert sum(bool(r["labels"]) for r in plain) < len(plain)
    again = mine_candidates(corpus, some, k=10, qrels=qrels, positives=1, seed=3, index=index)
    assert again == mixed
    write_dataset(mixed, tmp_path / "mined.jsonl")
    loaded = load_dataset_file(tmp_path / "mined.jsonl")
    assert loaded[0]["candidates"] == mixed[0]["candidates"]


def test_mix_positives_keeps_length():
    import random

    out = mix_positives(["a", "b", "c"], {"p": 1, "q": 2, "b": 0}, 2, random.Random(0))
    assert len(out) == 3 and {"p", "q", "b"} == set(out)


@needs_real
def test_scifact_run_reader_reproduces_anserini():
    qrels = read_qrels_file(SCIFACT / "qrels.beir-v1.0.0-scifact.test.txt")
    run = read_run_file(SCIFACT / "run.anserini-1.7.1.bm25-flat.scifact.top100.txt", qrels=qrels)
    with open(SCIFACT / "qrels.beir-v1.0.0-scifact.test.txt", encoding="utf-8") as handle:
        assert qrels == pytrec_eval.parse_qrel(handle)
    with open(SCIFACT / "run.anserini-1.7.1.bm25-flat.scifact.top100.txt", encoding="utf-8") as handle:
        assert run == {qid: rank_by_score(scores) for qid, scores in pytrec_eval.parse_run(handle).items()}
    assert _mean(run, qrels, "ndcg_cut_10") == pytest.approx(0.6789, abs=1e-4)
    assert _mean(run, qrels, "recall_100") == pytest.approx(0.9253, abs=1e-4)


@needs_real
def test_dl19_rankllm_round_trip(tmp_path):
    qrels = read_qrels_file(DL19 / "qrels.dl19-passage.txt")
    rows = read_rankllm_requests(DL19 / "rankllm.bm25.dl19.top100.candidates.json", qrels)
    assert len(rows) == 43 and all(len(r["candidates"]) == 100 for r in rows)
    ndcg = sum(ndcg_at_k([c["doc_id"] for c in r["candidates"]], qrels[r["query_id"]]) for r in rows) / 43
    assert ndcg == pytest.approx(0.5058, abs=1e-4)
    for suffix in (".jsonl", ".parquet"):
        write_dataset(rows, tmp_path / f"dl19{suffix}")
        loaded = load_dataset_file(tmp_path / f"dl19{suffix}")
        empty = {"teacher_scores": [], "task": "", "example_id": "", "completion": ""}
        assert [dict(r) for r in loaded] == [{**row, **empty} for row in rows]
    trec = read_trec(
        DL19 / "topics.dl19-passage.txt",
        DL19 / "qrels.dl19-passage.txt",
        DL19 / "run.rankllm.bm25.dl19.top100.txt",
    )
    assert {r["query_id"] for r in trec} == {r["query_id"] for r in rows}


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


BAD_RUNS = {
    "missing_doc": ("1 Q0 d1 1 2.0 t\n1 Q0 dX 2 1.0 t\n", r"run.txt:2: document 'dX' is not in the corpus"),
    "unknown_topic": ("1 Q0 d1 1 2.0 t\n9 Q0 d1 1 1.0 t\n", r"run.txt:2: topic '9' is not in the qrels"),
    "duplicate": ("1 Q0 d1 1 2.0 t\n1 Q0 d1 2 1.0 t\n", r"run.txt:2: duplicate line for \('1', 'd1'\)"),
    "score": ("1 Q0 d1 1 high t\n", r"run.txt:1: score 'high' is not a number"),
    "empty": ("\n", r"run.txt: empty run"),
}


@pytest.mark.parametrize("case", sorted(BAD_RUNS))
def test_bad_runs_give_one_line_errors(tmp_path, case):
    text, message = BAD_RUNS[case]
    with pytest.raises(DataError, match=message) as info:
        read_run_file(_write(tmp_path / "run.txt", text), corpus={"d1": {}, "d2": {}}, qrels={"1": {}})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("corpus.jsonl", '{"_id": "d1", "text": "x"}\nnot json\n', r"corpus.jsonl:2: not JSON"),
        ("corpus.jsonl", '{"_id": "d1"}\n{"_id": "d1"}\n', r"corpus.jsonl:2: duplicate document id 'd1'"),
        ("corpus.jsonl", "\n", r"corpus.jsonl: empty corpus"),
        ("queries.jsonl", '{"_id": "q1", "text": " "}\n', r"queries.jsonl:1: query 'q1' has no text"),
        ("topics.tsv", "q1\tfoo\nq1\tbar\n", r"topics.tsv:2: duplicate query id 'q1'"),
        ("qrels.txt", "q1 0 d1 1\nq1 0 d1 2\n", r"qrels.txt:2: duplicate judgement of \('q1', 'd1'\)"),
        ("qrels.txt", "q1 0 d9 1\n", r"qrels.txt:1: document 'd9' is not in the corpus"),
        ("qrels.txt", "q7 0 d1 1\n", r"qrels.txt:1: query 'q7' is not among the queries"),
        ("qrels.txt", "q1 0 d1 x\n", r"qrels.txt:1: relevance 'x' is not a number"),
    ],
)
def test_bad_inputs_give_one_line_errors(tmp_path, name, text, message):
    path = _write(tmp_path / name, text)
    readers = {
        "corpus.jsonl": read_corpus,
        "queries.jsonl": read_queries,
        "topics.tsv": read_queries,
        "qrels.txt": lambda p: read_qrels_file(p, corpus={"d1": {}}, queries={"q1": "x"}),
    }
    with pytest.raises(DataError, match=message) as info:
        readers[name](path)
    assert "\n" not in str(info.value)


def test_beir_folder_with_tsv_qrels_and_gzip(tmp_path):
    with gzip.open(tmp_path / "corpus.jsonl.gz", "wt") as handle:
        handle.write(json.dumps({"_id": "d1", "title": "Fleas", "text": "live a year"}) + "\n")
    _write(tmp_path / "queries.jsonl", json.dumps({"_id": "q1", "text": "flea life"}) + "\n")
    (tmp_path / "qrels").mkdir()
    _write(tmp_path / "qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    corpus, queries, qrels = read_beir(tmp_path)
    assert corpus["d1"]["title"] == "Fleas" and queries == {"q1": "flea life"} and qrels == {"q1": {"d1": 1}}


def test_bad_rankllm_requests(tmp_path):
    hits = [{"content": "a", "qid": 1, "docid": "d1", "rank": 1, "score": "x"}]
    path = _write(tmp_path / "req.json", json.dumps([{"query": "q", "hits": hits}]))
    with pytest.raises(DataError, match=r"req.json: \[0\].hits\[0\]: score 'x' is not a number"):
        read_rankllm_requests(path)
    _write(path, json.dumps([{"query": "q", "hits": []}]))
    with pytest.raises(DataError, match=r"\[0\]: 'hits' is missing or empty"):
        read_rankllm_requests(path)


def _row(qid: str, order: list[str], labels: dict[str, int]) -> dict:
    return {
        "query_id": qid,
        "query": f"query {qid}",
        "candidates": [{"doc_id": d, "text": ""} for d in "abcdefghijkl"],
        "labels": [{"doc_id": d, "relevance": g} for d, g in labels.items()],
        "teacher_order": order,
        "reasoning": "",
    }


def test_self_consistency_filter():
    good = _row("good", list("abcdefghijkl"), {"a": 1, "b": 1})
    bad = _row("bad", list("lkjihgfedcba"), {"a": 1})  # the positive sits beyond rank 10
    edge = _row("edge", list("cab"), {"a": 1})  # nDCG@10 = 1/log2(3) = 0.63
    rows = [good, bad, edge, _row("none", [], {"a": 1}), _row("nolabel", ["a"], {"a": 0})]
    assert ndcg_at_k(edge["teacher_order"], labels_to_qrels(edge["labels"])) > 0.6
    kept, stats = self_consistency_filter(rows)
    assert [r["query_id"] for r in kept] == ["good", "edge"]
    assert stats.as_dict() == {
        "kept": 2,
        "dropped": 3,
        "reasons": {"ndcg_below_alpha": 1, "no_teacher_order": 1, "no_relevant_label": 1},
    }
    strict, _ = self_consistency_filter(rows, alpha=0.7)
    assert [r["query_id"] for r in strict] == ["good"]


def test_decontamination_report():
    long_topic = (
        "what is the effect of vitamin d supplementation on bone density in elderly women with osteoporosis"
    )
    topics = {"t1": long_topic, "t2": "do goldfish grow"}
    rows = [
        {"query_id": "r1", "query": "Study: " + long_topic.upper() + " today"},
        {"query_id": "r2", "query": "Do goldfish grow?"},
        {"query_id": "r3", "query": "what is the effect of vitamin d on bone density"},
        {"query_id": "r4", "query": "do goldfish grow big in ponds"},
    ]
    kept, report = decontaminate(rows, topics)
    assert [r["query_id"] for r in kept] == ["r3", "r4"]
    assert report.as_dict() == {"n": 13, "kept": 2, "dropped": 2, "overlaps": {"r1": ["t1"], "r2": ["t2"]}}
    kept3, report3 = decontaminate(rows, topics, n=3)
    assert report3.overlaps == {"r1": ["t1"], "r2": ["t2"], "r3": ["t1"], "r4": ["t2"]} and not kept3


@needs_real
def test_answer_verification_on_gsm8k():
    lines = (REAL / "gsm8k/gsm8k.test.jsonl").read_text(encoding="utf-8").splitlines()
    problems = [json.loads(line) for line in lines[:50]]
    references = [final_answer(p["answer"]) for p in problems]
    assert references[0] == "18"
    rows = [
        {"problem": p["question"], "answer": r, "solution": p["answer"]}
        for p, r in zip(problems, references, strict=True)
    ]
    rows[1] = {**rows[1], "solution": "so the answer is\n#### 999"}
    rows[2] = {**rows[2], "solution": ""}
    kept, stats = verify_answers(rows)
    assert stats.as_dict() == {"kept": 48, "dropped": 2, "reasons": {"wrong_answer": 1, "no_prediction": 1}}
    assert answers_match("#### $1,234.00", "1234") and answers_match("18.", "#### 18")
    assert not answers_match("#### 18.5", "18") and answers_match("#### -0.50", "-.5")
