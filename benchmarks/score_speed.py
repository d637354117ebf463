"""Benchmark: the score stage and the yes/no evaluation against sentence-transformers, same model, same run.

What it measures (issue 12), on one model (``--model``, a checkpoint folder; default a tiny model of
:mod:`core.tiny` built in-process) and one data set (``--data``, a BEIR SciFact folder as in
``/work/shared/data/real/beir-scifact``: test claims, qrels and the Anserini BM25 run; default toy rows), the
``yesno`` task with the Qwen3-Reranker prompt and passages cut to ``--passage-words`` words:

- training: the step time of ``stage: score`` (``trainers.score.main``, unchanged, on
  ``recipes/demo/score.yaml`` with the model, data and batch below) against sentence-transformers'
  ``CrossEncoderTrainer`` on the same checkpoint loaded as a ``CrossEncoder`` (:mod:`trainers.cross_encoder`
  writes its files; both score a pair by logit(yes) - logit(no) of the same prompt) with the same loss
  (``--loss``: ``lambdaloss`` = ``LambdaLoss``, ``ranknet`` = ``RankNetLoss``, equal in value and gradient
  by tests/test_score_losses.py), the same optimizer settings and the same batches: ``--groups`` groups of
  one positive and ``--negatives`` BM25 negatives per step, both read in dataset order, every pair of a step
  in one forward pass (``mini_batch_size=0`` for sentence-transformers). A step is the wall time between
  two ``on_step_end`` callbacks, each run's first step not counted; the arms alternate A B, B A, ... for
  ``--rounds`` runs of ``--steps`` steps; the ratio is the median over rounds of rankrl's median step time
  over sentence-transformers' (target <= 1.05).
- evaluation: pairs/s of the ``yesno`` strategy as ``rankrl eval`` runs it (``tasks.strategy.rerank_rows``
  over ``core.generation.HFBackend`` with ``Sampling.score_tokens``, ``--batch-size`` pairs a forward pass),
  of ``CrossEncoder.predict`` with the same batch size, and of a one-pair-at-a-time loop (one forward pass
  per pair of the same tokens), over the top ``--depth`` BM25 candidates of ``--queries`` queries. After one
  warm-up batch each, the three arms run ``--eval-rounds`` times in rotating order; the ratios are medians
  over rounds of the round's pairs/s ratios (targets: rankrl / sentence-transformers >= 1.0, rankrl / loop
  >= 3). The three must give the same scores; the largest difference is printed. rankrl sorts the pairs by
  length, batches them and runs the tokens every prompt of a batch starts with (system turn and instruction)
  once. On a CPU one pair already keeps the cores busy, so batching gains little there and the ratio to the
  loop is about what that shared prefix saves (1.4x to 1.5x for these prompts); the >= 3 target assumes an
  accelerator, which a single pair leaves mostly idle.

Torch runs ``--threads`` intra-op threads (default 1; see benchmarks/step_overhead.py for why on a shared
machine) in float32, on the GPU when there is one.

Run: ``HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/score_speed.py [--model DIR]
[--data /work/shared/data/real/beir-scifact] [--steps 3] [--rounds 3] [--groups 2] [--negatives 3]
[--queries 6] [--depth 8] [--batch-size 16] [--eval-rounds 3]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from datasets import Dataset
from torch.utils.data import BatchSampler, SequentialSampler
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.step_overhead import StepTimer  # noqa: E402
from core.data import labels_to_qrels, write_dataset  # noqa: E402
from core.generation import HFBackend, encode_prompt, single_token_ids  # noqa: E402
from core.recipe import apply_overrides, read_yaml  # noqa: E402
from core.sources import read_corpus, read_trec  # noqa: E402
from rankrl.smoke import prepare_toy_workspace  # noqa: E402
from tasks import get_task  # noqa: E402
from tasks.base import labelled_split  # noqa: E402
from tasks.strategy import StrategyOptions, rerank_rows  # noqa: E402
from tasks.yesno import YesNoTask  # noqa: E402
from trainers import score  # noqa: E402
from trainers.configs import build_stage_configs  # noqa: E402
from trainers.cross_encoder import add_pair_chat_template, write_cross_encoder_config  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "demo" / "score.yaml"
SCIFACT = ("topics.beir-v1.0.0-scifact.test.tsv.gz", "qrels.beir-v1.0.0-scifact.test.txt")
BM25_RUN = "run.anserini-1.7.1.bm25-flat.scifact.top100.txt"
MODEL_FILES = ("config.json", "generation_config.json")  # with the weights: all but the tokenizer's files
TRAIN_TARGET, ST_TARGET, LOOP_TARGET = 1.05, 1.0, 3.0


def cross_encoder_folder(model: Path, task: YesNoTask, folder: Path) -> Path:
    """``model``'s weights (linked) with its tokenizer given the pair chat template and the
    sentence-transformers files of :mod:`trainers.cross_encoder`: one folder both tools load."""
    folder.mkdir(parents=True)
    for path in model.iterdir():
        if path.name.endswith((".safetensors", ".index.json")) or path.name in MODEL_FILES:
            (folder / path.name).symlink_to(path.resolve())
    tokenizer = AutoTokenizer.from_pretrained(model)
    if not add_pair_chat_template(tokenizer, task):
        raise SystemExit(f"{model}: its chat template cannot render a sentence-transformers pair")
    tokenizer.save_pretrained(folder)
    write_cross_encoder_config(folder, single_token_ids(tokenizer, task.answer_tokens))
    return folder


def read_rows(data: str | None, depth: int) -> list[dict[str, Any]]:
    """Ranking rows: SciFact test claims over their BM25 top ``depth`` (``data``), else toy rows."""
    if data is None:
        return get_task("yesno").toy_splits(256, 0)[0]
    folder = Path(data)
    topics, qrels = (folder / name for name in SCIFACT)
    return read_trec(topics, qrels, folder / BM25_RUN, read_corpus(folder / "corpus.jsonl.gz"), depth)


def group_rows(rows: list[dict[str, Any]], negatives: int, count: int) -> list[dict[str, Any]]:
    """The first ``count`` rows cut to one score group each: the first positive, then the first
    ``negatives`` other candidates (:func:`tasks.base.labelled_split`), in that order."""
    groups = []
    for row in rows:
        positive, others, reason = labelled_split(row, 1, negatives)
        if not reason and len(others) == negatives:
            ids = {candidate["doc_id"] for candidate in positive + others}
            labels = [label for label in row["labels"] if label["doc_id"] in ids]
            groups.append({**row, "candidates": positive + others, "labels": labels})
    if len(groups) < count:
        raise SystemExit(f"only {len(groups)} rows give a group of 1 positive + {negatives} negatives")
    return groups[:count]


def rankrl_config(args: argparse.Namespace, folder: Path, dataset: Path, output_dir: Path) -> dict:
    """The demo score recipe on the benchmark's model, groups and batch."""
    config = {
        **read_yaml(RECIPE),
        "model_name_or_path": str(folder),
        "dataset": str(dataset),
        "eval_dataset": None,
        "output_dir": str(output_dir),
        "task_args": {"max_passage_words": args.passage_words},
        "loss": args.loss,
        "num_negatives": args.negatives,
        "max_length": None,
        "max_steps": args.steps,
        "per_device_train_batch_size": args.groups,
        "train_sampling_strategy": "sequential",
        "use_cpu": not torch.cuda.is_available(),
        "save_strategy": "no",
        "logging_steps": 1,
        "rich_progress": False,
        "disable_tqdm": True,
    }
    return apply_overrides(config, [])


