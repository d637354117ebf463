"""``rankrl tts``: a reasoner's accuracy against samples and tokens under test-time scaling strategies.

Steps: load the problems (:func:`trainers.data.load_dataset_file`, kind ``reasoning``, columns renamed
from ``problem_field`` / ``answer_field``) and build the math prompt
(:func:`trainers.tasks.prompts.math_messages`); sample max(n_values) completions per problem in one
``generate`` pass; score them once when a scored rule is asked (:mod:`~trainers.evaluation.tts_score`);
sweep the rules over sample prefixes (:func:`~trainers.evaluation.tts_report.sweep`); run budget forcing
once per budget; write ``tts.csv``, ``tts.md`` (also printed), ``tts.png``, ``samples.jsonl`` and
``manifest.json``.

Cost: ``tokens_per_problem`` is exact (the first n samples' generated tokens). Latency of a prefix is the
measured pass time in proportion to the prefix's share of the pass's tokens, plus, for a scored rule, n/N of
the scoring time; budget-forcing rows are timed directly. The manifest has the measured totals.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trainers.configs import described
from trainers.data import load_dataset_file
from trainers.evaluation.backend import GenerationBackend, Sampling
from trainers.evaluation.inputs import sha256
from trainers.evaluation.runner import load_backend, package_versions
from trainers.evaluation.tts import RULES, SCORED_RULES, BudgetForcing, Sample, budget_force, sample_problems
from trainers.evaluation.tts_report import (
    markdown_table,
    score_row,
    sweep,
    with_latency,
    write_plot,
    write_table,
)
from trainers.evaluation.tts_score import Scorer, reward_model_scorer, reward_scorer
from trainers.tasks.prompts import Messages, math_messages


@dataclass
class TTSConfig:
    """Everything one test-time scaling report needs; every field is a YAML key and a ``key=value``."""

    model: str | None = described("Checkpoint folder or Hub id of the reasoner.")
    dataset: str | None = described("Problems: .jsonl/.parquet, a saved dataset folder or a Hub id.")
    split: str = described("Split of a dataset folder or Hub id.", "test")
    problem_field: str = described("Column holding the problem text (GSM8K: question).", "problem")
    answer_field: str = described("Column of the reference answer (GSM8K's '... #### 18' works).", "answer")
    max_problems: int | None = described("Use only the first N problems (None: all).")
    output_dir: str = described("Where the table, plot, samples and manifest are written.", "outputs/tts")
    n_values: list[int] = described(
        "Sample counts of the sweep; max(n_values) samples per problem serve every n.",
        default_factory=lambda: [1, 2, 4, 8, 16],
    )
    strategies: list[str] = described(
        f"Rules applied at every n: {', '.join(RULES)} (weighted, best_of_n need reward or reward_model).",
        default_factory=lambda: ["majority", "first_finish"],
    )
    reward: str | None = described("Scorer: a registered reward name or a dotted path to a reward function.")
    reward_args: dict[str, Any] = described("Factory arguments bound to the reward.", default_factory=dict)
    reward_model: str | None = described(
        "Scorer: a sequence-classification reward model (sigmoid of logit 0)."
    )
    budgets: list[int] = described(
        "Budget forcing: thinking-token budgets (empty: off).", default_factory=list
    )
    num_waits: int = described("Budget forcing: times an early end of thinking becomes wait_text.", 0)
    wait_text: str = described("Budget forcing: text appended to continue thinking (s1: Wait).", "\nWait")
    end_think: str = described("Budget forcing: the model's end-of-thinking marker.", "</think>")
    force_text: str = described("Budget forcing: appended to end thinking.", "\n</think>\n\nFinal answer:")
    answer_tokens: int = described("Budget forcing: tokens of the final answer after force_text.", 32)
    max_new_tokens: int = described("Tokens per sampled completion.", 1024)
    temperature: float = described("Sampling temperature (> 0 when any n > 1).", 0.7)
    top_p: float = described("Nucleus sampling p.", 0.95)
    sample_top_k: int = described("Top-k sampling filter, 0 = off.", 0)
    batch_size: int = described("Prompts per generate call (each with its n samples).", 64)
    scorer_batch_size: int = described("Completions per reward-model forward pass.", 16)
    save_samples: bool = described("Write each sample's text, tokens, answer, score to samples.jsonl.", True)
    seed: int = described("Seed of sampling.", 0)
    dtype: str = described("Model dtype: auto, bfloat16, float16 or float32.", "auto")

    def __post_init__(self) -> None:
        for name in ("n_values", "budgets"):
            values = getattr(self, name)
            if any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in values):
                raise ValueError(f"{name} must be positive integers, got {values}")
        if not self.n_values and not self.budgets:
            raise ValueError("nothing to do: n_values and budgets are both empty")
        if bad := [name for name in self.strategies if name not in RULES]:
            raise ValueError(f"strategy {bad[0]!r}; expected one of {', '.join(RULES)}")
        if self.reward and self.reward_model:
            raise ValueError("set reward or reward_model, not both")
        if (needs := [s for s in self.strategies if s in SCORED_RULES]) and not (
            self.reward or self.reward_model
        ):
            raise ValueError(f"strategy {needs[0]!r} needs a scorer: set reward or reward_model")
        if self.temperature <= 0 and max(self.n_values, default=1) > 1:
            raise ValueError("temperature 0 makes the n samples identical; set temperature > 0")

    def sampling(self, num_samples: int) -> Sampling:
        """The decoding settings for ``num_samples`` samples per prompt."""
        return Sampling(self.max_new_tokens, self.temperature, self.top_p, self.sample_top_k, num_samples)

    def forcing(self, budget: int) -> BudgetForcing:
        """Budget forcing at ``budget`` thinking tokens with this config's texts."""
        return BudgetForcing(
            budget, self.num_waits, self.wait_text, self.end_think, self.force_text, self.answer_tokens
        )


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
    prompts = [math_messages(row["problem"]) for row in problems]
    references = [row["answer"] for row in problems]
    samples, scores, cost = [[] for _ in problems], None, {}
    table = []
    if config.n_values:
        samples, scores, cost = _sample_and_score(config, backend, scorer, problems, prompts)
        table += _timed(sweep(samples, scores, references, config.n_values, config.strategies), cost, config)
    forced = {}
    for budget in config.budgets:
        start = time.perf_counter()
        forced[budget] = budget_force(backend, prompts, config.forcing(budget), config.sampling(1))
        picked, tokens = [s.answer for s in forced[budget]], sum(s.num_tokens for s in forced[budget])
        row = score_row("budget_forcing", 1, budget, picked, references, tokens)
        table.append(with_latency(row, time.perf_counter() - start))
    write_table(out, table)
    write_plot(out / "tts.png", table)
    if config.save_samples:
        _write_samples(out / "samples.jsonl", problems, samples, scores, forced)
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
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str), encoding="utf-8")
    print(markdown_table(table))
    return manifest


