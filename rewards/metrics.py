"""Ranking metrics that reproduce trec_eval exactly, computed with numpy.

Conventions (those of trec_eval / pytrec_eval):

- A ranking is a sequence of doc ids, best first. It is taken as already ordered: no scores are involved
  here, so ties cannot occur (to order scored documents the trec_eval way use
  :func:`rewards.trec_io.rank_by_score`). A doc id repeated in a ranking counts once, at its first rank.
- ``qrels`` maps doc id -> integer grade. Unjudged documents have grade 0 and negative grades count as 0.
- Per-query values; averaging over queries (trec_eval ``-c``: every qrels query, 0 for a missing one) is
  left to the caller.

Every metric is built on :func:`grade_matrix`, a ``(queries, k)`` array of the grades at ranks 1..k, so a
batch of queries is scored with array operations; the single-query functions are batches of one. Further
rank-based metrics (MRR, P@k, MAP) can be written as reductions of the same matrix.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

Qrels = Mapping[str, int]


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"cutoff k must be a positive int, got {k!r}")


def grade_matrix(rankings: Sequence[Sequence[str]], qrels_list: Sequence[Qrels], k: int) -> np.ndarray:
    """``G[q, r]`` = max(grade, 0) of the document at rank r+1 of query q; 0 past the ranking's end."""
    _check_k(k)
    grades = np.zeros((len(rankings), k))
    for row, (ranking, qrels) in enumerate(zip(rankings, qrels_list, strict=True)):
        top = list(dict.fromkeys(ranking))[:k]
        grades[row, : len(top)] = [max(qrels.get(docid, 0), 0) for docid in top]
    return grades


def ideal_grade_matrix(qrels_list: Sequence[Qrels], k: int) -> np.ndarray:
    """``I[q, r]`` = the (r+1)-th largest positive grade among ALL judged documents of query q, else 0."""
    _check_k(k)
    ideal = np.zeros((len(qrels_list), k))
    for row, qrels in enumerate(qrels_list):
        best = sorted((grade for grade in qrels.values() if grade > 0), reverse=True)[:k]
        ideal[row, : len(best)] = best
    return ideal


def _dcg(grades: np.ndarray) -> np.ndarray:
    """DCG = Σ_{r=1..k} grade_r / log2(r + 1), row-wise (trec_eval's linear gain)."""
    discounts = np.log2(np.arange(2, grades.shape[1] + 2))
    return (grades / discounts).sum(axis=1)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, with 0 where the denominator is 0 (a query without relevant documents)."""
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def ndcg_at_k_batch(
    rankings: Sequence[Sequence[str]], qrels_list: Sequence[Qrels], k: int = 10
) -> np.ndarray:
    """trec_eval ``ndcg_cut.k`` per query: DCG@k(ranking) / DCG@k(ideal), with gain = grade.

    The ideal ordering sorts every judged document with grade > 0 of the query (not only the retrieved
    ones) by grade, so relevant documents missing from the ranking lower the score. 0.0 when the query has
    no document with grade > 0.
    """
    dcg = _dcg(grade_matrix(rankings, qrels_list, k))
    return _safe_ratio(dcg, _dcg(ideal_grade_matrix(qrels_list, k)))


def recall_at_k_batch(
    rankings: Sequence[Sequence[str]], qrels_list: Sequence[Qrels], k: int = 10, threshold: int = 1
) -> np.ndarray:
    """trec_eval ``recall.k`` per query: |{d in top-k : grade(d) >= t}| / |{d : grade(d) >= t}|.

    ``threshold`` t is trec_eval's ``-l`` relevance level (2 on TREC DL) and must be >= 1; 0.0 when the
    query has no document with grade >= t.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ValueError(f"relevance threshold must be an int >= 1, got {threshold!r}")
    hits = (grade_matrix(rankings, qrels_list, k) >= threshold).sum(axis=1).astype(float)
    relevant = np.array([sum(grade >= threshold for grade in qrels.values()) for qrels in qrels_list], float)
    return _safe_ratio(hits, relevant)


def ndcg_at_k(ranking: Sequence[str], qrels: Qrels, k: int = 10) -> float:
    """nDCG@k of one ranking; see :func:`ndcg_at_k_batch`."""
    return float(ndcg_at_k_batch([ranking], [qrels], k)[0])


def recall_at_k(ranking: Sequence[str], qrels: Qrels, k: int = 10, threshold: int = 1) -> float:
    """Recall@k of one ranking; see :func:`recall_at_k_batch`."""
    return float(recall_at_k_batch([ranking], [qrels], k, threshold)[0])


def rbo(pred: Sequence[Hashable], gold: Sequence[Hashable], p: float = 1.0) -> float:
    """Rank-biased overlap of two rankings, truncated at depth k = min(len(pred), len(gold)).

    With the agreement A_d = |pred[:d] ∩ gold[:d]| / d:

    - p = 1.0: average overlap AO = (1/k) Σ_{d=1..k} A_d. This is what ``rbo.RankingSimilarity(S, T).rbo()``
      (rbo 0.1.3 defaults) returns, hence ReasonRank's released reward.
    - 0 < p < 1: Webber et al.'s RBO = (1 - p) Σ_{d=1..k} p^{d-1} A_d, *not* extrapolated beyond depth k,
      so it is a lower bound (RBO_min-style) that reaches 1 only as k grows.

    Returns 0.0 when either list is empty (rbo 0.1.3 returns 1 when both are). An item repeated within a
    list counts once, at its first position.
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"rbo persistence p must be in (0, 1], got {p!r}")
    k = min(len(pred), len(gold))
    if k == 0:
        return 0.0
    gold_first = _first_positions(gold[:k])
    # An item shared by both prefixes joins the overlap at the depth where its later occurrence appears.
    joins = [max(i, gold_first[x]) for x, i in _first_positions(pred[:k]).items() if x in gold_first]
    overlap = np.cumsum(np.bincount(np.array(joins, dtype=int), minlength=k))
    agreement = overlap / np.arange(1, k + 1)
    if p == 1.0:
        return float(agreement.mean())
    return float(((1.0 - p) * p ** np.arange(k)) @ agreement)


def _first_positions(items: Sequence[Hashable]) -> dict[Hashable, int]:
    positions: dict[Hashable, int] = {}
    for index, item in enumerate(items):
        positions.setdefault(item, index)
    return positions
