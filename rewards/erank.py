"""ERank's pointwise rewards (arXiv 2509.00520 §3.2-3.3, App. I) for task ``pointwise``.

Each completion scores one (query, document) prompt with ``<think>...</think><answer>N</answer>``, N in
0..10 (:func:`tasks.parsers_scores.parse_int_answer`). Dataset columns, one entry per completion:
``query_id``, ``is_positive`` (bool or 0/1) and ``ref_score`` (t, the frozen SFT model's score of the
document; needed only where a formula uses it), as :meth:`tasks.pointwise.PointwiseTask.reward_columns`
gives them (t: the teacher's score, else the label's).

``erank_rr`` is cross-prompt (scope ``query``): all N × G rollouts of a query's N
documents are ranked together by their scores s, φ = 1 + the number of rollouts scored strictly higher
(ties share the minimum rank), Φ_max = the worst rank of a formatted positive rollout. Then

- unformatted rollout: ``fmt_penalty`` (−1);
- positive: 1/φ (``positive_form: reciprocal``, r_RR), or (1/log2(φ + 1)) / IDCG with IDCG = Σ_{r=1..P}
  1/log2(r + 1) over the query's P positive rollouts (``positive_form: ndcg``, the r_nDCG ablation);
- negative with φ <= Φ_max (ranked above, or tied with, some positive): ``neg_violation`` (−1);
- negative ranked below every positive (or the query has no formatted positive): 1 − (s − t)² / smax².

The paper gives r_RR in words; its exact equation could not be recovered, so every constant is an argument and
the tie rule (a tie with the worst positive is a violation) is a documented choice. ``erank_se`` is the
paper's pointwise ablation r_SE: 1 − (s − t)²/smax² when formatted, else ``fmt_penalty``.
Ranges with the defaults: ``erank_rr`` [−1, 1]; ``erank_se`` [0, 1] ∪ {fmt_penalty}.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from rewards.listwise import _column, completion_text
from rewards.registry import register_reward
from rewards.rubric import _flag
from tasks.parsers_scores import parse_int_answer

POSITIVE_FORMS = ("reciprocal", "ndcg")


def erank_scores(completions: Sequence[Any], require_think: bool = True) -> list[int | None]:
    """The 0-10 score of each completion, None where it is not formatted."""
    return [
        parse_int_answer(completion_text(c), 0, 10, require_think=require_think).value for c in completions
    ]


def query_rewards(
    scores: Sequence[float | None],
    positives: Sequence[bool],
    references: Sequence[float | None],
    *,
    positive_form: str = "reciprocal",
    neg_violation: float = -1.0,
    fmt_penalty: float = -1.0,
    smax: float = 10.0,
) -> list[float]:
    """ERank's rewards for the rollouts of one query (see the module docstring)."""
    valid = np.array([s is not None for s in scores])
    values = np.array([s if s is not None else -np.inf for s in scores], dtype=float)
    ranks = 1 + (values[valid][None, :] > values[:, None]).sum(axis=1)
    positive_ranks = ranks[valid & np.array(positives, dtype=bool)]
    worst_positive = positive_ranks.max() if positive_ranks.size else 0
    ideal = np.sum(1.0 / np.log2(np.arange(2, sum(positives) + 2)))
    rewards = []
    for row, score in enumerate(scores):
        if score is None:
            rewards.append(float(fmt_penalty))
        elif positives[row]:
            rank = ranks[row]
            rewards.append(1.0 / rank if positive_form == "reciprocal" else 1.0 / np.log2(rank + 1) / ideal)
        elif ranks[row] <= worst_positive:
            rewards.append(float(neg_violation))
        else:
            rewards.append(squared_error_reward(score, references[row], smax))
    return rewards


def squared_error_reward(score: float, reference: float | None, smax: float = 10.0) -> float:
    """1 − (s − t)² / smax²; ValueError when the reference score t is missing."""
    if reference is None:
        raise ValueError("a negative document ranked below every positive needs its 'ref_score'")
    return float(1.0 - (score - float(reference)) ** 2 / smax**2)


def _query_reward(
    name: str, completions: list[Any], columns: Mapping[str, Any], **options: Any
) -> list[float]:
    size = len(completions)
    if options["positive_form"] not in POSITIVE_FORMS:
        raise ValueError(f"reward {name!r}: unknown positive_form {options['positive_form']!r}")
    query_ids = _column(name, columns, "query_id", size)
    positives = [_flag(name, value) for value in _column(name, columns, "is_positive", size)]
    references = _column(name, columns, "ref_score", size, required=False)
    scores = erank_scores(completions, options.pop("require_think"))
    queries: dict[Hashable, list[int]] = defaultdict(list)
    for row, query_id in enumerate(query_ids):
        queries[query_id].append(row)
    rewards = [0.0] * size
    for query_id, rows in queries.items():
        try:
            values = query_rewards(
                [scores[r] for r in rows],
                [positives[r] for r in rows],
                [references[r] for r in rows],
                **options,
            )
        except ValueError as error:
            raise ValueError(f"reward {name!r}: query {query_id!r}: {error}") from None
        for row, value in zip(rows, values, strict=True):
            rewards[row] = value
    return rewards


@register_reward("erank_rr", scope="query")
def erank_rr_reward(
    completions: list[Any],
    *,
    positive_form: str = "reciprocal",
    neg_violation: float = -1.0,
    fmt_penalty: float = -1.0,
    smax: float = 10.0,
    require_think: bool = True,
    **columns: Any,
) -> list[float]:
    """ERank's listwise-derived reward r_RR (``positive_form: reciprocal``, positives get 1/φ) or its r_nDCG
    ablation (``positive_form: ndcg``); see the module docstring."""
    return _query_reward(
        "erank_rr",
        completions,
        columns,
        positive_form=positive_form,
        require_think=require_think,
        neg_violation=neg_violation,
        fmt_penalty=fmt_penalty,
        smax=smax,
    )


@register_reward("erank_se")
def erank_se_reward(
    completions: list[Any],
    *,
    fmt_penalty: float = -1.0,
    smax: float = 10.0,
    require_think: bool = True,
    **columns: Any,
) -> list[float]:
    """ERank's pointwise ablation r_SE = 1 − (s − t)²/smax² against ``ref_score`` t, else ``fmt_penalty``."""
    references = _column("erank_se", columns, "ref_score", len(completions))
    scores = erank_scores(completions, require_think)
    return [
        float(fmt_penalty) if score is None else squared_error_reward(score, reference, smax)
        for score, reference in zip(scores, references, strict=True)
    ]
