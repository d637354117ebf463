"""Tests of rewards.metrics, rewards.metrics_array and core.trec: hand cases, pytrec_eval parity on
hypothesis-generated runs, and the DL19 baseline."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import kendalltau

from core.sources import read_qrels_file as read_qrels
from core.sources import read_run_file as read_run
from core.trec import rank_by_score, rank_runs
from rewards.metrics import (
    average_precision,
    average_precision_batch,
    evaluate_batch,
    grade_matrix,
    ideal_grade_matrix,
    kendall_tau,
    mrr_at_k,
    mrr_at_k_batch,
    ndcg_at_k,
    ndcg_at_k_batch,
    precision_at_k,
    precision_at_k_batch,
    rbo,
    recall_at_k,
    recall_at_k_batch,
    relevant_counts,
)
from rewards.metrics_array import (
    average_precision_from_grades,
    mrr_from_grades,
    ndcg_from_grades,
    precision_from_grades,
    recall_from_grades,
)

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


def test_precision_hand_and_short_ranking():
    qrels = {"a": 2, "b": 1, "c": 0}
    assert precision_at_k(["a", "x", "b", "c"], qrels, k=3) == pytest.approx(2 / 3)
    assert precision_at_k(["a", "x", "b", "c"], qrels, k=3, threshold=2) == pytest.approx(1 / 3)
    assert precision_at_k(["a"], qrels, k=10) == pytest.approx(0.1)  # trec_eval divides by k, not by 1
    assert precision_at_k([], qrels, k=5) == 0.0


def test_mrr_cutoff_and_threshold_by_hand():
    qrels = {"weak": 1, "strong": 2}
    ranking = ["x", "weak", "y", "strong"]
    assert mrr_at_k(ranking, qrels, k=1) == 0.0
    assert mrr_at_k(ranking, qrels, k=2) == pytest.approx(1 / 2)
    assert mrr_at_k(ranking, qrels, k=3, threshold=2) == 0.0
    assert mrr_at_k(ranking, qrels, k=4, threshold=2) == pytest.approx(1 / 4)
    assert mrr_at_k(ranking, qrels, k=None, threshold=2) == pytest.approx(1 / 4)
    assert mrr_at_k(["x"] * 3 + ["weak"], qrels, k=2) == pytest.approx(1 / 2)  # repeats close up
    assert mrr_at_k([], qrels, k=None) == 0.0


def test_average_precision_by_hand():
    qrels = {"a": 1, "b": 2, "c": 2, "z": 3}  # z is relevant but never retrieved
    ranking = ["a", "x", "b", "c"]
    assert average_precision(ranking, qrels) == pytest.approx((1 / 1 + 2 / 3 + 3 / 4) / 4)
    assert average_precision(ranking, qrels, threshold=2) == pytest.approx((1 / 3 + 2 / 4) / 3)
    assert average_precision(["a", "a", "b"], {"a": 1, "b": 1}) == pytest.approx(1.0)
    assert average_precision(ranking, {"a": 1}, threshold=2) == 0.0
    assert average_precision([], qrels) == 0.0


def test_batches_keep_rows_apart():
    rankings, qrels = [["a", "b"], [], ["c"]], [{"b": 2}, {"a": 1}, {}]
    assert average_precision_batch(rankings, qrels).tolist() == pytest.approx([0.5, 0.0, 0.0])
    assert mrr_at_k_batch(rankings, qrels, k=None).tolist() == pytest.approx([0.5, 0.0, 0.0])
    assert precision_at_k_batch(rankings, qrels, k=2, threshold=2).tolist() == pytest.approx([0.5, 0, 0])


def test_evaluate_batch_names_and_errors():
    rankings, qrels = [["x", "a", "b"]], [{"a": 1, "b": 2}]
    values = evaluate_batch(rankings, qrels, ["mrr_1", "mrr_2", "P_2", "recip_rank", "map"], threshold=2)
    assert {name: float(v[0]) for name, v in values.items()} == pytest.approx(
        {"mrr_1": 0.0, "mrr_2": 0.0, "P_2": 0.0, "recip_rank": 1 / 3, "map": 1 / 3}
    )
    assert evaluate_batch(rankings, qrels, []) == {}
    for bad in ("ndcg_cut.10", "ndcg_cut_0", "P", "mrr", "bpref"):
        with pytest.raises(ValueError, match="unknown measure"):
            evaluate_batch(rankings, qrels, [bad])
    with pytest.raises(ValueError):
        evaluate_batch(rankings, qrels, ["map"], threshold=0)


def test_grade_matrices():
    qrels = [{"a": 3, "b": -1, "c": 1}, {}]
    assert grade_matrix([["b", "a", "b", "x", "c"], ["a"]], qrels).tolist() == [[-1, 3, 0, 1], [0, 0, 0, 0]]
    assert grade_matrix([["a"], ["a"]], qrels, k=2).tolist() == [[3, 0], [0, 0]]
    assert grade_matrix([[], []], qrels).shape == (2, 1)
    assert ideal_grade_matrix(qrels, 2).tolist() == [[3, 1], [0, 0]]
    assert ideal_grade_matrix(qrels, 5).tolist() == [[3, 1, 0, 0, 0], [0, 0, 0, 0, 0]]
    assert relevant_counts(qrels, 1).tolist() == [2, 0]
    assert relevant_counts(qrels, 3).tolist() == [1, 0]
    assert relevant_counts([], 1).shape == (0,)


def test_array_form_from_candidate_labels_and_permutations():
    # What a trainer holds: each candidate's grade, and the predicted permutation of the candidates.
    labels = np.array([[0, 3, 1, 0], [2, 0, 0, 2]])
    perms = np.array([[1, 2, 0, 3], [1, 2, 3, 0]])
    grades = labels[np.arange(2)[:, None], perms]
    ideal = -np.sort(-labels, axis=1)  # all judged documents are candidates here
    n_relevant = (labels >= 1).sum(axis=1)
    assert ndcg_from_grades(grades, ideal, 4).tolist() == pytest.approx(
        [1.0, (2 / math.log2(4) + 2 / math.log2(5)) / (2 + 2 / math.log2(3))]
    )
    assert recall_from_grades(grades, n_relevant, 2).tolist() == pytest.approx([1.0, 0.0])
    assert precision_from_grades(grades, 2).tolist() == pytest.approx([1.0, 0.0])
    assert mrr_from_grades(grades, None).tolist() == pytest.approx([1.0, 1 / 3])
    assert mrr_from_grades(grades, 2).tolist() == pytest.approx([1.0, 0.0])
    assert average_precision_from_grades(grades, n_relevant).tolist() == pytest.approx(
        [1.0, (1 / 3 + 2 / 4) / 2]
    )
    # The ideal may be narrower than k (fewer judged documents) and the grades narrower than k.
    assert ndcg_from_grades([[0, 1]], [[1]], 10).tolist() == pytest.approx([1 / math.log2(3)])


def test_array_form_rejects_bad_shapes():
    with pytest.raises(ValueError):
        ndcg_from_grades([1, 0], [[1, 0]], 2)
    with pytest.raises(ValueError):
        recall_from_grades([[1, 0]], [1, 1], 2)
    with pytest.raises(ValueError):
        average_precision_from_grades([[1, 0], [0, 1]], [1], 1)


@pytest.mark.parametrize("bad", [0, -3, 1.5, True])
def test_bad_cutoff_or_threshold_raises(bad):
    for metric in (ndcg_at_k, recall_at_k, precision_at_k, mrr_at_k):
        with pytest.raises(ValueError):
            metric(["a"], {"a": 1}, k=bad)
        if metric is not ndcg_at_k:  # nDCG uses the grades themselves, no threshold
            with pytest.raises(ValueError):
                metric(["a"], {"a": 1}, threshold=bad)
    with pytest.raises(ValueError):
        average_precision(["a"], {"a": 1}, threshold=bad)
    with pytest.raises(ValueError):
        rank_runs([{"a": 1.0}], depth=bad)


DOCS = [f"d{i}" for i in range(14)]
# Few distinct score values, so ties are common and the doc id tie-break matters: 0.0 and -0.0 tie, and so
# do 1.0 and 1.0 + 1e-12, 0.0 and 1e-300, because trec_eval compares scores as float32.
SCORES = st.sampled_from([0.0, -0.0, 1e-300, 1.0, 1.0 + 1e-12, 2.5, 1e39]) | st.floats(
    -10, 10, allow_nan=False
)
queries = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from(DOCS), st.integers(-1, 3), min_size=1, max_size=10),  # qrels
        st.dictionaries(st.sampled_from(DOCS), SCORES, min_size=1, max_size=len(DOCS)),  # run: doc -> score
    ),
    min_size=1,
    max_size=5,
)
PARITY = settings(max_examples=500, deadline=None)


@PARITY
@given(queries, st.sampled_from([1, 3, 5, 10, 20]))
def test_metrics_equal_pytrec_eval(batch, k):
    """Graded labels, unjudged retrieved docs, queries without relevant docs, tied scores, k past the end."""
    qrels = {f"q{i}": labels for i, (labels, _) in enumerate(batch)}
    run = {f"q{i}": scores for i, (_, scores) in enumerate(batch)}
    rankings, labels = rank_runs(list(run.values())), list(qrels.values())
    assert rankings == [rank_by_score(scores) for scores in run.values()]
    for threshold in (1, 2):
        measures = {f"ndcg_cut.{k}", f"recall.{k}", f"P.{k}", "recip_rank", "map"}
        expected = pytrec_eval.RelevanceEvaluator(qrels, measures, relevance_level=threshold).evaluate(run)
        ours = {
            f"ndcg_cut_{k}": ndcg_at_k_batch(rankings, labels, k),
            f"recall_{k}": recall_at_k_batch(rankings, labels, k, threshold),
            f"P_{k}": precision_at_k_batch(rankings, labels, k, threshold),
            "recip_rank": mrr_at_k_batch(rankings, labels, None, threshold),
            "map": average_precision_batch(rankings, labels, threshold),
        }
        together = evaluate_batch(rankings, labels, ours, threshold)
        for name, values in ours.items():
            reference = [expected[qid][name] for qid in qrels]
            assert values == pytest.approx(reference, abs=1e-9), name
            assert together[name].tolist() == values.tolist(), name


@FAST
@given(queries, st.sampled_from([1, 2, 5, None]), st.sampled_from([1, 2]))
def test_array_form_equals_dict_form(batch, k, threshold):
    """Full-depth grade matrices cut inside the array functions give the dict functions' values exactly."""
    rankings, labels = [rank_by_score(scores) for _, scores in batch], [qrels for qrels, _ in batch]
    grades = grade_matrix(rankings, labels)
    mrr = mrr_at_k_batch(rankings, labels, k, threshold)
    assert mrr_from_grades(grades, k, threshold).tolist() == mrr.tolist()
    assert [mrr_at_k(r, q, k, threshold) for r, q in zip(rankings, labels, strict=True)] == mrr.tolist()
    ap = average_precision_batch(rankings, labels, threshold)
    assert [average_precision(r, q, threshold) for r, q in zip(rankings, labels, strict=True)] == ap.tolist()
    if k is not None:
        ndcg, recall = ndcg_at_k_batch(rankings, labels, k), recall_at_k_batch(rankings, labels, k, threshold)
        assert [ndcg_at_k(r, q, k) for r, q in zip(rankings, labels, strict=True)] == ndcg.tolist()
        assert [
            recall_at_k(r, q, k, threshold) for r, q in zip(rankings, labels, strict=True)
        ] == recall.tolist()
        ideal = ideal_grade_matrix(labels, 20)
        assert ndcg_from_grades(grades, ideal, k).tolist() == ndcg.tolist()
        precision = precision_at_k_batch(rankings, labels, k, threshold)
        assert precision_from_grades(grades, k, threshold).tolist() == precision.tolist()
        assert [precision_at_k(r, q, k, threshold) for r, q in zip(rankings, labels, strict=True)] == (
            precision.tolist()
        )


