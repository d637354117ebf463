"""``rankrl compare``: one starting model trained with each reranking paper's recipe, same data and budget.

Each paper folder's chain (:mod:`rankrl.recipes`) runs with ``--smoke`` plus overrides that make the runs
comparable (docs/compare.md): one start model (an untrained tiny model whose tokenizer knows every compared
task's prompts, :func:`rankrl.smoke.prepare_multitask_workspace`, or ``--model``); the same training rows
and held-out benchmark; ``train_steps`` optimizer steps per SFT / score stage and ``rl_steps`` per GRPO
stage at one batch size and seed; for the tiny model the demo's learning rates and full fine-tuning for
every paper; generation capped at the task's longest label target plus :data:`TOKEN_MARGIN` tokens. Each
recipe keeps its task, prompt, rewards, losses and inference strategy. The table: held-out nDCG@10 (the
evaluation's ``results.json`` against the qrels), generated tokens per query and invalid-output rate (its
``manifest.json``), wall time of training and evaluation. ``compare.json`` keeps the rows; a paper whose row
is there is not rerun.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from core.benchmark_files import BenchmarkFiles, write_benchmark
from core.data import load_dataset_file
from core.recipe import RecipeError, read_yaml
from core.sources import read_qrels_file, read_rankllm_requests, read_run_file
from evaluation.outputs import mean_metrics, per_query_metrics
from rankrl.cli import main
from rankrl.compare_report import (
    CompareSettings,
    Row,
    load_saved,
    machine,
    markdown_table,
    save_rows,
    toy_learning,
)
from rankrl.recipes import PaperRecipe, Stage, chain_commands, find_paper_recipes, read_paper_recipe
from rankrl.smoke import ToyWorkspace, prepare_multitask_workspace, shared_toy_workspace
from tasks import Task, expand_rows, get_task
from trainers.configs import STAGES

TOKEN_MARGIN = 8
TARGET_SAMPLE_ROWS = 200
BASELINE = "start model"
NOT_RERANKING = "not a reranking recipe: its chain does not end with `rankrl eval`"


@dataclass(frozen=True)
class SharedData:
    """The start model, training rows and held-out benchmark every chain reads."""

    model: str
    train_path: Path
    benchmark: BenchmarkFiles


class StageFailed(RuntimeError):
    """A chain's command exited with an error; the message is one line."""


def model_outputs(manifest: Mapping[str, Any], candidates_per_query: Sequence[int]) -> int:
    """How many model outputs an evaluation parsed: one per prompt, except pointwise reranking, which
    samples ``samples`` outputs for each of the current top ``depth`` documents at every stage."""
    strategy = manifest["strategy"]
    if strategy.get("strategy") != "pointwise":
        return int(manifest["cost"]["prompts"])
    reranked = [min(count, manifest["ranking"]["depth"]) for count in candidates_per_query]
    return sum(min(depth, count) * samples for count in reranked for depth, samples in strategy["stages"])


def ndcg_10(rankings: Mapping[str, Sequence[str]], qrels_path: str | Path) -> float:
    """Mean nDCG@10 of ``{qid: [doc_id, ...]}`` over every query of the qrels file."""
    per_query = per_query_metrics(rankings, read_qrels_file(qrels_path), ["ndcg_cut_10"])
    return mean_metrics(per_query, ["ndcg_cut_10"])["ndcg_cut_10"]


def eval_columns(eval_dir: str | Path, qrels_path: str | Path) -> dict[str, Any]:
    """The table's columns from an evaluation folder: nDCG@10 of ``results.json`` against the qrels,
    generated tokens per query, and the share of model outputs that fell back or needed a lenient repair."""
    eval_dir = Path(eval_dir)
    manifest = json.loads((eval_dir / "manifest.json").read_text(encoding="utf-8"))
    rows = read_rankllm_requests(eval_dir / "results.json")
    rankings = {row["query_id"]: [candidate["doc_id"] for candidate in row["candidates"]] for row in rows}
    outputs = model_outputs(manifest, [len(ranking) for ranking in rankings.values()])
    parse = manifest["parse"]
    return {
        "ndcg_10": ndcg_10(rankings, qrels_path),
        "tokens_per_query": manifest["cost"]["generated_tokens_per_query"],
        "invalid_rate": (parse["fallbacks"] + parse["repairs"]) / outputs if outputs else 0.0,
        "outputs": outputs,
        "fallbacks": parse["fallbacks"],
        "repairs": parse["repairs"],
    }


def recipe_task(recipe: PaperRecipe) -> Task:
    """The task (with the folder's ``task_args``) a paper's files share."""
    size = recipe.sizes[0]
    configs = [read_yaml(recipe.stage_file(stage, size)) for stage in recipe.stages]
    task_args = next((config["task_args"] for config in configs if config.get("task_args")), {})
    return get_task(recipe.task, **task_args)


