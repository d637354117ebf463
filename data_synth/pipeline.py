"""``rankrl synth RECIPE``: inputs -> the task's examples and prompts -> teacher (through the cache) ->
agreement and filters -> the task's examples with the teacher's answers, one dataset with its card.

The units are the recipe task's examples (:meth:`tasks.base.Task.examples`) and the teacher's prompt is the
task's prompt of each (plus the recipe's ``teacher_suffix``): the prompt the student trains on. The written
examples train SFT (the teacher's answer is the target) and GRPO (the task renders the prompt and the reward
columns) from the same file.

Crash safety comes from the order of work: every request's key is known before the teacher is called,
responses already in the cache are never requested again, and each new response is in the cache (fsync'd)
before it is counted. The datasets are built only from the cache, in unit order, after every request has an
answer, so a run killed at any moment and rerun produces the same bytes as one that never stopped.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from core.data import DataError
from core.generation import Messages, Sampling
from data_synth.agreement import consensus_index
from data_synth.cache import ResponseCache, cache_key, prompt_hash
from data_synth.config import SynthConfig, load_config
from data_synth.filters import FilterStats, consistency_problem
from data_synth.inputs import Inputs, load_rows
from data_synth.outputs import Usage, write_outputs
from data_synth.progress import Prices, SynthProgress
from data_synth.prompts import with_teacher_suffix
from data_synth.teachers import (
    BudgetSpent,
    Completion,
    OpenAITeacher,
    RetryPolicy,
    Teacher,
    TeacherCall,
    TeacherError,
    TokenBudget,
    teacher_id,
)
from tasks import Task, expand_rows
from tasks.voting import majority_vote


@dataclass(frozen=True)
class Unit:
    """One teacher prompt: one of the task's examples, its id and the prompt the task renders for it."""

    unit_id: str
    messages: Messages
    example: dict[str, Any]


@dataclass
class Plan:
    """Everything decided before the teacher is called: units and one request per (unit, sample)."""

    inputs: Inputs
    units: list[Unit]
    unit_stats: FilterStats
    requests: list[TeacherCall]
    records: dict[str, dict] = field(default_factory=dict)  # key -> cache record without the answer


def sampling_of(config: SynthConfig) -> Sampling:
    return Sampling(max_new_tokens=config.max_tokens, temperature=config.temperature, top_p=config.top_p)


def make_units(task: Task, rows: list[dict]) -> tuple[list[Unit], FilterStats]:
    """The task's examples of ``rows`` as units, and the rows that gave none counted by reason."""
    examples, dropped = expand_rows(task, rows)
    stats = FilterStats(kept=len(rows) - sum(dropped.values()))
    for reason, count in dropped.items():
        stats.reasons[reason] += count
        stats.dropped += count
    units = [Unit(example["example_id"], task.prompt(example), example) for example in examples]
    return units, stats


def make_plan(config: SynthConfig, task: Task, teacher_name: str) -> Plan:
    """Read inputs, build units and the request list (raises DataError on a repeated unit id)."""
    inputs = load_rows(config, task)
    units, unit_stats = make_units(task, inputs.rows)
    repeated = [uid for uid, count in Counter(u.unit_id for u in units).items() if count > 1]
    if repeated:
        raise DataError(f"example id {repeated[0]!r} appears more than once in the input")
    plan = Plan(inputs, units, unit_stats, [])
    for unit in units:
        messages = with_teacher_suffix(unit.messages, config.teacher_suffix)
        digest = prompt_hash(messages)
        for index in range(config.samples):
            key = cache_key(unit.unit_id, teacher_name, digest, index)
            plan.requests.append(TeacherCall(key, messages, index))
            plan.records[key] = {
                "key": key,
                "example_id": unit.unit_id,
                "teacher_id": teacher_name,
                "prompt_hash": digest,
                "sample_index": index,
            }
    return plan


def tiny_teacher_path(config: SynthConfig, units: list[Unit]) -> Path:
    """Build (once, deterministically) a tiny offline model trained on these prompts, for the demo."""
    from core.tiny import build_tiny_model

    folder = Path(config.output_dir) / "tiny-teacher"
    if not (folder / "config.json").is_file():
        texts = [message["content"] for unit in units for message in unit.messages]
        build_tiny_model(folder, texts, seed=config.seed)
    return folder


def make_teacher(config: SynthConfig, plan: Plan) -> Teacher:
    budget = TokenBudget(config.token_budget)
    if config.teacher == "labels":
        from data_synth.label_teacher import LabelTeacher

        task, examples = config.task_object(), {unit.unit_id: unit.example for unit in plan.units}
        targets = {uid: task.target(example) for uid, example in examples.items()}
        return LabelTeacher(
            {key: targets[record["example_id"]] for key, record in plan.records.items()}, budget
        )
    if config.teacher == "hf":
        from data_synth.hf_teacher import HFTeacher

        units = plan.units
        path = tiny_teacher_path(config, units) if config.model == "tiny" else Path(config.model)
        return HFTeacher(path, sampling_of(config), config.batch_size, budget, config.seed)
    retry = RetryPolicy(config.max_retries, config.backoff_base_s, config.backoff_max_s)
    return OpenAITeacher(
        config.model,
        config.base_url,
        config.api_key_env,
        sampling_of(config),
        config.concurrency,
        config.timeout_s,
        retry,
        budget,
        config.seed,
    )


def teacher_name(config: SynthConfig) -> str:
    """The teacher id in cache keys: model (folder name for hf) and a hash of the sampling settings."""
    model = {"hf": Path(config.model).name, "labels": "labels"}.get(config.teacher, config.model)
    return teacher_id(model, sampling_of(config), config.seed)