def run_rankrl(config: dict, timer: StepTimer) -> None:
    """``trainers.score.main`` as ``rankrl train`` runs it, with ``timer`` added to its trainer."""
    train_and_save = score.train_and_save

    def timed(trainer: Any, *rest: Any) -> Any:
        trainer.add_callback(timer)
        return train_and_save(trainer, *rest)

    with mock.patch.object(score, "train_and_save", timed):
        score.main(*build_stage_configs(config, RECIPE.name))


def run_sentence_transformers(config: dict, groups: list[dict[str, Any]], timer: StepTimer) -> None:
    """``CrossEncoderTrainer`` on the same checkpoint, groups, batches, loss and optimizer settings."""
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
        losses,
    )

    def sequential(dataset: Dataset, batch_size: int, drop_last: bool, **_: Any) -> BatchSampler:
        return BatchSampler(SequentialSampler(dataset), batch_size, drop_last)

    _, training_args, _ = build_stage_configs(config, RECIPE.name)
    shared = ("learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_steps", "seed")
    st_args = CrossEncoderTrainingArguments(
        output_dir=config["output_dir"],
        per_device_train_batch_size=training_args.per_device_train_batch_size,
        **{name: getattr(training_args, name) for name in shared},
        use_cpu=training_args.use_cpu,
        batch_sampler=sequential,
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
    )
    model = CrossEncoder(config["model_name_or_path"], device="cuda" if torch.cuda.is_available() else "cpu")
    loss_type = {"lambdaloss": losses.LambdaLoss, "ranknet": losses.RankNetLoss}[config["loss"]]
    dataset = Dataset.from_dict(
        {
            "query": [group["query"] for group in groups],
            "docs": [[candidate["text"] for candidate in group["candidates"]] for group in groups],
            "labels": [relevance(group) for group in groups],
        }
    )
    trainer = CrossEncoderTrainer(
        model=model,
        args=st_args,
        train_dataset=dataset,
        loss=loss_type(model, mini_batch_size=0),
        callbacks=[timer],
    )
    trainer.train()


