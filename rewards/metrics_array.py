"""Ranking metrics on grade arrays: the array entry point that rewards and :mod:`rewards.metrics` share.

Every function takes ``grades``, a ``(queries, candidates)`` array where ``grades[q, r]`` is the relevance
grade of the document that query q's ranking puts at rank r + 1 (0 for an unjudged document, and for
padding past the end of a shorter ranking), plus what the metric needs from the judgements that the ranking
does not show: the query's ideal grades (nDCG) or its number of relevant documents (Recall, MAP). A
trainer that holds each candidate's grade can build ``grades`` by fancy indexing with the predicted
permutations, ``labels[np.arange(Q)[:, None], perms]``, and score a batch without a dict lookup.

Ties: the order of the columns *is* the ranking, so no ties exist at this level. Documents with equal
scores must be ordered before their grades reach these functions; :func:`core.trec.rank_by_score` and
:func:`core.trec.rank_runs` do it as trec_eval does (score rounded to float32 descending, then doc id
descending). Equal grades in the ideal ordering need no rule, since swapping them changes no value. Sums
run left to right (:func:`sequential_sum`), so values match pytrec_eval's bit for bit in practice and a
query's value does not depend on the batch it is scored in.

Conventions are trec_eval's (``-c`` averaging, i.e. over every judged query, is left to the caller):
negative grades count as 0 in nDCG; a binary metric counts a document as relevant when its grade is
``>= threshold`` (trec_eval's ``-l``, 2 on TREC DL, at least 1); a query without a relevant (for nDCG:
positive-grade) document scores 0.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def check_k(k: int) -> None:
    """Raise ``ValueError`` unless the cutoff ``k`` is a positive int (bools rejected)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"cutoff k must be a positive int, got {k!r}")


def check_threshold(threshold: int) -> None:
    """Raise ``ValueError`` unless the relevance threshold is an int >= 1 (bools rejected)."""
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ValueError(f"relevance threshold must be an int >= 1, got {threshold!r}")


def _matrix(grades: ArrayLike) -> np.ndarray:
    matrix = np.asarray(grades, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"grades must be a (queries, candidates) array, got shape {matrix.shape}")
    return matrix


def _top(grades: ArrayLike, k: int | None) -> np.ndarray:
    """The first k columns (all of them when k is None) of the grade matrix."""
    if k is None:
        return _matrix(grades)
    check_k(k)
    return _matrix(grades)[:, :k]


def _hits(grades: ArrayLike, k: int | None, threshold: int) -> np.ndarray:
    """Boolean ``(queries, min(k, candidates))`` matrix: is the document at each rank relevant."""
    check_threshold(threshold)
    return _top(grades, k) >= threshold


def _per_query(values: ArrayLike, queries: int) -> np.ndarray:
    vector = np.asarray(values, dtype=float).reshape(-1)
    if vector.shape != (queries,):
        raise ValueError(f"expected one value per query ({queries}), got shape {np.shape(values)}")
    return vector


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, with 0 where the denominator is 0 (a query without relevant documents)."""
    numerator = np.asarray(numerator, dtype=float)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def sequential_sum(terms: np.ndarray) -> np.ndarray:
    """Row sums added left to right, as trec_eval's loops add them.

    Neither a matrix product (BLAS rounds differently with the batch size) nor ``sum`` (its pairwise, SIMD
    blocking changes with the width): a query's value must not depend on its batch or on zero padding.
    """
    return np.cumsum(terms, axis=1)[:, -1] if terms.shape[1] else np.zeros(len(terms))


def dcg(grades: ArrayLike) -> np.ndarray:
    """DCG = Σ_{r=1..n} max(grade_r, 0) / log2(r + 1), row-wise (trec_eval's linear gain)."""
    matrix = _matrix(grades)
    discounts = np.log2(np.arange(2, matrix.shape[1] + 2))
    return sequential_sum(np.maximum(matrix, 0.0) / discounts)


def ndcg_from_grades(grades: ArrayLike, ideal: ArrayLike, k: int = 10) -> np.ndarray:
    """trec_eval ``ndcg_cut.k`` per query: DCG@k(grades) / DCG@k(ideal); 0 when the ideal DCG is 0.

    ``ideal[q]`` holds the grades of ALL judged documents of query q sorted descending (any width, padded
    with 0, e.g. :func:`rewards.metrics.ideal_grade_matrix`), not only those of the candidates, so relevant
    documents missing from the ranking lower the score.
    """
    gains = dcg(_top(grades, k))
    ideal_gains = dcg(_top(ideal, k))
    return safe_ratio(gains, _per_query(ideal_gains, len(gains)))


def recall_from_grades(
    grades: ArrayLike, n_relevant: ArrayLike, k: int = 10, threshold: int = 1
) -> np.ndarray:
    """trec_eval ``recall.k`` per query: |{r <= k : grade_r >= t}| / R, R = ``n_relevant[q]``.

    R is the number of judged documents of the query with grade >= t; 0 when R = 0.
    """
    hits = _hits(grades, k, threshold).sum(axis=1)
    return safe_ratio(hits, _per_query(n_relevant, len(hits)))


def precision_from_grades(grades: ArrayLike, k: int = 10, threshold: int = 1) -> np.ndarray:
    """trec_eval ``P.k`` per query: |{r <= k : grade_r >= t}| / k (k even when fewer were retrieved)."""
    return _hits(grades, k, threshold).sum(axis=1) / k


def mrr_from_grades(grades: ArrayLike, k: int | None = 10, threshold: int = 1) -> np.ndarray:
    """Reciprocal rank per query (its mean over queries is MRR@k): 1 / r* with r* the first rank <= k
    holding a document of grade >= t; 0 when there is none. ``k=None`` gives trec_eval's ``recip_rank``,
    which has no cutoff.
    """
    hits = _hits(grades, k, threshold)
    first = hits.argmax(axis=1)
    return np.where(hits.any(axis=1), 1.0 / (first + 1.0), 0.0)


def average_precision_from_grades(grades: ArrayLike, n_relevant: ArrayLike, threshold: int = 1) -> np.ndarray:
    """trec_eval ``map`` per query: AP = (1/R) Σ_{r : grade_r >= t} P@r, over the whole ranking.

    R = ``n_relevant[q]``, the number of judged documents with grade >= t (relevant documents that were
    not retrieved contribute precision 0); 0 when R = 0.
    """
    hits = _hits(grades, None, threshold)
    precision_at_rank = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    total = sequential_sum(precision_at_rank * hits)
    return safe_ratio(total, _per_query(n_relevant, len(total)))
