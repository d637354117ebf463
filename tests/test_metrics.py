"""Tests of rewards.metrics and rewards.trec_io: hand cases, pytrec_eval parity and the DL19 baseline."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.metrics import ndcg_at_k, ndcg_at_k_batch, rbo, recall_at_k, recall_at_k_batch
from rewards.trec_io import rank_by_score, read_qrels, read_run

REAL_DATA = Path(__file__).resolve().parents[2] / "shared/data/real"
DL19 = REAL_DATA / "trec-dl19"
FAST = settings(max_examples=200, deadline=None)


def test_ndcg_hand_graded_linear_gain():
    qrels = {"a": 3, "b": 2, "c": 1, "d": 0, "e": -1}
    dcg = 1 / 1 + 3 / math.log2(3) + 0 + 2 / math.log2(5)  # c, a, unjudged x, b
    ideal = 3 / 1 + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(["c", "a", "x", "b", "e"], qrels) == pytest.approx(dcg / ideal, abs=1e-12)


def test_ndcg_ideal_uses_all_judged_documents():
    qrels = {"a": 1, "b": 1}  # b is relevant but never retrieved
    assert ndcg_at_k(["a"], qrels, k=1) == pytest.approx(1.0)
    assert ndcg_at_k(["a"], qrels, k=2) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_ndcg_cutoff_and_degenerate_queries():
    ranking = [f"n{i}" for i in range(10)] + ["rel"]
    assert ndcg_at_k(ranking, {"rel": 2}, k=10) == 0.0
    assert ndcg_at_k(ranking, {"rel": 2}, k=11) == pytest.approx(1 / math.log2(12))
    assert ndcg_at_k(["a", "b"], {"a": 0, "b": -1}) == 0.0
    assert ndcg_at_k([], {"a": 1}) == 0.0


def test_repeated_doc_counts_once():
    assert ndcg_at_k(["a", "a"], {"a": 1, "b": 1}, k=2) == pytest.approx(
        ndcg_at_k(["a"], {"a": 1, "b": 1}, k=2)
    )


def test_recall_hand_and_threshold():
    qrels = {"a": 2, "b": 1, "c": 2, "d": 0}
    assert recall_at_k(["b", "a", "x"], qrels, k=2) == pytest.approx(2 / 3)
    assert recall_at_k(["b", "a", "x"], qrels, k=2, threshold=2) == pytest.approx(1 / 2)
    assert recall_at_k(["b", "a"], qrels, k=1, threshold=2) == 0.0
    assert recall_at_k(["a"], {"a": 1}, threshold=2) == 0.0


@pytest.mark.parametrize("bad", [0, -3, 1.5, True])
def test_bad_cutoff_or_threshold_raises(bad):
    with pytest.raises(ValueError):
        ndcg_at_k(["a"], {"a": 1}, k=bad)
    with pytest.raises(ValueError):
        recall_at_k(["a"], {"a": 1}, threshold=bad)


DOCS = [f"d{i}" for i in range(14)]
queries = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from(DOCS), st.integers(-1, 3), min_size=1, max_size=10),  # judged queries
        st.permutations(DOCS).flatmap(lambda docs: st.integers(1, len(docs)).map(lambda n: docs[:n])),
    ),
    min_size=1,
    max_size=5,
)


@FAST
@given(queries, st.sampled_from([1, 3, 5, 10]), st.sampled_from([1, 2]))
def test_batch_metrics_equal_pytrec_eval(batch, k, threshold):
    qrels = {f"q{i}": labels for i, (labels, _) in enumerate(batch)}
    # pytrec_eval ranks by score, so give the ranking strictly decreasing scores.
    run = {f"q{i}": {d: float(len(r) - j) for j, d in enumerate(r)} for i, (_, r) in enumerate(batch)}
    measures = {f"ndcg_cut.{k}", f"recall.{k}"}
    expected = pytrec_eval.RelevanceEvaluator(qrels, measures, relevance_level=threshold).evaluate(run)
    rankings, labels = [r for _, r in batch], [q for q, _ in batch]
    ndcg = ndcg_at_k_batch(rankings, labels, k)
    recall = recall_at_k_batch(rankings, labels, k, threshold)
    for i in range(len(batch)):
        assert ndcg[i] == pytest.approx(expected[f"q{i}"][f"ndcg_cut_{k}"], abs=1e-9)
        assert recall[i] == pytest.approx(expected[f"q{i}"][f"recall_{k}"], abs=1e-9)
        assert ndcg_at_k(rankings[i], labels[i], k) == ndcg[i]


docids = st.text("0123456789ab", min_size=1, max_size=3)


@FAST
@given(st.dictionaries(docids, st.sampled_from([0.0, 1.0, 2.0]), min_size=1, max_size=10))
def test_rank_by_score_breaks_ties_like_trec_eval(scores):
    # Distinct grades make nDCG depend on the whole order, so any disagreement in tie-breaking shows.
    qrels = {"q": {docid: grade for grade, docid in enumerate(sorted(scores), start=1)}}
    expected = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate({"q": scores})
    assert ndcg_at_k(rank_by_score(scores), qrels["q"]) == pytest.approx(
        expected["q"]["ndcg_cut_10"], abs=1e-12
    )


def test_read_run_orders_by_score_then_docid_descending(tmp_path):
    run = tmp_path / "run.txt"
    run.write_text("q1 Q0 9 1 1.0 t\nq1 Q0 10 2 1.0 t\nq1 Q0 a 3 2.0 t\n\nq2 Q0 z 1 -1.5 t\n")
    assert read_run(run) == {"q1": ["a", "9", "10"], "q2": ["z"]}


def test_read_qrels(tmp_path):
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 d1 2\nq1 0 d2 0\nq2 Q0 d1 -1\n")
    assert read_qrels(qrels) == {"q1": {"d1": 2, "d2": 0}, "q2": {"d1": -1}}


@pytest.mark.skipif(not DL19.is_dir(), reason=f"real test data not found at {DL19}")
def test_dl19_bm25_reproduces_published_numbers():
    qrels = read_qrels(DL19 / "qrels.dl19-passage.txt")
    run = read_run(DL19 / "run.rankllm.bm25.dl19.top100.txt")
    qids = sorted(qrels)  # trec_eval -c: average over every judged query
    rankings, labels = [run.get(q, []) for q in qids], [qrels[q] for q in qids]
    assert float(np.mean(ndcg_at_k_batch(rankings, labels, 10))) == pytest.approx(0.5058, abs=1e-4)
    assert float(np.mean(recall_at_k_batch(rankings, labels, 100, threshold=2))) == pytest.approx(
        0.4910, abs=1e-4
    )


def test_rbo_average_overlap_hand_case():
    # Fig. 5 of Webber et al., the rbo package's own test: AO = 0.312.
    expected = (0 + 0 + 2 / 3 + 2 / 4 + 2 / 5 + 2 / 6 + 2 / 7) / 7
    assert rbo(list("abcdefg"), list("zcavwxy")) == pytest.approx(expected, abs=1e-12)


def test_rbo_webber_hand_case():
    # A_1 = 0, A_2 = 1, A_3 = 1 -> (1 - p)(0 + p + p^2)
    assert rbo(list("abc"), list("bac"), p=0.9) == pytest.approx(0.1 * (0.9 + 0.81), abs=1e-12)


def test_rbo_edge_cases():
    assert rbo(list("abc"), list("abc")) == pytest.approx(1.0)
    assert rbo(list("abcd"), ["a"]) == pytest.approx(1.0)  # depth k = min length
    assert rbo(list("abc"), list("xyz")) == 0.0
    assert rbo([], list("abc")) == 0.0
    assert rbo([], []) == 0.0
    for bad_p in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError):
            rbo(["a"], ["a"], p=bad_p)


@FAST
@given(
    st.lists(st.sampled_from("abcdefghij"), max_size=12),
    st.lists(st.sampled_from("abcdefghij"), max_size=12),
    st.sampled_from([1.0, 0.9, 0.5]),
)
def test_rbo_matches_definition(pred, gold, p):
    k = min(len(pred), len(gold))
    agreement = [len(set(pred[:d]) & set(gold[:d])) / d for d in range(1, k + 1)]
    if p == 1.0:
        expected = sum(agreement) / k if k else 0.0
    else:
        expected = (1 - p) * sum(p ** (d - 1) * a for d, a in enumerate(agreement, start=1))
    assert rbo(pred, gold, p) == pytest.approx(expected, abs=1e-12)
