"""``rankrl tts``: a reasoner's accuracy against samples and tokens under test-time scaling strategies.

Steps: load the problems (:func:`core.data.load_dataset_file`, kind ``reasoning``, columns renamed from
``problem_field`` / ``answer_field``) and render each prompt with the math task
(:meth:`tasks.math.MathTask.prompt` with ``task_args``: the prompt it was trained on); then,
``problems_per_batch`` problems at a time (a *chunk*), sample max(n_values) completions per problem in one
``generate`` call, score them when a scorer is set (:mod:`~evaluation.tts_score`) and run budget forcing
once per budget, appending each problem's samples and budget-forced completions to ``cache.jsonl``
(:class:`~evaluation.cache.RecordCache`); sweep the rules over sample prefixes
(:func:`~evaluation.tts_report.sweep`) and add the unbiased pass@k of every k in n_values
(:func:`~evaluation.tts_report.pass_at_k_rows`); write ``tts.csv``, ``tts.md`` (also printed), ``tts.png``,
``samples.jsonl`` and ``manifest.json``. With ``regret_cutoffs``, each chunk also forces the first
``regret_traces`` samples of each problem to answer after every episode (MRT's regret,
:mod:`~evaluation.tts_regret`), and ``regret.json``, ``regret.md`` (also printed) and ``regret.png`` hold
the normalised regret at each cutoff.

Resume: the cache's fingerprint covers everything that decides a record (model, backend, the problems and
their prompts, sampling, seed, chunk and batch sizes, scorer, budget-forcing texts); with ``resume`` a rerun
reuses the cached problems and runs only the chunk steps (samples, or one budget) that lack a problem. Each
chunk step first seeds torch's generator from (seed, chunk index, step), so a resumed run draws the same
samples as an uninterrupted one and writes the same files, bar the measured timing columns.

Cost: ``tokens_per_problem`` is exact (the first n samples' generated tokens). Latency of a prefix is the
measured generation time (summed over chunks, those of an interrupted run included) in proportion to the
prefix's share of the generated tokens, plus, for a scored rule, n/N of the scoring time; budget-forcing rows
are timed directly. The manifest has the measured totals.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import torch

from core.data import load_dataset_file
from core.generation import GenerationBackend, Messages
from evaluation.cache import RecordCache, fingerprint
from evaluation.inputs import sha256
from evaluation.runner import load_backend, package_versions
from evaluation.tts import SCORED_RULES, Sample, budget_force, sample_problems
from evaluation.tts_config import TTSConfig
from evaluation.tts_regret import Regret, regret_markdown, regret_records, regret_rows, write_regret
from evaluation.tts_report import (
    markdown_table,
    pass_at_k_rows,
    score_row,
    sweep,
    with_latency,
    write_plot,
    write_table,
)
from evaluation.tts_score import Scorer, reward_model_scorer, reward_scorer
from tasks import get_task


def load_problems(config: TTSConfig) -> list[dict[str, Any]]:
    """The checked problem rows (``problem``, ``answer``, ``solution``, ``id``) cut to ``max_problems``;
    a missing column is a one-line ``DataError``."""
    if not config.dataset:
        raise ValueError("dataset is not set: a .jsonl/.parquet file of problems and reference answers")
    renames = {config.problem_field: "problem", config.answer_field: "answer"}
    rows = load_dataset_file(config.dataset, "reasoning", config.split, renames).to_list()
    return rows[: config.max_problems] if config.max_problems is not None else rows


def build_scorer(config: TTSConfig) -> Scorer | None:
    """The configured reward or reward model, or None when neither is set."""
    if config.reward:
        return reward_scorer(config.reward, config.reward_args)
    if config.reward_model:
        return reward_model_scorer(config.reward_model, config.scorer_batch_size, config.dtype)
    return None


def run_tts(
    config: TTSConfig, backend: GenerationBackend | None = None, scorer: Scorer | None = None
) -> dict:
    """Sweep and budget forcing end to end; returns the manifest (also written to ``output_dir``)."""
    problems = load_problems(config)
    scorer = scorer or build_scorer(config)
    if backend is None:
        backend = load_backend(
            config.model, dtype=config.dtype, batch_size=config.batch_size, seed=config.seed
        )
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = get_task("math", **config.task_args)
    prompts = [task.prompt(row) for row in problems]
    references = [row["answer"] for row in problems]
    key = _cache_key(config, backend, scorer is not None, problems, prompts)
    cache = RecordCache(out / "cache.jsonl", key, config.resume)
    records = _generate(cache, config, backend, scorer, problems, prompts)
    samples, scores, cost = [[] for _ in problems], None, {}
    table = []
    if config.n_values:
        samples, scores, cost = _sampled(records["samples"], scorer is not None, config)
        rows = sweep(samples, scores, references, config.n_values, config.strategies)
        table += _timed(rows + pass_at_k_rows(samples, references, config.n_values), cost, config)
    forced = {budget: records[f"budget_{budget}"] for budget in config.budgets}
    table += [_forced_row(budget, done, references) for budget, done in forced.items()]
    write_table(out, table)
    write_plot(out / "tts.png", table)
    if config.save_samples:
        completions = {b: [Sample(**record["sample"]) for record in done] for b, done in forced.items()}
        _write_samples(out / "samples.jsonl", problems, samples, scores, completions)
    manifest = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": config.model,
        "backend": backend.name,
        "config": asdict(config),
        "inputs": {"dataset": config.dataset, "problems": len(problems), **_checksum(config.dataset)},
        "sampling": asdict(config.sampling(max(config.n_values, default=1))),
        "cost": cost,
        "table": table,
        "versions": package_versions(),
    }
    if config.regret_cutoffs:
        done = records[_regret_step(config)]
        curves = [record["curves"] for record in done]
        manifest["regret"] = regret_rows(curves, config.regret_cutoffs)
        manifest["cost"]["regret_s"] = sum(record["seconds"] for record in done)
        write_regret(out, manifest["regret"], curves)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str), encoding="utf-8")
    print(markdown_table(table))
    if config.regret_cutoffs:
        print(regret_markdown(manifest["regret"]))
    return manifest


# Settings that decide no cached record: where the inputs are and the task's options (their rows and
# prompts are hashed instead), which rules and n the report shows (max(n_values) is in the sampling), which
# budgets run (records are per budget), the regret settings (records are per setting; cutoffs apply to the
# cached curves) and what is written.
UNCACHED = (
    "dataset", "split", "problem_field", "answer_field", "max_problems", "task_args", "output_dir",
    "n_values", "strategies", "budgets", "save_samples", "resume", "regret_cutoffs", "regret_traces",
    "regret_samples", "regret_max_new_tokens", "regret_group_size",
)  # fmt: skip

Step = Callable[[list[int]], list[dict[str, Any]]]
"""One step of a chunk (its samples, or one budget): the JSON record of each problem index given."""


def _cache_key(
    config: TTSConfig,
    backend: GenerationBackend,
    scored: bool,
    problems: Sequence[Mapping[str, Any]],
    prompts: Sequence[Messages],
) -> str:
    """Fingerprint of everything that decides a cached record (module docstring)."""
    settings = {name: value for name, value in asdict(config).items() if name not in UNCACHED}
    return fingerprint(
        {
            **settings,
            "backend": backend.name,
            "scored": scored,
            "sampling": asdict(config.sampling(max(config.n_values, default=1))),
            "problems": fingerprint(problems),
            "prompts": fingerprint(prompts),
        }
    )


def _generate(
    cache: RecordCache,
    config: TTSConfig,
    backend: GenerationBackend,
    scorer: Scorer | None,
    problems: Sequence[Mapping[str, Any]],
    prompts: Sequence[Messages],
) -> dict[str, list[dict[str, Any]]]:
    """Every step's records in problem order, running the chunk steps the cache lacks (module docstring)."""
    steps: dict[str, Step] = {}
    if config.n_values:
        steps["samples"] = partial(_sample_chunk, config, backend, scorer, problems, prompts)
    for budget in config.budgets:
        steps[f"budget_{budget}"] = partial(_force_chunk, config, backend, prompts, budget)
    if config.regret_cutoffs:  # after "samples": it reads the chunk's cached samples
        steps[_regret_step(config)] = partial(
            _regret_chunk, config.regret(), backend, prompts, problems, cache
        )
    size = config.problems_per_batch
    for number, start in enumerate(range(0, len(problems), size)):
        chunk = list(range(start, min(start + size, len(problems))))
        for name, step in steps.items():
            if missing := {i for i in chunk if f"{name}/{i}" not in cache.done}:
                torch.manual_seed(int(fingerprint([config.seed, number, name])[:15], 16))
                for i, record in zip(chunk, step(chunk), strict=True):
                    if i in missing:
                        cache.append({"key": f"{name}/{i}", **record})
    return {name: [cache.done[f"{name}/{i}"] for i in range(len(problems))] for name in steps}