def _sample_and_score(
    config: TTSConfig,
    backend: GenerationBackend,
    scorer: Scorer | None,
    problems: Sequence[Mapping[str, Any]],
    prompts: Sequence[Messages],
) -> tuple[list[list[Sample]], list[list[float]] | None, dict[str, Any]]:
    """max(n_values) samples per problem, their scores (when a scorer is set) and the pass's measured cost."""
    samples, generation_s = sample_problems(backend, prompts, config.sampling(max(config.n_values)))
    start = time.perf_counter()
    scores = scorer(problems, prompts, samples) if scorer else None
    tokens = sum(s.num_tokens for problem in samples for s in problem)
    return (
        samples,
        scores,
        {
            "samples_per_problem": max(config.n_values),
            "generated_tokens": tokens,
            "generated_tokens_per_problem": tokens / max(len(problems), 1),
            "generation_s": generation_s,
            "problems_per_s": len(problems) / generation_s if generation_s > 0 else None,
            "scoring_s": time.perf_counter() - start if scorer else 0.0,
        },
    )


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
    from trainers.configs import apply_overrides, build_configs, read_yaml

    items = list(args.overrides)
    source = items.pop(0) if items and "=" not in items[0] else None
    config = apply_overrides(read_yaml(source) if source else {}, items)
    (tts_config,) = build_configs(config, (TTSConfig,), source or "rankrl tts")
    run_tts(tts_config)