def relevance(row: dict[str, Any]) -> list[float]:
    """Each candidate's grade (0 when unjudged), in candidate order."""
    grades = labels_to_qrels(row["labels"])
    return [float(grades.get(candidate["doc_id"], 0)) for candidate in row["candidates"]]


def compare_training(args: argparse.Namespace, folder: Path, rows: list[dict], workdir: Path) -> None:
    """Alternate the two trainers for ``args.rounds`` rounds; print their medians and paired ratio."""
    groups = group_rows(rows, args.negatives, args.steps * args.groups)
    dataset = workdir / "groups.jsonl"
    write_dataset(groups, dataset)
    arms: dict[str, Callable[[dict, StepTimer], None]] = {
        "rankrl": run_rankrl,
        "st": lambda config, timer: run_sentence_transformers(config, groups, timer),
    }
    timers = {name: StepTimer() for name in arms}
    for round_index in range(args.rounds):
        for name in list(arms) if round_index % 2 == 0 else list(arms)[::-1]:
            config = rankrl_config(args, folder, dataset, workdir / f"train-{name}")
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                arms[name](config, timers[name])
    medians = {name: statistics.median(step for run in t.runs for step in run) for name, t in timers.items()}
    ratio = statistics.median(
        statistics.median(ours) / statistics.median(theirs)
        for ours, theirs in zip(timers["rankrl"].runs, timers["st"].runs, strict=True)
    )
    pairs = args.groups * (1 + args.negatives)
    print(
        f"SCORE TRAINING ({args.loss}, {args.groups} groups = {pairs} pairs a step)  rankrl "
        f"{medians['rankrl']:.3f} s/step   sentence-transformers {medians['st']:.3f} s/step   ratio "
        f"rankrl/ST {ratio:.3f}, median of {args.rounds} rounds "
        f"({'meets' if ratio <= TRAIN_TARGET else 'misses'} target <= {TRAIN_TARGET})"
    )


def evaluation_arms(
    args: argparse.Namespace, folder: Path, task: YesNoTask
) -> dict[str, Callable[[list[dict]], list[float]]]:
    """Each evaluation arm as a function of ranking rows returning every pair's score, in row and candidate
    order: rankrl's ``yesno`` strategy, ``CrossEncoder.predict`` and the one-pair-at-a-time loop."""
    from sentence_transformers.cross_encoder import CrossEncoder

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    cross_encoder = CrossEncoder(str(folder), device=device, model_kwargs={"dtype": torch.float32})
    strategy = task.strategy(StrategyOptions(stages=f"{args.depth}@1"))
    yes, no = single_token_ids(tokenizer, task.answer_tokens)

    def rankrl(rows: list[dict]) -> list[float]:
        results = rerank_rows(rows, strategy, HFBackend(model, tokenizer, args.batch_size))
        by_pair = {
            (result.query_id, doc_id): value
            for result in results
            for doc_id, value in zip(result.doc_ids, result.scores, strict=True)
        }
        return [by_pair[row["query_id"], c["doc_id"]] for row in rows for c in row["candidates"]]

    def sentence_transformers(rows: list[dict]) -> list[float]:
        pairs = [(row["query"], c["text"]) for row in rows for c in row["candidates"]]
        return [
            float(value)
            for value in cross_encoder.predict(pairs, batch_size=args.batch_size, show_progress_bar=False)
        ]

    @torch.no_grad()
    def one_pair_loop(rows: list[dict]) -> list[float]:
        scores = []
        for row in rows:
            for candidate in row["candidates"]:
                messages = task.scoring_prompt(task.pair_example(row, candidate))
                ids = torch.tensor([encode_prompt(tokenizer, messages)], device=device)
                logits = model(input_ids=ids, logits_to_keep=1).logits[0, -1].float()
                scores.append((logits[yes] - logits[no]).item())
        return scores

    return {"rankrl": rankrl, "st": sentence_transformers, "loop": one_pair_loop}


