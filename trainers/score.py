"""Score learning: train s(q, d) = logit(yes) - logit(no) of the ``yesno`` task with a ranking loss.

The reranker of monoT5, Qwen3-Reranker and ProRank's second stage (arXiv 2506.03487): no generation and no
new head, the causal LM's two answer-token logits at the answer position of the task's scoring prompt (its
prompt plus the prefill, :meth:`tasks.yesno.YesNoTask.scoring_prompt`, rendered by
:func:`core.generation.encode_prompt` exactly as ``rankrl eval`` renders it) give the score, and a loss of
:mod:`trainers.score_losses` (``loss``) is optimised over groups of one positive and ``num_negatives`` hard
negatives per query: the first non-positive candidates of a ranking row in first-stage order, i.e. the
negatives a BM25 or dense miner (``rankrl synth``) ranked highest. A step takes
``per_device_train_batch_size`` groups, one forward pass over all their pairs (left-padded, the answer
position last, position ids from each pair's first token, as :class:`core.generation.HFBackend` scores).

The checkpoint scores with ``rankrl eval task=yesno`` and also loads as a sentence-transformers
``CrossEncoder`` that gives the same scores (:mod:`trainers.cross_encoder`).

    rankrl train recipes/demo/score.yaml
    accelerate launch --config_file recipes/accelerate/ddp.yaml -m trainers.score RECIPE.yaml key=value
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainingArguments
from trl import ModelConfig

from core.data import labels_to_qrels, load_dataset_file
from core.generation import encode_prompt, single_token_ids
from core.recipe import RecipeError
from tasks import Task
from tasks.base import labelled_split
from trainers.configs import ScriptArguments
from trainers.cross_encoder import add_pair_chat_template, write_cross_encoder_config
from trainers.pipeline import policy, run_cli, setup_task, train_and_save
from trainers.score_losses import LOSSES, group_loss

logger = logging.getLogger("rankrl")


@dataclass
class ScoreConfig(TrainingArguments):
    """transformers' ``TrainingArguments`` plus the score stage's own keys."""

    loss: str = field(
        default="listwise",
        metadata={
            "help": "Ranking loss on s = logit(yes) - logit(no) (trainers/score_losses.py): 'bce' "
            "(pointwise, relevant = 1), 'listwise' (softmax cross-entropy of the positive over its group), "
            "'ranknet' (pairwise logistic), 'lambdaloss' (NDCG-Loss2++ weighted) or 'margin_mse' (distils "
            "the rows' teacher_scores)."
        },
    )
    num_negatives: int = field(
        default=7,
        metadata={
            "help": "Hard negatives per group: the first non-positive candidates of a row in first-stage "
            "order; rows with fewer are skipped. Groups per query: task_args.positives_per_query (one per "
            "positive); task_args.negatives_per_query is not used by this stage."
        },
    )
    temperature: float = field(
        default=1.0,
        metadata={"help": "'listwise': scores are divided by it (sentence-transformers' scale = 1 / it)."},
    )
    sigma: float = field(
        default=1.0, metadata={"help": "'ranknet' / 'lambdaloss': score-difference factor in the sigmoid."}
    )
    max_length: int | None = field(
        default=1024,
        metadata={
            "help": "Most tokens of one pair's prompt; a group with a longer pair is skipped (shorten "
            "passages with task_args.max_passage_words). None: no limit."
        },
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Keep false: the group collator reads the dataset's own columns."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in LOSSES:
            raise ValueError(f"loss {self.loss!r}: expected one of {', '.join(LOSSES)}")
        if self.num_negatives < 1 or self.temperature <= 0:
            raise ValueError("num_negatives must be >= 1 and temperature > 0")
        if self.remove_unused_columns:
            raise ValueError("remove_unused_columns must stay false: the collator reads the group columns")


def score_groups(
    task: Task, rows: Iterable[Mapping[str, Any]], num_negatives: int
) -> tuple[list[dict[str, Any]], Counter]:
    """Groups of one positive and ``num_negatives`` hard negatives (module docstring), each with its scoring
    prompts, relevance grades and, when the row has them, teacher scores; and the rows skipped, by reason."""
    groups, skipped = [], Counter()
    for row in rows:
        positives, negatives, reason = labelled_split(row, task.positives_per_query, num_negatives)
        reason = reason or ("too_few_negatives" if len(negatives) < num_negatives else "")
        if reason:
            skipped[reason] += 1
            continue
        grades = labels_to_qrels(row.get("labels") or [])
        scores = row.get("teacher_scores") or []
        teacher = dict(zip([c["doc_id"] for c in row["candidates"]], scores, strict=True)) if scores else {}
        for positive in positives:
            chosen = [positive, *negatives]
            groups.append(
                {
                    "query_id": row["query_id"],
                    "prompts": [task.scoring_prompt(task.pair_example(row, c)) for c in chosen],
                    "relevance": [float(grades.get(c["doc_id"], 0)) for c in chosen],
                    "teacher_scores": [float(teacher[c["doc_id"]]) for c in chosen] if teacher else [],
                }
            )
    return groups, skipped


def tokenize_groups(
    groups: Sequence[Mapping[str, Any]], tokenizer: PreTrainedTokenizerBase, max_length: int | None
) -> tuple[list[dict[str, Any]], int]:
    """Each group's prompts as token ids (:func:`core.generation.encode_prompt`); groups with a pair longer
    than ``max_length`` are left out and counted."""
    tokenized, too_long = [], 0
    for group in groups:
        input_ids = [encode_prompt(tokenizer, prompt) for prompt in group["prompts"]]
        if max_length and max(map(len, input_ids)) > max_length:
            too_long += 1
            continue
        tokenized.append({"input_ids": input_ids, "relevance": group["relevance"]})
        if group["teacher_scores"]:
            tokenized[-1]["teacher_scores"] = group["teacher_scores"]
    return tokenized, too_long


@dataclass
class GroupCollator:
    """Pads the pairs of a batch of groups (group after group) on the left, so every pair's answer position is
    the last; ``relevance`` (and ``teacher_scores``) are ``(groups, group size)``."""

    pad_token_id: int

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        pairs = [ids for feature in features for ids in feature["input_ids"]]
        width = max(map(len, pairs))
        input_ids = torch.tensor([[self.pad_token_id] * (width - len(ids)) + list(ids) for ids in pairs])
        attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in pairs])
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": (attention_mask.cumsum(-1) - 1).clamp(min=0),
            "relevance": torch.tensor([feature["relevance"] for feature in features], dtype=torch.float32),
        }
        if all("teacher_scores" in feature for feature in features):
            teacher = [feature["teacher_scores"] for feature in features]
            batch["teacher_scores"] = torch.tensor(teacher, dtype=torch.float32)
        return batch


def pair_scores(
    model: PreTrainedModel, batch: Mapping[str, torch.Tensor], answer_ids: Sequence[int]
) -> torch.Tensor:
    """s = logit(answer_ids[0]) - logit(answer_ids[1]) at the last position of each left-padded pair."""
    output = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        use_cache=False,
        logits_to_keep=1,
    )
    logits = output.logits[:, -1].float()
    return logits[:, answer_ids[0]] - logits[:, answer_ids[1]]


class ScoreTrainer(Trainer):
    """transformers' Trainer with the loss of ``args.loss`` on the groups' answer-token scores.

    Also keeps what :class:`trainers.throughput.ThroughputCallback` reads from TRL trainers: a per-step metric
    log (``_metrics``, averaged into each log entry) and the tokens processed by all processes.
    """

    loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides it by the accumulation steps

    def __init__(self, *args: Any, answer_ids: Sequence[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answer_ids = list(answer_ids)
        self._metrics: dict[str, defaultdict] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self._total_train_tokens = 0

    def compute_loss(
        self,
        model: PreTrainedModel,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        relevance = inputs["relevance"]
        scores = pair_scores(model, inputs, self.answer_ids).view(relevance.shape)
        args = self.args
        loss = group_loss(
            args.loss, scores, relevance, inputs.get("teacher_scores"), args.temperature, args.sigma
        )
        tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()[None]).sum()
        self._total_train_tokens += int(tokens)
        first = (scores[:, :1] > scores[:, 1:]).all(dim=1).float().mean()
        self._metrics["train"]["positive_first"].append(float(first))
        return (loss, {"scores": scores}) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        logs.update({key: sum(values) / len(values) for key, values in self._metrics[mode].items() if values})
        super().log(logs, start_time)  # in place, as TRL's trainers log: train()'s metrics gain "epoch"
        self._metrics[mode].clear()


def query_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ranking rows as they are, and a task's one-candidate examples (``rankrl synth`` output of the yes/no
    task: one row per pair) merged back into one row per query, candidates and labels in dataset order."""
    merged: dict[str, dict[str, Any]] = {}
    result = []
    for row in rows:
        if not row.get("task") or len(row["candidates"]) != 1:
            result.append(dict(row))
            continue
        if row["query_id"] not in merged:
            empty = {"candidates": [], "labels": [], "teacher_scores": [], "task": "", "completion": ""}
            merged[row["query_id"]] = {**row, **empty, "example_id": ""}
            result.append(merged[row["query_id"]])
        merged[row["query_id"]]["candidates"] += row["candidates"]
        merged[row["query_id"]]["labels"] += row["labels"]
    return result