def _sample_chunk(
    config: TTSConfig,
    backend: GenerationBackend,
    scorer: Scorer | None,
    problems: Sequence[Mapping[str, Any]],
    prompts: Sequence[Messages],
    chunk: list[int],
) -> list[dict[str, Any]]:
    """max(n_values) samples per problem of ``chunk``, their scores (None without a scorer) and each
    problem's equal share of the chunk's generation and scoring time."""
    rows, messages = [problems[i] for i in chunk], [prompts[i] for i in chunk]
    samples, generation_s = sample_problems(backend, messages, config.sampling(max(config.n_values)))
    start = time.perf_counter()
    scores = scorer(rows, messages, samples) if scorer else [None] * len(chunk)
    scoring_s = time.perf_counter() - start if scorer else 0.0
    return [
        {
            "samples": [asdict(s) for s in mine],
            "scores": mine_scores,
            "generation_s": generation_s / len(chunk),
            "scoring_s": scoring_s / len(chunk),
        }
        for mine, mine_scores in zip(samples, scores, strict=True)
    ]


def _force_chunk(
    config: TTSConfig, backend: GenerationBackend, prompts: Sequence[Messages], budget: int, chunk: list[int]
) -> list[dict[str, Any]]:
    """The budget-forced completion of each problem of ``chunk`` and its equal share of the time taken."""
    start = time.perf_counter()
    done = budget_force(backend, [prompts[i] for i in chunk], config.forcing(budget), config.sampling(1))
    seconds = (time.perf_counter() - start) / len(chunk)
    return [{"sample": asdict(sample), "seconds": seconds} for sample in done]


