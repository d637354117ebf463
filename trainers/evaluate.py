"""Held-out evaluation of a reranker during and after training: a task's strategy, trec_eval nDCG@k.

The same function scores the demo's stages, the in-training callback and the end of a training run, with
the strategy the task builds (:meth:`tasks.base.Task.strategy`; for listwise rows of at most 20 candidates
one greedy completion of the training prompt, parsed leniently), or the one a ``rankrl eval`` config
describes, so an nDCG logged during training means what ``rankrl eval`` reports. Generation goes through
:class:`core.generation.HFBackend`, batched across queries with left padding; a model output that needed
repair or fell back is counted in ``repaired``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from core.data import labels_to_qrels
from core.generation import HFBackend
from rewards.metrics import ndcg_at_k_batch
from tasks.strategy import Strategy, rerank_rows


@dataclass(frozen=True)
class RankingEval:
    """Mean nDCG@k over queries and the share of answers that needed lenient repair."""

    ndcg: float
    repaired: float
    num_queries: int


def evaluate_with_strategy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[dict[str, Any]],
    strategy: Strategy,
    k: int = 10,
    batch_size: int = 64,
) -> RankingEval:
    """nDCG@k of ``rows`` ranked by a ``rankrl eval`` strategy (e.g. the sliding window over 100 candidates);
    ``repaired`` is the share of queries with a repaired or fallen-back model output."""
    results = rerank_rows(rows, strategy, HFBackend(model, tokenizer, batch_size))
    qrels = [labels_to_qrels(row["labels"]) for row in rows]
    scores = ndcg_at_k_batch([result.doc_ids for result in results], qrels, k)
    repaired = sum(result.fallbacks + result.repairs > 0 for result in results) / max(len(rows), 1)
    return RankingEval(float(np.mean(scores)) if len(rows) else 0.0, repaired, len(rows))


def random_order_ndcg(
    rows: Sequence[dict[str, Any]], k: int = 10, shuffles: int = 20, seed: int = 0
) -> float:
    """Expected nDCG@k of a random ordering of each query's candidates, estimated over ``shuffles`` orders."""
    rng = random.Random(seed)
    rankings, qrels = [], []
    for row in rows:
        doc_ids = [candidate["doc_id"] for candidate in row["candidates"]]
        for _ in range(shuffles):
            rankings.append(rng.sample(doc_ids, len(doc_ids)))
            qrels.append(labels_to_qrels(row["labels"]))
    return float(np.mean(ndcg_at_k_batch(rankings, qrels, k))) if rankings else 0.0


class RankingEvalCallback(TrainerCallback):
    """Log held-out ``eval_ndcg@k`` every ``every`` steps through the trainer's ``report_to`` loggers.

    The rows are ranked by ``strategy`` (:func:`trainers.pipeline.evaluation_strategy`), the way
    ``rankrl eval`` ranks them. Every process generates for the same rows (all ranks must join ``generate``
    under ZeRO-3); the trainer logs from the main process only.
    """

    def __init__(
        self, trainer: Any, rows: Sequence[dict[str, Any]], strategy: Strategy, every: int, k: int = 10
    ):
        self.trainer, self.rows, self.strategy, self.every, self.k = trainer, list(rows), strategy, every, k

    def on_step_end(self, args, state, control, **kwargs):
        if self.every and state.global_step % self.every == 0:
            model, tokenizer = self.trainer.model, self.trainer.processing_class
            result = evaluate_with_strategy(model, tokenizer, self.rows, self.strategy, self.k)
            self.trainer.log({f"eval_ndcg@{self.k}": result.ndcg, "eval_repaired": result.repaired})