def compare_evaluation(args: argparse.Namespace, folder: Path, task: YesNoTask, rows: list[dict]) -> None:
    """Warm up each arm on one batch, then time all three ``args.eval_rounds`` times in rotating order."""
    rows = [{**row, "candidates": row["candidates"][: args.depth]} for row in rows[: args.queries]]
    count = sum(len(row["candidates"]) for row in rows)
    arms = evaluation_arms(args, folder, task)
    for arm in arms.values():
        arm(rows[: max(1, args.batch_size // args.depth)])
    names = list(arms)
    rates: dict[str, list[float]] = {name: [] for name in names}
    scores: dict[str, list[float]] = {}
    for round_index in range(args.eval_rounds):
        for name in names[round_index % 3 :] + names[: round_index % 3]:
            start = time.perf_counter()
            scores[name] = arms[name](rows)
            rates[name].append(count / (time.perf_counter() - start))
    median = {name: statistics.median(values) for name, values in rates.items()}
    ratio = {
        other: statistics.median(
            ours / theirs for ours, theirs in zip(rates["rankrl"], rates[other], strict=True)
        )
        for other in ("st", "loop")
    }
    gap = {
        other: max(abs(a - b) for a, b in zip(scores["rankrl"], scores[other], strict=True))
        for other in ratio
    }
    print(
        f"YES/NO EVALUATION ({count} pairs, batch {args.batch_size}) rankrl {median['rankrl']:.2f} pairs/s   "
        f"CrossEncoder.predict {median['st']:.2f} pairs/s   one-pair loop {median['loop']:.2f} pairs/s "
        f"(medians of {args.eval_rounds} rounds)"
    )
    for other, label, target in (("st", "ST predict", ST_TARGET), ("loop", "one-pair loop", LOOP_TARGET)):
        print(
            f"  ratio rankrl/{label} {ratio[other]:.2f} ({'meets' if ratio[other] >= target else 'misses'} "
            f"target >= {target}); largest score difference {gap[other]:.1e}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint folder (default: a tiny in-process model)")
    parser.add_argument("--data", help="BEIR SciFact folder (default: toy rows)")
    parser.add_argument("--passage-words", type=int, default=80, help="yesno task_args.max_passage_words")
    parser.add_argument("--loss", choices=("lambdaloss", "ranknet"), default="lambdaloss")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per run (the first not timed)")
    parser.add_argument("--rounds", type=int, default=3, help="training runs of each arm, alternating")
    parser.add_argument("--groups", type=int, default=2, help="groups a step (per_device_train_batch_size)")
    parser.add_argument("--negatives", type=int, default=3, help="negatives a group (num_negatives)")
    parser.add_argument("--queries", type=int, default=6, help="evaluation: queries")
    parser.add_argument("--depth", type=int, default=8, help="evaluation: candidates a query")
    parser.add_argument("--batch-size", type=int, default=16, help="evaluation: pairs a forward pass")
    parser.add_argument("--eval-rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step of every run is not timed")
    torch.set_num_threads(args.threads)
    transformers_logging.disable_progress_bar()
    task = get_task("yesno", max_passage_words=args.passage_words)
    rows = read_rows(args.data, max(args.depth, args.negatives + 8))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model = (
            Path(args.model) if args.model else prepare_toy_workspace(workdir / "toy", task, 64, 1).model_dir
        )
        folder = cross_encoder_folder(model, task, workdir / "model")
        device = "GPU" if torch.cuda.is_available() else f"CPU, {args.threads} thread(s)"
        print(f"{args.model or 'tiny model'}, {args.data or 'toy rows'}, {device}, float32, yesno "
              f"qwen3_reranker prompt, passages cut to {args.passage_words} words")  # fmt: skip
        compare_training(args, folder, rows, workdir)
        compare_evaluation(args, folder, task, rows)


if __name__ == "__main__":
    main()
