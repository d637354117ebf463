"""Groupwise reranking reward (GroupRank) and the score helpers it is built on.

The model scores every passage of a group in one call (arXiv 2511.11653 §3.1; Diver's
``rerank_groupwise.py``): ``<reason>...</reason> <answer> ```json {"[1]": 5, "[2]": 3, ...} ``` </answer>``.
Dataset columns, one entry per completion:

- ``candidates``: ``[{"doc_id": str, ...}, ...]``, the group in prompt order (passage ``[i]`` is entry i-1);
- ``labels``: ``[{"doc_id": str, "relevance": int}, ...]``, graded relevance for nDCG / Recall (GroupRank
  does not state its relevant set; a data builder may use e.g. the gold top-10);
- ``gold_scores``: ``[{"doc_id": str, "score": float}, ...]`` (or a ``{doc_id: score}`` mapping), the
  teacher's 0-10 scores; a group document without one counts as 0.

The helpers :func:`normalize_scores`, :func:`js_divergence` and :func:`rank_by_scores` are shared by every
reward that compares score distributions or ranks by predicted scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from core.trec import rank_by_score
from rewards.listwise import _column, _doc_ids, _merge, _qrels_column, completion_text, log_components
from rewards.metrics import ndcg_at_k_batch, recall_at_k_batch
from rewards.registry import register_reward
from tasks.parsers_scores import parse_group_scores

NORMALIZERS = ("sum", "softmax")
TIE_BREAKS = ("trec_eval", "prompt")


def normalize_scores(
    scores: Sequence[float], normalizer: str = "sum", temperature: float = 1.0
) -> np.ndarray:
    """Scores -> a probability vector.

    - ``sum``: P_i = max(s_i, 0) / Σ_j max(s_j, 0); the uniform vector when every score is <= 0 (the
      limit of an ε-floor; GroupRank does not say how it normalises).
    - ``softmax``: P_i = exp(s_i / T) / Σ_j exp(s_j / T), computed with the maximum subtracted.
    """
    values = np.asarray(scores, dtype=float)
    if normalizer == "softmax":
        with np.errstate(over="ignore"):  # a gap beyond the float range underflows exp to 0, as it should
            exponents = np.exp((values - values.max()) / temperature)
        return exponents / exponents.sum()
    if normalizer != "sum":
        raise ValueError(f"unknown normalizer {normalizer!r}; expected one of {', '.join(NORMALIZERS)}")
    clipped = np.clip(values, 0.0, None)
    top = clipped.max(initial=0.0)
    if top <= 0:
        return np.full(len(values), 1.0 / len(values))
    scaled = clipped / top  # in [0, 1], so the sum cannot overflow
    return scaled / scaled.sum()


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence in bits: JS(P‖Q) = ½ KL(P‖M) + ½ KL(Q‖M), M = ½(P + Q).

    KL(P‖M) = Σ_i P_i log2(P_i / M_i) with 0·log 0 = 0. For probability vectors JS ∈ [0, 1]; the result is
    clipped to that interval against rounding.
    """
    p_arr, q_arr = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    m_arr = 0.5 * (p_arr + q_arr)
    value = 0.5 * _kl_bits(p_arr, m_arr) + 0.5 * _kl_bits(q_arr, m_arr)
    return float(min(max(value, 0.0), 1.0))


def _kl_bits(p: np.ndarray, m: np.ndarray) -> float:
    support = p > 0  # M_i >= P_i / 2 > 0 wherever P_i > 0
    return float(np.sum(p[support] * np.log2(p[support] / m[support])))


def rank_by_scores(
    doc_ids: Sequence[str], scores: Sequence[float], tie_break: str = "trec_eval"
) -> list[str]:
    """Doc ids by score, best first; ties by doc id descending (``trec_eval``, as trec_eval orders a run,
    see :func:`core.trec.rank_by_score`) or in the given order (``prompt``, GroupRank's stable sort).
    """
    if tie_break == "trec_eval":
        return rank_by_score(dict(zip(doc_ids, scores, strict=True)))
    if tie_break != "prompt":
        raise ValueError(f"unknown tie_break {tie_break!r}; expected one of {', '.join(TIE_BREAKS)}")
    order = sorted(range(len(doc_ids)), key=lambda index: -scores[index])
    return [doc_ids[index] for index in order]