@FAST
@given(
    st.lists(
        st.dictionaries(
            st.text("ab10", max_size=3), st.sampled_from([0.0, 1.0, math.inf, -math.inf, math.nan]) | SCORES
        ),
        max_size=6,
    ),
    st.sampled_from([None, 1, 2, 5]),
)
def test_rank_runs_equals_rank_by_score(runs, depth):
    assert rank_runs(runs, depth) == [rank_by_score(scores)[:depth] for scores in runs]


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


def test_scores_tie_after_rounding_to_float32_like_trec_eval():
    qrels = {"q": {"a": 1}}
    for scores in ({"a": 1.0 + 1e-12, "b": 1.0}, {"a": 1e-300, "b": 0.0}, {"a": 1e39, "b": 1e40}):
        expected = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate({"q": scores})
        assert expected["q"]["recip_rank"] == 0.5  # tied, so "b" > "a" comes first
        assert rank_by_score(scores) == rank_runs([scores])[0] == ["b", "a"]
    assert rank_by_score({"a": 1.0 + 1e-7, "b": 1.0}) == ["a", "b"]  # distinct in float32


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


@pytest.mark.skipif(not DL19.is_dir(), reason=f"real test data not found at {DL19}")
def test_dl19_bm25_all_metrics_equal_pytrec_eval_at_grade_2():
    """MAP, P@10, MRR, nDCG@10 and Recall@100 at TREC DL's relevance level 2, against pytrec_eval on the
    raw run file (real BM25 scores, ties included), per query and averaged the trec_eval -c way."""
    qrels = read_qrels(DL19 / "qrels.dl19-passage.txt")
    with open(DL19 / "run.rankllm.bm25.dl19.top100.txt", encoding="utf-8") as handle:
        run_scores = pytrec_eval.parse_run(handle)
    measures = {"map", "P.10", "recip_rank", "ndcg_cut.10", "recall.100"}
    expected = pytrec_eval.RelevanceEvaluator(qrels, measures, relevance_level=2).evaluate(run_scores)
    run = read_run(DL19 / "run.rankllm.bm25.dl19.top100.txt")
    qids = sorted(qrels)
    rankings, labels = [run.get(q, []) for q in qids], [qrels[q] for q in qids]
    ours = {
        "map": average_precision_batch(rankings, labels, threshold=2),
        "P_10": precision_at_k_batch(rankings, labels, 10, threshold=2),
        "recip_rank": mrr_at_k_batch(rankings, labels, None, threshold=2),
        "ndcg_cut_10": ndcg_at_k_batch(rankings, labels, 10),
        "recall_100": recall_at_k_batch(rankings, labels, 100, threshold=2),
    }
    for name, values in ours.items():
        reference = [expected.get(q, {}).get(name, 0.0) for q in qids]  # -c: 0 for an unretrieved query
        assert values == pytest.approx(reference, abs=1e-9), name
        assert float(np.mean(values)) == pytest.approx(float(np.mean(reference)), abs=1e-12), name


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


def test_kendall_tau_hand_cases():
    # b a c vs a b c: pairs (b,a) discordant, (b,c) and (a,c) concordant -> (2 - 1) / 3.
    assert kendall_tau(list("bac"), list("abc")) == pytest.approx(1 / 3, abs=1e-12)
    assert kendall_tau(list("cba"), list("abc")) == -1.0
    assert kendall_tau(list("abcd"), list("abcd")) == 1.0
    assert kendall_tau(["a"], ["a"]) == kendall_tau([], []) == 1.0
    with pytest.raises(KeyError):
        kendall_tau(list("ax"), list("ab"))


@FAST
@given(st.permutations(range(9)), st.integers(min_value=2, max_value=9))
def test_kendall_tau_matches_scipy_on_permutations(permutation, n):
    order = [i for i in permutation if i < n]
    expected = kendalltau(range(n), order).statistic  # tau-b, equal to tau-a without ties
    assert kendall_tau(order, range(n)) == pytest.approx(expected, abs=1e-12)