def load_groups(task: Task, script_args: ScriptArguments, args: ScoreConfig) -> list[dict[str, Any]]:
    """The groups of the recipe's ranking rows (:func:`score_groups`); skipped rows are logged, and a recipe
    whose rows give none, or lack the teacher scores its loss needs, is a one-line error before any model
    is loaded."""
    path = script_args.dataset
    rows = query_rows(load_dataset_file(path, kind="ranking", split=script_args.dataset_split).to_list())
    rows = rows[: script_args.max_train_samples] if script_args.max_train_samples else rows
    groups, skipped = score_groups(task, rows, args.num_negatives)
    for reason, count in skipped.items():
        logger.warning("%s: %d rows give no score group (%s)", path, count, reason)
    if not groups:
        raise RecipeError(f"{path}: no score groups of 1 positive + {args.num_negatives} negatives")
    if args.loss == "margin_mse" and not all(group["teacher_scores"] for group in groups):
        raise RecipeError(f"{path}: loss margin_mse needs teacher_scores (one per candidate) in every row")
    return groups


def score_dataset(
    groups: Sequence[Mapping[str, Any]], tokenizer: PreTrainedTokenizerBase, max_length: int | None
) -> Dataset:
    """The groups tokenized (:func:`tokenize_groups`), those with a pair over ``max_length`` logged."""
    tokenized, too_long = tokenize_groups(groups, tokenizer, max_length)
    if too_long:
        logger.warning("%d score groups have a pair over max_length %s: left out", too_long, max_length)
    if not tokenized:
        raise RecipeError(f"every score group has a pair longer than max_length {max_length}")
    return Dataset.from_list(tokenized)