def generation_cap(task: Task, rows: Sequence[Mapping[str, Any]], model: str) -> int:
    """The longest label-derived target of ``task`` over the first rows, in ``model``'s tokens, plus
    :data:`TOKEN_MARGIN`."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    examples, _ = expand_rows(task, rows[:TARGET_SAMPLE_ROWS])
    longest = max((len(tokenizer(task.target(example)).input_ids) for example in examples), default=0)
    return longest + TOKEN_MARGIN


def stage_overrides(
    stage: str, settings: CompareSettings, data: SharedData, cap: int, first_train: bool, has_synth: bool
) -> dict[str, Any]:
    """The keys that put one training stage (``sft``, ``grpo`` or ``score``) of a chain on the shared model,
    data and budget."""
    overrides: dict[str, Any] = {
        "max_steps": settings.rl_steps if stage == "grpo" else settings.train_steps,
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": 1,
        "seed": settings.seed,
        "logging_steps": 10,
    }
    if first_train:
        overrides["model_name_or_path"] = data.model
    if not (first_train and has_synth):
        overrides["dataset"] = str(data.train_path)  # the first stage reads synthesis's output
    if stage == "grpo":
        overrides.update(num_generations=settings.num_generations, max_completion_length=cap)
    if settings.model is None:
        overrides.update(toy_learning(stage), use_peft=False)
    return overrides


def eval_overrides(data: SharedData, cap: int) -> dict[str, Any]:
    """The keys that evaluate any chain on the shared benchmark."""
    bench = data.benchmark
    files = {"run": bench.run, "topics": bench.topics, "corpus": bench.corpus, "qrels": bench.qrels}
    return {**{key: str(path) for key, path in files.items()}, "max_new_tokens": cap, "batch_size": 32}


def paper_commands(
    recipe: PaperRecipe, settings: CompareSettings, data: SharedData, cap: int, workdir: Path
) -> list[tuple[Stage, list[str]]]:
    """Each stage with its ``rankrl`` words: the ``--smoke`` chain followed by the shared overrides."""
    size = recipe.sizes[0]
    has_synth = any(stage.command == "synth" for stage in recipe.stages)
    commands, trained = [], False
    for stage, words in zip(recipe.stages, chain_commands(recipe, size, True, workdir), strict=True):
        if stage.command == "train":
            kind = str(read_yaml(recipe.stage_file(stage, size)).get("stage", "sft"))
            extra = stage_overrides(kind, settings, data, cap, not trained, has_synth)
            trained = True
        elif stage.command == "synth":
            extra = {"dataset": str(data.train_path)}
        else:
            extra = eval_overrides(data, cap) | ({} if trained else {"model": data.model})
        commands.append((stage, [*words, *(f"{key}={json.dumps(value)}" for key, value in extra.items())]))
    return commands


def run_rankrl(words: Sequence[str], log: Path) -> None:
    """Run ``rankrl WORDS`` in this process, as ``rankrl run`` does, its Python output going to ``log``;
    :class:`StageFailed` with the command's error line when it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as handle, redirect_stdout(handle), redirect_stderr(handle):
        try:
            main(list(words))
            return
        except SystemExit as stop:
            if stop.code in (0, None):
                return
            failure = f"exit status {stop.code}"
        except Exception as error:  # any failure of a paper's stage becomes its row's error
            traceback.print_exc(file=handle)
            failure = f"{type(error).__name__}: {error}".strip().splitlines()[0]
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    errors = [line.strip() for line in lines if line.startswith("rankrl: error:")]
    raise StageFailed(f"{(errors or [failure])[-1]} (log: {log})")


def run_paper(
    recipe: PaperRecipe,
    settings: CompareSettings,
    data: SharedData,
    workdir: Path,
    echo: Callable[[str], None] = print,
) -> Row:
    """Run a paper's chain from a clean ``workdir``, timing each stage; an error becomes the row's."""
    row = Row(recipe.name, chain_line(recipe), machine=machine())
    shutil.rmtree(workdir, ignore_errors=True)
    try:
        rows = load_dataset_file(data.train_path, kind="ranking").to_list()
        cap = settings.max_new_tokens or generation_cap(recipe_task(recipe), rows, data.model)
        for stage, words in paper_commands(recipe, settings, data, cap, workdir):
            start = time.perf_counter()
            try:
                run_rankrl(words, workdir / "logs" / f"{stage.name}.log")
            except StageFailed as error:
                raise StageFailed(f"stage {stage.name!r}: {error}") from None
            row.stage_s[stage.name] = time.perf_counter() - start
            echo(f"  {stage.name}: {row.stage_s[stage.name]:.0f} s")
        timed = [stage.name for stage in recipe.stages if stage.command != "synth"]
        row.wall_s = sum(row.stage_s[name] for name in timed)
        for key, value in eval_columns(workdir / recipe.stages[-1].name, data.benchmark.qrels).items():
            setattr(row, key, value)
    except (StageFailed, RecipeError, OSError, ValueError, KeyError) as error:
        row.error = (str(error) or type(error).__name__).splitlines()[0]
    return row


