"""Listwise reranking rewards (ReasonRank and its nDCG-only ablation) for TRL's GRPO trainer.

Every reward has TRL's signature ``fn(completions, **columns) -> list[float]``. ``completions`` holds
strings or conversational lists ``[{"role": "assistant", "content": ...}]``; the dataset columns carry one
entry per completion:

- ``candidates``: ``[{"doc_id": str, "text": str}, ...]`` in prompt order (passage ``[i]`` is entry i-1);
- ``labels``: ``[{"doc_id": str, "relevance": int}, ...]``, graded; unlisted documents have grade 0;
- ``teacher_order``: the teacher's doc ids, best first, or None (optional column).

Each completion first passes two gates, shared by all rewards here: the output format (ReasonRank's
``<think>...</think> <answer>...</answer>``, else ``format_fail``) and the answer (a valid permutation of the
candidates in ``mode``, see :func:`tasks.parsers.parse_permutation`, else ``answer_fail``). Rewards are
finite floats for any completion text; a malformed dataset row raises ValueError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.data import labels_to_qrels
from rewards.metrics import (
    average_precision_batch,
    mrr_at_k_batch,
    ndcg_at_k_batch,
    precision_at_k_batch,
    rbo,
    recall_at_k_batch,
)
from rewards.registry import register_reward
from tasks.parsers import MODES, Permutation, parse_permutation, parse_think_answer


@register_reward("reasonrank")
def reasonrank_reward(
    completions: list[Any],
    *,
    phi: float = 0.2,
    gamma: float = 0.1,
    rbo_p: float = 1.0,
    k: int = 10,
    mode: str = "strict",
    format_fail: float = -1.0,
    answer_fail: float = 0.0,
    relevance_threshold: int = 1,
    **columns: Any,
) -> list[float]:
    """ReasonRank's multi-view ranking reward (paper Eq. 2-4; code verl/utils/reward_score/ranking.py).

    R = nDCG@k + phi * Recall@k + gamma * RBO(predicted doc ids, teacher_order, p=rbo_p) when both gates
    pass, ``format_fail`` (-1) when the think/answer format is broken and ``answer_fail`` (0) when the answer
    is not a valid permutation. nDCG uses the graded labels with trec_eval's linear gain (with binary labels
    this is ReasonRank's pytrec_eval ``ndcg_cut.10``); Recall@k counts grade >= ``relevance_threshold``;
    RBO with p = 1 is the average overlap of the released code. Without a teacher order (column absent or
    None) the RBO term is 0, so the maximum reward is 1 + phi instead of 1 + phi + gamma. Logs each view's
    mean and std over the gated-in completions (``reasonrank/ndcg``, ``/recall``, ``/rbo``).
    """
    gates, rankings = _gate_or_rank("reasonrank", completions, columns, mode, format_fail, answer_fail)
    qrels = _qrels_column("reasonrank", columns, len(completions))
    teachers = _column("reasonrank", columns, "teacher_order", len(completions), required=False)
    pairs = zip(rankings, teachers, strict=True)
    views = {
        "ndcg": ndcg_at_k_batch(rankings, qrels, k),
        "recall": recall_at_k_batch(rankings, qrels, k, relevance_threshold),
        "rbo": np.array([rbo(pred, teacher, p=rbo_p) if teacher else 0.0 for pred, teacher in pairs]),
    }
    log_components(columns.get("log_metric"), "reasonrank", gates, views)
    return _merge(gates, views["ndcg"] + phi * views["recall"] + gamma * views["rbo"])


METRICS = ("ndcg", "recall", "precision", "mrr", "map")


@register_reward("ranking_metric")
def ranking_metric_reward(
    completions: list[Any],
    *,
    metric: str = "ndcg",
    k: int = 10,
    relevance_threshold: int = 1,
    mode: str = "strict",
    format_fail: float = -1.0,
    answer_fail: float = 0.0,
    score_unlisted: bool = True,
    **columns: Any,
) -> list[float]:
    """One trec_eval metric of the predicted ranking with ReasonRank's gates, else -1 / 0.

    ``metric``: ``ndcg`` (nDCG@k, graded; ReasonRank's "w/o R_m" ablation, Rearank-style), ``recall``
    (Recall@k), ``precision`` (P@k), ``mrr`` (reciprocal rank within the top k) or ``map`` (average
    precision of the whole ranking); the binary ones count grade >= ``relevance_threshold``. Range [0, 1]
    plus the gate values. ``score_unlisted=False`` scores only the passages the answer names: under
    ``partial``/``lenient`` the passages it leaves out earn nothing instead of their gain at the
    prompt-order positions the parse fills them into, so leaving out a relevant passage always costs
    reward (the rankrl demo's GRPO stage).
    """
    if metric not in METRICS:
        raise ValueError(f"reward 'ranking_metric': unknown metric {metric!r}; expected one of {METRICS}")
    gates, rankings = _gate_or_rank(
        "ranking_metric", completions, columns, mode, format_fail, answer_fail, score_unlisted
    )
    qrels = _qrels_column("ranking_metric", columns, len(completions))
    return _merge(gates, _metric_values(metric, rankings, qrels, k, relevance_threshold))


def _metric_values(
    metric: str, rankings: list[list[str]], qrels: list[dict[str, int]], k: int, threshold: int
) -> np.ndarray:
    if metric == "ndcg":
        return ndcg_at_k_batch(rankings, qrels, k)
    if metric == "map":
        return average_precision_batch(rankings, qrels, threshold)
    batch = {"recall": recall_at_k_batch, "precision": precision_at_k_batch, "mrr": mrr_at_k_batch}[metric]
    return batch(rankings, qrels, k, threshold)


@register_reward("listwise_format")
def listwise_format_reward(completions: list[Any], *, mode: str = "strict", **columns: Any) -> list[float]:
    """1.0 if the think/answer format holds and the answer is a valid permutation in ``mode``, else 0.0."""
    gates, _ = _gate_or_rank("listwise_format", completions, columns, mode, 0.0, 0.0)
    return _merge(gates, np.ones(len(completions)))


def completion_text(completion: Any) -> str:
    """The text of a completion: the string itself, or the content of a conversation's last message."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        content = completion[-1].get("content")
        return content if isinstance(content, str) else ""
    return ""


def read_listwise_answer(completion: Any, n: int, mode: str) -> tuple[bool, Permutation]:
    """Both gates on one completion of ``n`` candidates: (format ok, the parsed permutation).

    When the think/answer format fails, the permutation is invalid and carries the format reason.
    """
    parsed = parse_think_answer(completion_text(completion))
    if not parsed.ok:
        return False, Permutation(None, parsed.reason)
    return True, parse_permutation(parsed.answer, n, mode)


def _gate_or_rank(
    name: str,
    completions: list[Any],
    columns: Mapping[str, Any],
    mode: str,
    format_fail: float,
    answer_fail: float,
    score_unlisted: bool = True,
) -> tuple[list[float | None], list[list[str]]]:
    """Per completion: the gate reward (None when both gates pass) and the predicted doc ids, best first;
    without ``score_unlisted`` only the ids the answer itself names."""
    if mode not in MODES:
        raise ValueError(f"reward {name!r}: unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    candidates = _column(name, columns, "candidates", len(completions))
    gates: list[float | None] = []
    rankings: list[list[str]] = []
    for completion, row in zip(completions, candidates, strict=True):
        doc_ids = _doc_ids(name, row)
        format_ok, permutation = read_listwise_answer(completion, len(doc_ids), mode)
        order = permutation.order
        gates.append(None if order is not None else float(format_fail if not format_ok else answer_fail))
        ranked = () if order is None else order if score_unlisted else order[: permutation.num_listed]
        rankings.append([doc_ids[index] for index in ranked])
    return gates, rankings


def log_components(
    log_metric: Any, prefix: str, gates: Sequence[float | None], components: Mapping[str, np.ndarray]
) -> None:
    """Log ``<prefix>/<component>/mean`` and ``/std`` over the completions that passed the gates."""
    passed = np.array([gate is None for gate in gates], dtype=bool)
    if not callable(log_metric) or not passed.any():
        return
    for name, values in components.items():
        log_metric(f"{prefix}/{name}/mean", float(np.mean(values[passed])))
        log_metric(f"{prefix}/{name}/std", float(np.std(values[passed])))


def _merge(gates: list[float | None], values: np.ndarray) -> list[float]:
    return [float(value) if gate is None else gate for gate, value in zip(gates, values, strict=True)]


def _column(name: str, columns: Mapping[str, Any], key: str, size: int, required: bool = True) -> list[Any]:
    """Dataset column ``key``, one entry per completion; an absent optional column reads as all None."""
    values = columns.get(key)
    if values is None and not required:
        return [None] * size
    if values is None:
        present = ", ".join(sorted(columns))
        raise ValueError(f"reward {name!r} needs dataset column {key!r}; got columns: {present}")
    if len(values) != size:
        raise ValueError(f"reward {name!r}: column {key!r} has {len(values)} entries for {size} completions")
    return list(values)


def _doc_ids(name: str, row: Any) -> list[str]:
    try:
        doc_ids = [candidate["doc_id"] for candidate in row]
    except (KeyError, TypeError) as error:
        raise ValueError(f"reward {name!r}: malformed 'candidates' row ({error!r}); need a doc_id") from None
    if not doc_ids:
        raise ValueError(f"reward {name!r}: empty 'candidates' row")
    return doc_ids


def _qrels_column(name: str, columns: Mapping[str, Any], size: int) -> list[dict[str, int]]:
    rows = _column(name, columns, "labels", size)
    try:
        return [labels_to_qrels(row) for row in rows]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"reward {name!r}: malformed 'labels' row ({error!r}); need doc_id, relevance"
        ) from None