def main(script_args: ScriptArguments, training_args: ScoreConfig, model_args: ModelConfig) -> ScoreTrainer:
    """Score-train ``model_args.model_name_or_path`` on the recipe's ranking rows and save it to
    ``output_dir`` with the files that load it as a sentence-transformers ``CrossEncoder``."""
    task = setup_task(script_args, training_args)
    if not hasattr(task, "scoring_prompt"):
        raise RecipeError(f"recipe: stage score needs task yesno (an answer-token scorer), not {task.name!r}")
    groups = load_groups(task, script_args, training_args)
    parts = policy(model_args)
    model, tokenizer, peft_config = parts["model"], parts["processing_class"], parts["peft_config"]
    answer_ids = single_token_ids(tokenizer, task.answer_tokens)
    interoperable = add_pair_chat_template(tokenizer, task)
    if peft_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config)
    trainer = ScoreTrainer(
        model=model,
        args=training_args,
        train_dataset=score_dataset(groups, tokenizer, training_args.max_length),
        data_collator=GroupCollator(tokenizer.pad_token_id),
        processing_class=tokenizer,
        answer_ids=answer_ids,
    )
    train_and_save(trainer, script_args, task)
    if interoperable and trainer.args.should_save:
        write_cross_encoder_config(training_args.output_dir, answer_ids)
    return trainer


if __name__ == "__main__":
    run_cli(main, ScoreConfig)