def baseline_row(recipe: PaperRecipe, settings: CompareSettings, data: SharedData, workdir: Path) -> Row:
    """The untrained start model through ``recipe``'s evaluation stage alone."""
    eval_only = replace(recipe, stages=recipe.stages[-1:])
    row = run_paper(eval_only, settings, data, workdir, echo=lambda line: None)
    row.name, row.stages = BASELINE, f"untrained, {recipe.name}'s eval"
    return row


def shared_data(settings: CompareSettings, tasks: Sequence[Task], folder: Path) -> SharedData:
    """The toy workspace under ``folder`` (built once, atomically, for ``tasks``; ``--heldout`` rows replace
    its benchmark), with ``--model`` / ``--data`` in place of its model / training rows."""
    keys = sorted({json.dumps([task.name, asdict(task)], sort_keys=True, default=str) for task in tasks})
    if not folder.is_dir():
        partial = folder.with_name(f"{folder.name}.part-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        prepare_multitask_workspace(partial, tasks, settings.train_rows, settings.heldout_rows, settings.seed)
        if settings.heldout:
            rows = load_dataset_file(settings.heldout, kind="ranking").to_list()
            bench = ToyWorkspace.under(partial).benchmark.folder
            shutil.rmtree(bench)
            write_benchmark(rows, bench, tag="first")
        (partial / "tasks.json").write_text(json.dumps(keys, indent=1), encoding="utf-8")
        partial.replace(folder)
    built = json.loads((folder / "tasks.json").read_text(encoding="utf-8"))
    if missing := [key for key in keys if key not in built]:
        raise RecipeError(
            f"{folder}: its tiny model was built without task {missing[0]}; use another --output-dir"
        )
    workspace = ToyWorkspace.under(folder)
    model = settings.model or str(workspace.model_dir)
    return SharedData(model, Path(settings.data or workspace.train_path), workspace.benchmark)


def chain_line(recipe: PaperRecipe) -> str:
    """``synth -> sft -> grpo -> eval``."""
    return " -> ".join(stage.name for stage in recipe.stages)


def reranks(recipe: PaperRecipe) -> bool:
    """Whether the chain ends with ``rankrl eval`` (a reranking paper; the math reasoners end with tts)."""
    return bool(recipe.stages) and recipe.stages[-1].command == "eval"


def default_folders(root: str | Path = "recipes") -> list[Path]:
    """Every reranking paper folder under ``root``."""
    return [recipe.folder for recipe in find_paper_recipes(root) if reranks(recipe)]


def run_comparison(
    folders: Sequence[str | Path],
    settings: CompareSettings,
    output_dir: str | Path,
    echo: Callable[[str], None] = print,
) -> list[Row]:
    """Run every folder's chain on the shared model, data and budget (the untrained start model first);
    write ``compare.json`` after each row, then ``compare.md``, and print the table."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    recipes = [read_paper_recipe(folder) for folder in folders]
    if len({recipe.name for recipe in recipes}) < len(recipes):
        raise RecipeError("two compared folders have the same name; their rows would collide")
    rankers = [recipe for recipe in recipes if reranks(recipe)]
    saved = load_saved(output_dir / "compare.json", settings)
    rows = {name: Row(**row) for name, row in saved["rows"].items()}
    names = [*([BASELINE] if rankers else []), *(recipe.name for recipe in recipes)]
    for name in (name for name in names if name in rows):
        echo(f"{name}: row already in {output_dir / 'compare.json'}, not rerun")
    todo = [recipe for recipe in recipes if recipe.name not in rows]
    data = None
    if rankers and (BASELINE not in rows or any(reranks(recipe) for recipe in todo)):
        tasks = [recipe_task(recipe) for recipe in rankers]
        data = shared_data(settings, tasks, output_dir / "workspace")
        for task in tasks:
            shared_toy_workspace(task)  # what `--smoke` builds once per task, kept out of the timed stages
        for module in (*STAGES.values(), "evaluation.runner", "data_synth.pipeline"):
            importlib.import_module(module)  # imported before any stage is timed
        saved["first_stage_ndcg_10"] = ndcg_10(read_run_file(data.benchmark.run), data.benchmark.qrels)
    if data is not None and BASELINE not in rows:
        echo(f"{BASELINE}: the untrained model with {rankers[0].name}'s evaluation recipe")
        rows[BASELINE] = baseline_row(rankers[0], settings, data, output_dir / "start-model")
        save_rows(output_dir / "compare.json", settings, rows, saved["first_stage_ndcg_10"])
    for recipe in todo:
        echo(f"{recipe.name}: {chain_line(recipe)} (work folder and logs: {output_dir / recipe.name})")
        if data is None or not reranks(recipe):
            rows[recipe.name] = Row(recipe.name, chain_line(recipe), error=NOT_RERANKING)
        else:
            rows[recipe.name] = run_paper(recipe, settings, data, output_dir / recipe.name, echo)
        save_rows(output_dir / "compare.json", settings, rows, saved["first_stage_ndcg_10"])
    ordered = [rows[name] for name in names if name in rows]
    table = markdown_table(ordered, settings, saved["first_stage_ndcg_10"])
    (output_dir / "compare.md").write_text(table + "\n", encoding="utf-8")
    echo(table)
    return ordered