def _regret_step(config: TTSConfig) -> str:
    """The cache step of the regret curves: one per regret setting."""
    return f"regret_{fingerprint(asdict(config.regret()))[:12]}"


def _regret_chunk(
    regret: Regret,
    backend: GenerationBackend,
    prompts: Sequence[Messages],
    problems: Sequence[Mapping[str, Any]],
    cache: RecordCache,
    chunk: list[int],
) -> list[dict[str, Any]]:
    """The regret curves of the first ``regret.traces`` cached samples of each problem of ``chunk``."""
    samples = [[Sample(**s) for s in cache.done[f"samples/{i}"]["samples"]] for i in chunk]
    references = [problems[i]["answer"] for i in chunk]
    return regret_records(backend, [prompts[i] for i in chunk], samples, references, regret)


def _sampled(
    records: Sequence[Mapping[str, Any]], scored: bool, config: TTSConfig
) -> tuple[list[list[Sample]], list[list[float]] | None, dict[str, Any]]:
    """The samples and scores of the cached ``records`` (one per problem) and the measured cost."""
    samples = [[Sample(**s) for s in record["samples"]] for record in records]
    tokens = sum(s.num_tokens for problem in samples for s in problem)
    generation_s = sum(record["generation_s"] for record in records)
    return (
        samples,
        [record["scores"] for record in records] if scored else None,
        {
            "samples_per_problem": max(config.n_values),
            "generated_tokens": tokens,
            "generated_tokens_per_problem": tokens / max(len(records), 1),
            "generation_s": generation_s,
            "problems_per_s": len(records) / generation_s if generation_s > 0 else None,
            "scoring_s": sum(record["scoring_s"] for record in records),
        },
    )


def _forced_row(
    budget: int, records: Sequence[Mapping[str, Any]], references: Sequence[str]
) -> dict[str, Any]:
    """The table row of one budget from its cached ``records`` (one per problem), timed by their seconds."""
    picked = [record["sample"]["answer"] for record in records]
    tokens = sum(record["sample"]["num_tokens"] for record in records)
    row = score_row("budget_forcing", 1, budget, picked, references, tokens)
    return with_latency(row, sum(record["seconds"] for record in records))


def _timed(rows: list[dict[str, Any]], cost: Mapping[str, Any], config: TTSConfig) -> list[dict[str, Any]]:
    """Sweep rows with latency: the pass time by the prefix's token share, plus n/N of any scoring time."""
    timed, top = [], max(config.n_values)
    for row in rows:
        share = row["tokens_per_problem"] * row["problems"] / max(cost["generated_tokens"], 1)
        seconds = cost["generation_s"] * share
        if row["strategy"] in SCORED_RULES:
            seconds += cost["scoring_s"] * row["n"] / top
        timed.append(with_latency(row, seconds))
    return timed


def _checksum(dataset: str | None) -> dict[str, str]:
    return {"sha256": sha256(dataset)} if dataset and Path(dataset).is_file() else {}


def _write_samples(
    path: Path,
    problems: Sequence[Mapping[str, Any]],
    samples: Sequence[Sequence[Sample]],
    scores: Sequence[Sequence[float]] | None,
    forced: Mapping[int, Sequence[Sample]],
) -> None:
    """One line per problem: id, reference, its samples (with scores) and its budget-forced completions."""
    with open(path, "w", encoding="utf-8") as handle:
        for i, row in enumerate(problems):
            record = {
                "id": row.get("id") or str(i),
                "reference": row["answer"],
                "samples": [
                    {**asdict(s), **({"score": scores[i][j]} if scores else {})}
                    for j, s in enumerate(samples[i])
                ],
                "budget_forcing": {str(budget): asdict(done[i]) for budget, done in forced.items()},
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def tts_command(args: argparse.Namespace) -> None:
    """``rankrl tts [CONFIG.yaml] [key=value ...]``."""
    from core.recipe import apply_overrides, build_configs, read_yaml

    items = list(args.overrides)
    source = items.pop(0) if items and "=" not in items[0] else None
    config = apply_overrides(read_yaml(source) if source else {}, items)
    (tts_config,) = build_configs(config, (TTSConfig,), source or "rankrl tts")
    run_tts(tts_config)