@register_reward("grouprank")
def grouprank_reward(
    completions: list[Any],
    *,
    gamma: float = 0.2,
    eps: float = 0.1,
    k: int = 10,
    bad_json: float = -0.1,
    bad_tags: float = -0.5,
    normalizer: str = "sum",
    temperature: float = 1.0,
    missing_score: float = 0.0,
    relevance_threshold: int = 1,
    tie_break: str = "trec_eval",
    **columns: Any,
) -> list[float]:
    """GroupRank's reward (arXiv 2511.11653 Eq. 4-6; gamma and eps from its §4.1).

    R = ``bad_tags`` (-0.5) when the ``<reason>``/``<answer>`` tags are wrong, ``bad_json`` (-0.1) when the
    tags are right but the JSON is not a valid {label: number} object (see
    :func:`tasks.parsers_scores.parse_group_scores`), else

        R_G = nDCG@k + gamma · Recall@k + eps · (1 − JS(P‖Q)),

    with the group ranked by the predicted scores (:func:`rank_by_scores`; a passage without a score gets
    ``missing_score``), nDCG over the graded ``labels``, Recall counting grade >= ``relevance_threshold``,
    P = normalize(predicted) and Q = normalize(gold) over the group, JS in bits (:func:`js_divergence`).
    Paper constants: gamma 0.2, eps 0.1, the gates -0.1 / -0.5, k = 10. Unverified choices (the paper
    does not state them): the normaliser (``sum`` default, or ``softmax`` with ``temperature``), base-2
    logs, ``missing_score`` 0, the relevant set, the tie order. Range: {bad_tags, bad_json} ∪
    [0, 1 + gamma + eps]. Logs each term's mean and std over the gated-in completions (``grouprank/ndcg``,
    ``/recall``, ``/alignment``).
    """
    _check_options(normalizer, temperature, tie_break, missing_score)
    size = len(completions)
    candidates = _column("grouprank", columns, "candidates", size)
    golds = [_gold_scores(row) for row in _column("grouprank", columns, "gold_scores", size)]
    qrels = _qrels_column("grouprank", columns, size)
    gates: list[float | None] = []
    rankings: list[list[str]] = []
    alignment: list[float] = []
    for completion, row, gold in zip(completions, candidates, golds, strict=True):
        doc_ids = _doc_ids("grouprank", row)
        parsed = parse_group_scores(completion_text(completion), len(doc_ids))
        if parsed.scores is None:
            gates.append(bad_tags if parsed.failure == "bad_tags" else bad_json)
            rankings.append([])
            alignment.append(0.0)
            continue
        predicted = [parsed.scores.get(index + 1, missing_score) for index in range(len(doc_ids))]
        target = [gold.get(doc_id, 0.0) for doc_id in doc_ids]
        p_dist = normalize_scores(predicted, normalizer, temperature)
        q_dist = normalize_scores(target, normalizer, temperature)
        gates.append(None)
        rankings.append(rank_by_scores(doc_ids, predicted, tie_break))
        alignment.append(1.0 - js_divergence(p_dist, q_dist))
    views = {
        "ndcg": ndcg_at_k_batch(rankings, qrels, k),
        "recall": recall_at_k_batch(rankings, qrels, k, relevance_threshold),
        "alignment": np.array(alignment),
    }
    log_components(columns.get("log_metric"), "grouprank", gates, views)
    values = views["ndcg"] + gamma * views["recall"] + eps * views["alignment"]
    return _merge([None if gate is None else float(gate) for gate in gates], values)


def _check_options(normalizer: str, temperature: float, tie_break: str, missing_score: float) -> None:
    if normalizer not in NORMALIZERS:
        raise ValueError(f"reward 'grouprank': unknown normalizer {normalizer!r}; expected sum or softmax")
    if not (isinstance(temperature, (int, float)) and temperature > 0 and np.isfinite(temperature)):
        raise ValueError(f"reward 'grouprank': temperature must be a positive number, got {temperature!r}")
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"reward 'grouprank': unknown tie_break {tie_break!r}; expected trec_eval or prompt")
    if not (isinstance(missing_score, (int, float)) and np.isfinite(missing_score)):
        raise ValueError(f"reward 'grouprank': missing_score must be a finite number, got {missing_score!r}")


def _gold_scores(row: Any) -> dict[str, float]:
    """{doc_id: score} from ``[{"doc_id", "score"}, ...]`` or a mapping; ValueError on a malformed row."""
    try:
        pairs = row.items() if isinstance(row, Mapping) else [(item["doc_id"], item["score"]) for item in row]
        gold = {doc_id: float(score) for doc_id, score in pairs}
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"reward 'grouprank': malformed 'gold_scores' row ({error!r}); need doc_id, score"
        ) from None
    if not all(np.isfinite(score) for score in gold.values()):
        raise ValueError("reward 'grouprank': 'gold_scores' holds a non-finite score")
    return gold
