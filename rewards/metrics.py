"""Ranking metrics that reproduce trec_eval exactly, from doc-id rankings and qrels dicts.

Conventions (those of trec_eval / pytrec_eval):

- A ranking is a sequence of doc ids, best first. It is taken as already ordered: no scores are involved
  here, so ties cannot occur. Scored documents are ordered the trec_eval way (score rounded to float32
  descending, then doc id descending) by :func:`core.trec.rank_by_score` /
  :func:`core.trec.rank_runs`. A doc id repeated in a ranking counts once, at its first rank (later
  ones are dropped and the ranks close up). Equal grades need no rule: no value depends on their order.
- ``qrels`` maps doc id -> integer grade. Unjudged documents have grade 0 and negative grades count as 0.
  The binary metrics count grade >= ``threshold`` as relevant (trec_eval ``-l``; TREC DL uses 2).
- Per-query values; averaging over queries (trec_eval ``-c``: every qrels query, 0 for a missing one) is
  left to the caller.

Each ``*_batch`` function turns the dicts into a ``(queries, depth)`` :func:`grade_matrix` (plus the ideal
grades or relevant counts the ranking cannot show) and hands it to the array form in
:mod:`rewards.metrics_array`, which holds the formulas; a trainer with grade arrays calls that directly.
The single-query functions are batches of one. :func:`evaluate_batch` computes several measures from one
grade matrix, as ``pytrec_eval.RelevanceEvaluator.evaluate`` does.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from itertools import chain, repeat

import numpy as np

from rewards.metrics_array import (
    average_precision_from_grades,
    check_k,
    check_threshold,
    mrr_from_grades,
    ndcg_from_grades,
    precision_from_grades,
    recall_from_grades,
)

Qrels = Mapping[str, int]


def _distinct_prefix(ranking: Sequence[str], k: int | None) -> list[str]:
    """The first k distinct doc ids of the ranking, each at its first rank (all of them if k is None)."""
    top = list(ranking[:k])
    if len(set(top)) == len(top):  # the common, duplicate-free case: no need to scan the whole ranking
        return top
    return list(dict.fromkeys(ranking))[:k]


def grade_matrix(
    rankings: Sequence[Sequence[str]], qrels_list: Sequence[Qrels], k: int | None = None
) -> np.ndarray:
    """``G[q, r]`` = grade of the document at rank r+1 of query q (0 if unjudged or past the ranking's end).

    ``k=None`` keeps every rank: the width is then the longest (duplicate-free) ranking, at least 1.
    Grades are stored as given; the metrics treat negative ones as 0.
    """
    if k is not None:
        check_k(k)
    tops = [_distinct_prefix(ranking, k) for ranking in rankings]
    width = k if k is not None else max(map(len, tops), default=1) or 1
    flat: list[float] = []
    for top, qrels in zip(tops, qrels_list, strict=True):
        flat.extend(map(qrels.get, top, repeat(0)))
        if len(top) < width:
            flat.extend(repeat(0, width - len(top)))
    return np.array(flat, dtype=float).reshape(len(tops), width)


def judged_grade_matrix(qrels_list: Sequence[Qrels]) -> np.ndarray:
    """``J[q, :]`` = the grades of every judged document of query q (qrels order), padded with 0.

    One pass over all judgements, shared by the ideal grades and the relevant counts; its width is the
    largest number of judgements of one query.
    """
    sizes = np.fromiter(map(len, qrels_list), dtype=np.int64, count=len(qrels_list))
    judged = np.arange(sizes.max(initial=0)) < sizes[:, None]
    grades = np.zeros(judged.shape)
    grades[judged] = np.fromiter(chain.from_iterable(q.values() for q in qrels_list), float, sizes.sum())
    return grades


def ideal_grade_matrix(qrels_list: Sequence[Qrels], k: int) -> np.ndarray:
    """``I[q, r]`` = the (r+1)-th largest positive grade among ALL judged documents of query q, else 0."""
    check_k(k)
    return _ideal(judged_grade_matrix(qrels_list), k)


def relevant_counts(qrels_list: Sequence[Qrels], threshold: int = 1) -> np.ndarray:
    """``R[q]`` = number of judged documents of query q with grade >= threshold."""
    check_threshold(threshold)
    return _relevant(judged_grade_matrix(qrels_list), threshold)


def _ideal(judged: np.ndarray, k: int | None) -> np.ndarray:
    """Each row's positive grades sorted descending, cut or zero-padded to width k (kept whole if None)."""
    best = -np.sort(-np.maximum(judged, 0.0), axis=1)[:, :k]
    ideal = np.zeros((len(judged), best.shape[1] if k is None else k))
    ideal[:, : best.shape[1]] = best
    return ideal


def _relevant(judged: np.ndarray, threshold: int) -> np.ndarray:
    return (judged >= threshold).sum(axis=1).astype(float)


def ndcg_at_k_batch(
    rankings: Sequence[Sequence[str]], qrels_list: Sequence[Qrels], k: int = 10
) -> np.ndarray:
    """trec_eval ``ndcg_cut.k`` per query: DCG@k(ranking) / DCG@k(ideal), with gain = grade.

    The ideal ordering sorts every judged document with grade > 0 of the query (not only the retrieved
    ones) by grade, so relevant documents missing from the ranking lower the score. 0.0 when the query has
    no document with grade > 0. See :func:`rewards.metrics_array.ndcg_from_grades`.
    """
    return ndcg_from_grades(grade_matrix(rankings, qrels_list, k), ideal_grade_matrix(qrels_list, k), k)


def recall_at_k_batch(
    rankings: Sequence[Sequence[str]], qrels_list: Sequence[Qrels], k: int = 10, threshold: int = 1
) -> np.ndarray:
    """trec_eval ``recall.k`` per query: |{d in top-k : grade(d) >= t}| / |{d : grade(d) >= t}|.

    ``threshold`` t is trec_eval's ``-l`` relevance level (2 on TREC DL) and must be >= 1; 0.0 when the
    query has no document with grade >= t.
    """
    counts = relevant_counts(qrels_list, threshold)
    return recall_from_grades(grade_matrix(rankings, qrels_list, k), counts, k, threshold)


def precision_at_k_batch(
    rankings: Sequence[Sequence[str]], qrels_list: Sequence[Qrels], k: int = 10, threshold: int = 1
) -> np.ndarray:
    """trec_eval ``P.k`` per query: |{d in top-k : grade(d) >= t}| / k, also when fewer than k retrieved."""
    return precision_from_grades(grade_matrix(rankings, qrels_list, k), k, threshold)


def mrr_at_k_batch(
    rankings: Sequence[Sequence[str]], qrels_list: Sequence[Qrels], k: int | None = 10, threshold: int = 1
) -> np.ndarray:
    """Reciprocal rank per query: 1 / (rank of the first document with grade >= t within the top k), else 0.

    Averaged over queries this is MRR@k. ``k=None`` scans the whole ranking: trec_eval ``recip_rank``.
    """
    return mrr_from_grades(grade_matrix(rankings, qrels_list, k), k, threshold)


def average_precision_batch(
    rankings: Sequence[Sequence[str]], qrels_list: Sequence[Qrels], threshold: int = 1
) -> np.ndarray:
    """trec_eval ``map`` per query (average precision over the whole ranking):

    AP = (1/R) Σ_{r : grade_r >= t} P@r with R = |{d judged : grade(d) >= t}|, so relevant documents
    that were not retrieved count as precision 0; 0.0 when R = 0. Averaged over queries this is MAP.
    """
    counts = relevant_counts(qrels_list, threshold)
    return average_precision_from_grades(grade_matrix(rankings, qrels_list), counts, threshold)


_MEASURE = re.compile(r"(?P<kind>ndcg_cut|recall|P|mrr)_(?P<k>[1-9][0-9]*)|(?P<whole>recip_rank|map)")


def evaluate_batch(
    rankings: Sequence[Sequence[str]],
    qrels_list: Sequence[Qrels],
    measures: Iterable[str],
    threshold: int = 1,
) -> dict[str, np.ndarray]:
    """Several measures per query from ONE grade matrix and ONE pass over the qrels, like
    ``pytrec_eval.RelevanceEvaluator(qrels, ..., relevance_level=threshold).evaluate(run)``.

    ``measures`` are pytrec_eval's result names: ``ndcg_cut_k``, ``recall_k``, ``P_k``, ``recip_rank``
    (no cutoff) and ``map``, plus ``mrr_k`` (reciprocal rank within the top k). Values equal those of the
    ``*_batch`` functions; computing them together skips the repeated dict lookups.
    """
    check_threshold(threshold)
    parsed = {name: _parse_measure(name) for name in measures}
    cutoffs = [k for _, k in parsed.values()]
    grades = grade_matrix(rankings, qrels_list, None if None in cutoffs else max(cutoffs, default=1))
    judged = judged_grade_matrix(qrels_list)
    ideal, counts = _ideal(judged, None), _relevant(judged, threshold)
    compute = {
        "ndcg_cut": lambda k: ndcg_from_grades(grades, ideal, k),
        "recall": lambda k: recall_from_grades(grades, counts, k, threshold),
        "P": lambda k: precision_from_grades(grades, k, threshold),
        "mrr": lambda k: mrr_from_grades(grades, k, threshold),
        "recip_rank": lambda k: mrr_from_grades(grades, None, threshold),
        "map": lambda k: average_precision_from_grades(grades, counts, threshold),
    }
    return {name: compute[kind](k) for name, (kind, k) in parsed.items()}


def _parse_measure(name: str) -> tuple[str, int | None]:
    match = _MEASURE.fullmatch(name)
    if match is None:
        raise ValueError(
            f"unknown measure {name!r}; known: ndcg_cut_k, recall_k, P_k, mrr_k, recip_rank, map"
        )
    if match["whole"]:
        return match["whole"], None
    return match["kind"], int(match["k"])


def ndcg_at_k(ranking: Sequence[str], qrels: Qrels, k: int = 10) -> float:
    """nDCG@k of one ranking; see :func:`ndcg_at_k_batch`."""
    return float(ndcg_at_k_batch([ranking], [qrels], k)[0])


def recall_at_k(ranking: Sequence[str], qrels: Qrels, k: int = 10, threshold: int = 1) -> float:
    """Recall@k of one ranking; see :func:`recall_at_k_batch`."""
    return float(recall_at_k_batch([ranking], [qrels], k, threshold)[0])


def precision_at_k(ranking: Sequence[str], qrels: Qrels, k: int = 10, threshold: int = 1) -> float:
    """P@k of one ranking; see :func:`precision_at_k_batch`."""
    return float(precision_at_k_batch([ranking], [qrels], k, threshold)[0])


def mrr_at_k(ranking: Sequence[str], qrels: Qrels, k: int | None = 10, threshold: int = 1) -> float:
    """Reciprocal rank of one ranking (MRR@k of a single query); see :func:`mrr_at_k_batch`."""
    return float(mrr_at_k_batch([ranking], [qrels], k, threshold)[0])


def average_precision(ranking: Sequence[str], qrels: Qrels, threshold: int = 1) -> float:
    """Average precision of one ranking; see :func:`average_precision_batch`."""
    return float(average_precision_batch([ranking], [qrels], threshold)[0])


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


def kendall_tau(ranking: Sequence[Hashable], reference: Sequence[Hashable]) -> float:
    """Kendall's τ between two rankings of the same n items: (concordant − discordant pairs) / (n(n − 1) / 2).

    1 for identical rankings, −1 for reversed ones, 1.0 when n < 2. Rankings are permutations (no ties), so
    this τ-a equals τ-b (``scipy.stats.kendalltau``'s default). An item of ``ranking`` missing from
    ``reference`` is a KeyError.
    """
    n = len(reference)
    if n < 2:
        return 1.0
    position = {item: rank for rank, item in enumerate(reference)}
    order = np.array([position[item] for item in ranking])
    pair_signs = np.sign(order[None, :] - order[:, None])  # +1 where a later item is also later in reference
    return float(np.triu(pair_signs, 1).sum() / (n * (n - 1) / 2))


def _first_positions(items: Sequence[Hashable]) -> dict[Hashable, int]:
    positions: dict[Hashable, int] = {}
    for index, item in enumerate(items):
        positions.setdefault(item, index)
    return positions
