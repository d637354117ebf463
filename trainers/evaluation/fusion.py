"""Hybrid fusion of reranker and first-stage scores (Rank-R1 ``hybrid.py``, ERank App. G; spec §E).

Algorithm: both score lists of a query are normalised over the query's reranked documents, then
``fused = w * norm(first_stage) + (1 - w) * norm(reranker)`` with w = ``weight`` (Rank-R1 v0.2: min-max,
w = 0.1; ERank: z-score, w = 0.2). Normalisations: ``minmax`` (x - min) / (max - min) and ``zscore``
(x - mean) / std (population std); a constant list normalises to all zeros. A strategy that returns no scores
(listwise, setwise, multi-stage pointwise) contributes its rank as a score, n - rank + 1. Documents are
sorted by the fused score, ties in reranked order.
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