def run_teacher(
    config: SynthConfig, teacher: Teacher, plan: Plan, cache: ResponseCache, console: Console
) -> None:
    """Request every response the cache lacks; each is cached before it is counted."""
    missing = [request for request in plan.requests if request.key not in cache]
    prices = Prices(config.price_prompt_per_1m, config.price_completion_per_1m)
    with SynthProgress(len(missing), prices, console) as progress:

        def on_done(request: TeacherCall, completion: Completion) -> None:
            cache.append({**plan.records[request.key], **_answer(completion)})
            progress.advance(completion)

        asyncio.run(teacher.generate(missing, on_done))


def _answer(completion: Completion) -> dict:
    return {
        "text": completion.text,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
    }


@dataclass
class Assembled:
    """The dataset rows and what happened on the way."""

    rows: list[dict] = field(default_factory=list)
    unit_filter: FilterStats = field(default_factory=FilterStats)
    sample_failures: Counter[str] = field(default_factory=Counter)
    usage: Usage = field(default_factory=Usage)


def _choose(agreement: str, values: list) -> int | None:
    """The index of the sample a unit keeps under the task's agreement rule."""
    if agreement == "majority":
        vote = majority_vote(values)
        return None if vote is None else values.index(vote[0])
    if agreement == "consensus":
        return consensus_index(values)
    return next((i for i, value in enumerate(values) if value is not None), None)


def _rejection(config: SynthConfig, task: Task, unit: Unit, value: Any, row: dict) -> str | None:
    """Why a unit's agreed answer is not kept: the task's own check, then synthesis's filter (ReasonRank's
    self-consistency nDCG@10 >= ``consistency_alpha`` for listwise)."""
    reason = task.accept(unit.example, value)
    if reason is None and task.name == "listwise":
        reason = consistency_problem(row, config.consistency_alpha, 10)
    return reason


def assemble(config: SynthConfig, task: Task, plan: Plan, cache: ResponseCache) -> Assembled:
    """Parse, agree and filter every unit's cached samples into the task's examples, in unit order."""
    result, samples = Assembled(), config.samples
    for position, unit in enumerate(plan.units):
        records = [cache.get(r.key) for r in plan.requests[position * samples : (position + 1) * samples]]
        values, texts = [], []
        for record in records:
            result.usage.add(record)
            parsed = task.parse(unit.example, record["text"])
            value, reason = parsed.value, parsed.reason
            limit = config.max_completion_tokens
            if value is not None and limit is not None and record["completion_tokens"] > limit:
                value, reason = None, "too_long"
            if value is None:
                result.sample_failures[reason] += 1
            values.append(value)
            texts.append(record["text"])
        chosen = _choose(task.agreement, values)
        if chosen is None:
            result.unit_filter.drop("no_valid_sample")
            continue
        row = task.teacher_example(unit.example, texts[chosen], values[chosen], values)
        reason = _rejection(config, task, unit, values[chosen], row)
        if reason:
            result.unit_filter.drop(reason)
            continue
        result.unit_filter.kept += 1
        result.rows.append(row)
    return result


def dry_run(config: SynthConfig, plan: Plan, cache_keys: set[str], console: Console) -> None:
    """Print counts and the first rendered teacher prompts; the teacher is not called."""
    cached = sum(request.key in cache_keys for request in plan.requests)
    prompt_chars = sum(len(m["content"]) for request in plan.requests for m in request.messages)
    console.print(
        f"task {config.task}: {len(plan.inputs.rows)} input rows -> {len(plan.units)} prompts "
        f"x {config.samples} samples = {len(plan.requests)} requests ({cached} cached, "
        f"{len(plan.requests) - cached} to request); about {prompt_chars // 4:,} prompt tokens (chars / 4)"
    )
    for reason, count in sorted(plan.unit_stats.reasons.items()):
        console.print(f"  skipped input rows: {reason}: {count}")
    for request in plan.requests[: config.show_prompts]:
        console.rule(f"prompt {request.key}")
        for message in request.messages:
            console.print(f"[{message['role']}]\n{message['content']}", markup=False, highlight=False)


def _cached_keys(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    with ResponseCache(path) as cache:
        return set(cache.records)


def synth(config: SynthConfig, dry: bool = False, console: Console | None = None) -> Assembled | None:
    """Run one synthesis recipe end to end (or only plan and print it with ``dry``)."""
    console = console or Console(stderr=True)
    task = config.task_object()
    plan = make_plan(config, task, teacher_name(config))
    if dry:
        dry_run(config, plan, _cached_keys(config.cache_file), console)
        return None
    with ResponseCache(config.cache_file) as cache:
        if cache.torn_lines:
            console.print(f"cache {config.cache_file}: ignored a torn last line (an interrupted write)")
        teacher = make_teacher(config, plan)
        run_teacher(config, teacher, plan, cache, console)
        retries = ", ".join(f"{k} {v}" for k, v in sorted(teacher.stats.retries.items())) or "none"
        console.print(f"teacher: {teacher.stats.requests} requests this run, retries: {retries}")
        result = assemble(config, task, plan, cache)
    write_outputs(config, task, teacher.settings(), plan.inputs, plan.unit_stats, result)
    console.print(f"wrote {len(result.rows)} {task.name} examples to {config.output_dir}/train.parquet")
    return result


def synth_command(recipe: str, overrides: list[str], dry: bool = False) -> int:
    """``rankrl synth``: exit 0 when done, 1 when the teacher failed for good, 3 when the budget ran out."""
    config = load_config(recipe, overrides)
    try:
        synth(config, dry)
    except TeacherError as error:
        print(f"rankrl: teacher error: {error}", file=sys.stderr)
        return 1
    except BudgetSpent as error:
        print(f"rankrl: {error}", file=sys.stderr)
        return 3
    return 0
