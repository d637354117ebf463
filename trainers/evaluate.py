"""Held-out evaluation of a listwise reranker: greedy generation, lenient parsing, trec_eval nDCG@k.

The same function scores the demo's three stages, the in-training callback and ``rankrl`` evaluation, so
an nDCG logged during training means what the final number means. Generation is batched across queries
with left padding; an answer that needs repair (or has none) is still ranked by the lenient parser and
counted in ``repaired``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from transformers.integrations import is_deepspeed_zero3_enabled

from rewards.metrics import ndcg_at_k_batch
from trainers.data import labels_to_qrels


@dataclass(frozen=True)
class RankingEval:
    """Mean nDCG@k over queries and the share of answers that needed lenient repair."""

    ndcg: float
    repaired: float
    num_queries: int


@torch.no_grad()
def generate_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[list[dict[str, str]]],
    batch_size: int = 64,
    max_new_tokens: int = 64,
) -> list[str]:
    """Greedy completions for chat prompts, batched with left padding; model mode and padding restored.

    Under DeepSpeed ZeRO-3 every rank holds a shard of the weights, so all ranks generate in lockstep
    (``synced_gpus``) until the longest sequence on any rank is done.
    """
    was_training, padding_side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    completions: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer.apply_chat_template(
            list(prompts[start : start + batch_size]),
            add_generation_prompt=True,
            return_tensors="pt",
            padding=True,
            return_dict=True,
        ).to(model.device)
        output = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            synced_gpus=is_deepspeed_zero3_enabled(),
        )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        completions += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    model.train(was_training)
    tokenizer.padding_side = padding_side
    return completions


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

    Every process generates for the same rows (all ranks must join ``generate`` under ZeRO-3); the trainer
    logs from the main process only.
    """

    def __init__(self, trainer: Any, rows: Sequence[dict[str, Any]], task: Any, every: int, k: int = 10):
        self.trainer, self.rows, self.task, self.every, self.k = trainer, list(rows), task, every, k

    def on_step_end(self, args, state, control, **kwargs):
        if self.every and state.global_step % self.every == 0:
            result = evaluate_rankings(
                self.trainer.model, self.trainer.processing_class, self.rows, self.task, self.k
            )
            self.trainer.log({f"eval_ndcg@{self.k}": result.ndcg, "eval_repaired": result.repaired})
