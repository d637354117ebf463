"""Held-out evaluation of a listwise reranker: greedy generation, lenient parsing, trec_eval nDCG@k.

The same function scores the demo's three stages and the in-training callback, so an nDCG logged during
training means what the final number means; the callback can also run any ``rankrl eval`` strategy
(:mod:`evaluation`). Generation goes through :class:`core.generation.HFBackend`,
batched across queries with left padding; an answer that needs repair (or has none) is still ranked by the
lenient parser and counted in ``repaired``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from core.data import labels_to_qrels
from core.generation import HFBackend, Sampling, generate_texts
from rewards.metrics import ndcg_at_k_batch
from tasks.strategy import Strategy, rerank_rows


@dataclass(frozen=True)
class RankingEval:
    """Mean nDCG@k over queries and the share of answers that needed lenient repair."""

    ndcg: float
    repaired: float
    num_queries: int


def generate_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[list[dict[str, str]]],
    batch_size: int = 64,
    max_new_tokens: int = 64,
) -> list[str]:
    """Greedy completions for chat prompts through :class:`core.generation.HFBackend`
    (left padding, lockstep generation under ZeRO-3, model mode and padding side restored)."""
    return generate_texts(HFBackend(model, tokenizer, batch_size), prompts, Sampling(max_new_tokens))


def evaluate_rankings(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[dict[str, Any]],
    task: Any,
    k: int = 10,
    batch_size: int = 64,
    max_new_tokens: int = 64,
) -> RankingEval:
    """nDCG@k of the model's rankings of ``rows`` (ranking examples) against their graded labels."""
    completions = generate_completions(
        model, tokenizer, [task.prompt(row) for row in rows], batch_size, max_new_tokens
    )
    ranked = [task.rank(row, completion) for row, completion in zip(rows, completions, strict=True)]
    qrels = [labels_to_qrels(row["labels"]) for row in rows]
    scores = ndcg_at_k_batch([ranking for ranking, _ in ranked], qrels, k)
    repaired = sum(not clean for _, clean in ranked) / max(len(rows), 1)
    return RankingEval(float(np.mean(scores)) if len(rows) else 0.0, repaired, len(rows))


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

    With a ``strategy`` (any of :mod:`evaluation`, built by
    :func:`evaluation.config.build_strategy`) the rows are ranked exactly as ``rankrl eval`` ranks
    them, so the in-training number means what the final evaluation's does; without one, by one greedy
    completion of the task's prompt per row. Every process generates for the same rows (all ranks must join
    ``generate`` under ZeRO-3); the trainer logs from the main process only.
    """

    def __init__(
        self,
        trainer: Any,
        rows: Sequence[dict[str, Any]],
        task: Any,
        every: int,
        k: int = 10,
        strategy: Strategy | None = None,
    ):
        self.trainer, self.rows, self.task, self.every, self.k = trainer, list(rows), task, every, k
        self.strategy = strategy

    def on_step_end(self, args, state, control, **kwargs):
        if self.every and state.global_step % self.every == 0:
            model, tokenizer = self.trainer.model, self.trainer.processing_class
            if self.strategy is None:
                result = evaluate_rankings(model, tokenizer, self.rows, self.task, self.k)
            else:
                result = evaluate_with_strategy(model, tokenizer, self.rows, self.strategy, self.k)
            self.trainer.log({f"eval_ndcg@{self.k}": result.ndcg, "eval_repaired": result.repaired})
