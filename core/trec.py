"""trec_eval's ordering of a run's scores, tied scores included (the validating TREC qrels and run file
readers are :func:`core.sources.read_qrels_file` and :func:`core.sources.read_run_file`).

trec_eval orders a query's retrieved documents by score descending and breaks ties by docid descending
(``strcmp`` order, which for UTF-8 byte strings equals Python's ``str`` order). It keeps scores as C
``float``, so two scores tie when they are equal *after rounding to float32*: 1.0 and 1.0 + 1e-12 tie, as
do 1e-300 and 0.0, and scores beyond ±3.4e38 become ±inf (checked against pytrec_eval). :func:`rank_by_score`
reproduces that ordering, :func:`rank_runs` does the same for many queries at once with numpy, and
``tests/test_metrics.py`` checks both against pytrec_eval. The position of a NaN score is unspecified
(trec_eval's own is an artefact of its sort).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain

import numpy as np


def rank_by_score(scores: Mapping[str, float]) -> list[str]:
    """Doc ids ordered the trec_eval way: float32(score) descending, then docid descending."""
    rounded = _float32(list(scores.values())).tolist()
    return [docid for _, docid in sorted(zip(rounded, scores, strict=True), reverse=True)]


def _float32(values: object) -> np.ndarray:
    """Scores rounded to float32 as trec_eval stores them (overflow gives ±inf, silently)."""
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float64).astype(np.float32)


def rank_runs(runs: Sequence[Mapping[str, float]], depth: int | None = None) -> list[list[str]]:
    """``[rank_by_score(run)[:depth] for run in runs]``, computed with one numpy sort over all queries.

    float32 scores go into a ``(queries, longest run)`` matrix whose rows are argsorted descending. The doc id
    tie-break is only needed where two of the first ``depth`` + 1 sorted scores are equal (a tie further
    down cannot change the top ``depth``); such rows, and rows holding a non-finite score, are ordered by
    :func:`rank_by_score` instead, so the result is always trec_eval's order.
    """
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ValueError(f"depth must be a positive int or None, got {depth!r}")
    scores, sizes, fallback = _score_matrix(runs)
    keep = scores.shape[1] if depth is None else min(depth, scores.shape[1])
    order = np.argsort(-scores, axis=1)[:, : keep + 1]
    fallback |= _needs_tie_break(np.take_along_axis(scores, order, axis=1), sizes)
    rows = zip(
        runs, order[:, :keep].tolist(), np.minimum(sizes, keep).tolist(), fallback.tolist(), strict=True
    )
    return [
        rank_by_score(run)[:depth] if slow else _pick(list(run), ranks[:n]) for run, ranks, n, slow in rows
    ]


def _score_matrix(runs: Sequence[Mapping[str, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 scores as a ``(queries, longest run)`` matrix padded with NaN (argsorted last), the run
    sizes, and which runs hold a non-finite score."""
    sizes = np.fromiter(map(len, runs), dtype=np.int64, count=len(runs))
    valid = np.arange(sizes.max(initial=0)) < sizes[:, None]
    scores = np.full(valid.shape, np.nan, dtype=np.float32)
    scores[valid] = _float32(np.fromiter(chain.from_iterable(r.values() for r in runs), float, sizes.sum()))
    return scores, sizes, (valid & ~np.isfinite(scores)).any(axis=1)


def _needs_tie_break(ordered: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Rows where two adjacent sorted scores, both of real documents, are equal."""
    real_pair = np.arange(1, ordered.shape[1]) < sizes[:, None]
    return ((ordered[:, 1:] == ordered[:, :-1]) & real_pair).any(axis=1)


def _pick(docids: list[str], ranks: list[int]) -> list[str]:
    return [docids[i] for i in ranks]
