"""``rankrl eval`` below the run's length keeps the first-stage tail: on TREC DL19 (BM25 top 100, from
../shared/data/real), a reranker that answers with the first-stage order reproduces the first stage on every
measure at any depth, through a scored and fused strategy too, on resume and in robustness reruns."""

from __future__ import annotations

import csv
import json
import re
from itertools import pairwise
from pathlib import Path

import pytest

from core.generation import Messages
from core.sources import read_qrels_file, read_rankllm_requests, read_run_file
from evaluation import EvalConfig, run_eval
from evaluation.config import DEFAULT_MEASURES
from evaluation.fusion import append_tail
from evaluation.outputs import per_query_metrics
from tests.oracles import FunctionBackend

DL19 = Path(__file__).resolve().parents[2] / "shared/data/real/trec-dl19"
MEASURES = [*DEFAULT_MEASURES, "ndcg_cut_20", "ndcg_cut_100", "P_10", "P_100"]
needs_dl19 = pytest.mark.skipif(
    not DL19.is_dir(), reason=f"real TREC DL19 data not found at {DL19} (see shared/data/real/README.md)"
)


def keep_order(messages: Messages) -> str:
    """A listwise answer ranking the prompt's n passages in the order given: [1] > [2] > ... > [n]."""
    n = int(re.search(r"provide you with (\d+) passages", messages[-1]["content"]).group(1))
    return "<think>keep</think>\n<answer>" + " > ".join(f"[{i}]" for i in range(1, n + 1)) + "</answer>"


def no_model(messages: Messages) -> str:
    raise AssertionError("every query should come from the cache")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The passages of the DL19 candidates as a corpus.jsonl, for the run + topics + corpus inputs."""
    requests = json.loads((DL19 / "rankllm.bm25.dl19.top100.candidates.json").read_text())
    docs = {hit["docid"]: hit["content"] for request in requests for hit in request["hits"]}
    path = tmp_path_factory.mktemp("dl19") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": d, "text": t}) + "\n" for d, t in docs.items()))
    return path


def dl19(out: Path, corpus: Path, source: str = "run", **settings) -> EvalConfig:
    """DL19 as a run + topics + corpus (``source`` "run") or as rank_llm requests ("requests")."""
    inputs = {"requests": str(DL19 / "rankllm.bm25.dl19.top100.candidates.json")}
    if source == "run":
        run, topics = DL19 / "run.rankllm.bm25.dl19.top100.txt", DL19 / "topics.dl19-passage.txt"
        inputs = {"run": str(run), "topics": str(topics), "corpus": str(corpus)}
    return EvalConfig(
        output_dir=str(out), qrels=str(DL19 / "qrels.dl19-passage.txt"), relevance_threshold=2,
        measures=MEASURES, permutations=100, **inputs, **settings,
    )  # fmt: skip


def assert_first_stage_reproduced(manifest: dict, out: Path, depth: int) -> None:
    """Written run, results, metrics, per-query CSV and paired test all equal the first stage's."""
    first_stage = read_run_file(DL19 / "run.rankllm.bm25.dl19.top100.txt")
    assert read_run_file(out / "run.trec") == first_stage
    written = {
        r["query_id"]: [c["doc_id"] for c in r["candidates"]]
        for r in read_rankllm_requests(out / "results.json")
    }
    assert written == first_stage
    assert manifest["metrics"]["reranked"] == manifest["metrics"]["first_stage"]
    assert manifest["significance"]["delta"] == 0.0
    assert manifest["ranking"] == {"depth": depth, "keep_tail": True, "tail_documents": 43 * (100 - depth)}
    expected = per_query_metrics(first_stage, read_qrels_file(DL19 / "qrels.dl19-passage.txt"), MEASURES, 2)
    with open(out / "per_query.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["qid"]: {m: row[m] for m in MEASURES} for row in rows} == {
        qid: {m: f"{value:.6f}" for m, value in values.items()} for qid, values in expected.items()
    }


@needs_dl19
@pytest.mark.parametrize(
    ("depth", "source"), [(1, "run"), (10, "run"), (20, "run"), (100, "run"), (10, "requests")]
)
def test_identity_listwise_reproduces_the_first_stage_at_every_depth(tmp_path, corpus, depth, source):
    settings = dict(depth=depth, parse="strict")
    manifest = run_eval(dl19(tmp_path, corpus, source, **settings), FunctionBackend(keep_order))
    assert manifest["parse"]["fallbacks"] == manifest["parse"]["repairs"] == 0
    assert_first_stage_reproduced(manifest, tmp_path, depth)
    assert manifest["metrics"]["first_stage"]["ndcg_cut_10"] == pytest.approx(0.5058, abs=5e-5)
    assert manifest["metrics"]["first_stage"]["recall_100"] == pytest.approx(0.4910, abs=5e-5)
    assert "first-stage tail" in (tmp_path / "metrics.txt").read_text()


@needs_dl19
def test_without_tail_only_the_reranked_part_is_scored_and_its_cache_serves_the_tail_run(tmp_path, corpus):
    short = run_eval(dl19(tmp_path, corpus, depth=10, keep_tail=False), FunctionBackend(keep_order))
    assert {len(docs) for docs in read_run_file(tmp_path / "run.trec").values()} == {10}
    assert short["ranking"] == {"depth": 10, "keep_tail": False, "tail_documents": 0}
    assert short["metrics"]["reranked"]["ndcg_cut_10"] == short["metrics"]["first_stage"]["ndcg_cut_10"]
    assert short["metrics"]["reranked"]["recall_100"] < short["metrics"]["first_stage"]["recall_100"]
    resumed = run_eval(dl19(tmp_path, corpus, depth=10), FunctionBackend(no_model))
    assert_first_stage_reproduced(resumed, tmp_path, 10)


@needs_dl19
def test_fused_scores_stay_above_the_tail_and_robustness_reruns_keep_it(tmp_path, corpus):
    settings = dict(depth=10, task="pointwise", fusion="minmax", robustness=["reversed"])
    manifest = run_eval(dl19(tmp_path, corpus, **settings), FunctionBackend(lambda m: "<answer>5</answer>"))
    assert_first_stage_reproduced(manifest, tmp_path, 10)  # equal scores: the fusion keeps BM25's order
    for request in json.loads((tmp_path / "results.json").read_text()):
        scores = [hit["score"] for hit in request["hits"]]
        assert all(a > b for a, b in pairwise(scores[9:])) and min(scores[:10]) > scores[10]
    assert read_run_file(tmp_path / "run-reversed.trec") == read_run_file(tmp_path / "run.trec")
    assert set(manifest["robustness"]["runs"].values()) == {manifest["metrics"]["first_stage"]["ndcg_cut_10"]}


def test_append_tail_scores_continue_strictly_below_the_reranked_ones():
    assert append_tail(["b", "a"], [0.5, 0.5], ["c", "d"]) == (["b", "a", "c", "d"], [0.5, 0.5, -0.5, -1.5])
    assert append_tail(["b", "a"], None, ["c"]) == (["b", "a", "c"], None)
    assert append_tail(["b"], [2.0], []) == (["b"], [2.0])
