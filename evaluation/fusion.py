"""A query's final ranking from the reranker and the first stage: hybrid fusion of their scores (Rank-R1
``hybrid.py``, ERank App. G), then the first-stage tail below the reranked depth.

Algorithm: both score lists of a query are normalised over the query's reranked documents, then
``fused = w * norm(first_stage) + (1 - w) * norm(reranker)`` with w = ``weight`` (Rank-R1 v0.2: min-max,
w = 0.1; ERank: z-score, w = 0.2). Normalisations: ``minmax`` (x - min) / (max - min) and ``zscore``
(x - mean) / std (population std); a constant list normalises to all zeros. A strategy that returns no scores
(listwise, setwise, multi-stage pointwise) contributes its rank as a score, n - rank + 1. Documents are
sorted by the fused score, ties in reranked order.

Tail: the first-stage candidates below the reranked depth follow the reranked (or fused) documents in their
first-stage order, as rank_llm and pyserini write reranked runs, so every measure compares the same documents
with the first stage. Their scores continue below the lowest reranked score, one apart (``lowest - 1``,
``lowest - 2``, ...); a query without scores keeps none (its writer scores by rank).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

METHODS = ("none", "minmax", "zscore")


def normalize(values: Sequence[float], method: str) -> np.ndarray:
    """``values`` min-max or z-score normalised (zeros when they are all equal)."""
    array = np.asarray(values, dtype=float)
    if method == "minmax":
        spread = array.max() - array.min() if len(array) else 0.0
        return (array - array.min()) / spread if spread > 0 else np.zeros_like(array)
    if method == "zscore":
        std = array.std() if len(array) else 0.0
        return (array - array.mean()) / std if std > 0 else np.zeros_like(array)
    raise ValueError(f"fusion method {method!r}; expected minmax or zscore")


def fuse(
    doc_ids: Sequence[str],
    reranker_scores: Sequence[float] | None,
    first_stage: Mapping[str, float],
    method: str,
    weight: float,
) -> tuple[list[str], list[float]]:
    """Doc ids re-sorted by the fused score, with those scores (module docstring)."""
    n = len(doc_ids)
    reranker = list(reranker_scores) if reranker_scores is not None else [float(n - i) for i in range(n)]
    first = [float(first_stage.get(doc_id, 0.0)) for doc_id in doc_ids]
    fused = weight * normalize(first, method) + (1.0 - weight) * normalize(reranker, method)
    order = sorted(range(n), key=lambda i: -fused[i])
    return [doc_ids[i] for i in order], [float(fused[i]) for i in order]


def append_tail(
    doc_ids: Sequence[str], scores: Sequence[float] | None, tail: Sequence[str]
) -> tuple[list[str], list[float] | None]:
    """``doc_ids`` then ``tail``, with tail scores strictly below ``scores`` (module docstring)."""
    if scores is None:
        return [*doc_ids, *tail], None
    lowest = min(scores, default=0.0)
    return [*doc_ids, *tail], [*scores, *(lowest - rank for rank in range(1, len(tail) + 1))]
