"""Paper recipe folders: ``rankrl recipes`` lists them, ``rankrl run recipes/<paper>`` runs their stages.

A folder (``recipes/reasonrank/``, ``recipes/prorank/`` ...) holds its README, one recipe file per stage and
model size, and ``recipe.yaml``, the manifest::

    title: "ReasonRank (Liu et al. 2025, arXiv 2508.07050)"
    summary: "Listwise reasoning reranker: SFT on teacher chains, then GRPO with a multi-view reward."
    task: listwise
    sizes: [qwen2.5-7b, qwen2.5-32b-lora]        # the first is the default
    stages:                                      # in order; each reads the previous stage's output
      - {name: synth, command: synth, recipe: synth.yaml}
      - {name: sft, command: train, recipe: "{size}-sft.yaml"}
      - {name: grpo, command: train, recipe: "{size}-grpo.yaml"}
      - {name: eval, command: eval, recipe: eval.yaml}

Each stage is one ``rankrl COMMAND FILE`` exactly as the README shows it. The files chain
(:func:`chain_problems`): the first training stage's ``dataset`` is synthesis's ``output_dir``, every
later training stage's ``model_name_or_path`` is the previous one's ``output_dir``, and evaluation's
``model`` is the last one's. ``--smoke`` runs the same commands with ``--smoke`` and links them through
one work folder instead, so the whole chain runs offline on a tiny model in about a minute.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.recipe import RecipeError, read_yaml

MANIFEST = "recipe.yaml"
COMMANDS = ("synth", "train", "eval", "tts")
MANIFEST_KEYS = ("title", "summary", "task", "sizes", "stages")


@dataclass(frozen=True)
class Stage:
    """One step of a chain: its name, the rankrl command and the recipe file (``{size}`` filled in)."""

    name: str
    command: str
    recipe: str


@dataclass(frozen=True)
class PaperRecipe:
    """A paper's folder: what it reproduces and its stages in order."""

    folder: Path
    title: str
    summary: str
    task: str
    sizes: tuple[str, ...]
    stages: tuple[Stage, ...]

    @property
    def name(self) -> str:
        return self.folder.name

    def stage_file(self, stage: Stage, size: str) -> Path:
        """The recipe file ``stage`` runs for model ``size``."""
        return self.folder / stage.recipe.format(size=size)

    def check_size(self, size: str | None) -> str:
        """``size``, or the default size, after checking the folder has it."""
        if size is None:
            return self.sizes[0]
        if size not in self.sizes:
            raise RecipeError(
                f"{self.folder / MANIFEST}: no size {size!r}; expected one of {', '.join(self.sizes)}"
            )
        return size


def _stage(entry: Any, where: str) -> Stage:
    if not isinstance(entry, dict) or set(entry) != {"name", "command", "recipe"}:
        raise RecipeError(f"{where}: expected a mapping with keys name, command, recipe")
    if entry["command"] not in COMMANDS:
        raise RecipeError(f"{where}: command {entry['command']!r}; expected one of {', '.join(COMMANDS)}")
    return Stage(str(entry["name"]), entry["command"], str(entry["recipe"]))


def read_paper_recipe(folder: str | Path) -> PaperRecipe:
    """The manifest of ``folder``; a one-line :class:`RecipeError` naming the file and key when it is bad."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise RecipeError(f"{folder}: not a paper recipe folder (no {MANIFEST})")
    manifest = read_yaml(path)
    if missing := [key for key in MANIFEST_KEYS if not manifest.get(key)]:
        raise RecipeError(f"{path}: key {missing[0]!r} is missing")
    if unknown := sorted(set(manifest) - set(MANIFEST_KEYS)):
        raise RecipeError(f"{path}: unknown key {unknown[0]!r}; expected {', '.join(MANIFEST_KEYS)}")
    stages = tuple(_stage(entry, f"{path}: stages[{i}]") for i, entry in enumerate(manifest["stages"]))
    recipe = PaperRecipe(
        folder, str(manifest["title"]), str(manifest["summary"]), str(manifest["task"]),
        tuple(str(size) for size in manifest["sizes"]), stages,
    )  # fmt: skip
    for size in recipe.sizes:
        for stage in stages:
            if not recipe.stage_file(stage, size).is_file():
                raise RecipeError(
                    f"{path}: stage {stage.name!r} names {recipe.stage_file(stage, size)}, not found"
                )
    return recipe


def find_paper_recipes(root: str | Path = "recipes") -> list[PaperRecipe]:
    """Every paper folder under ``root`` (a folder with a ``recipe.yaml``), by name."""
    return [read_paper_recipe(path.parent) for path in sorted(Path(root).glob(f"*/{MANIFEST}"))]


def _links(recipe: PaperRecipe, size: str) -> list[tuple[Stage, str, str]]:
    """(stage, key, the earlier stage's output it must read) for every link of the chain."""
    links, synth_output, last_train = [], None, None
    for stage in recipe.stages:
        output = str(read_yaml(recipe.stage_file(stage, size)).get("output_dir"))
        if stage.command == "synth":
            synth_output = output
        elif stage.command == "train":
            if last_train is not None:
                links.append((stage, "model_name_or_path", last_train))
            elif synth_output is not None:
                links.append((stage, "dataset", synth_output))
            last_train = output
        elif last_train is not None:
            links.append((stage, "model", last_train))
    return links


def chain_problems(recipe: PaperRecipe, size: str) -> list[str]:
    """One line per broken link of the chain or per file whose ``task`` / ``task_args`` differ from the
    first stage's; empty when the files chain."""
    problems = []
    for stage, key, expected in _links(recipe, size):
        found = read_yaml(recipe.stage_file(stage, size)).get(key)
        if str(found) != expected:
            problems.append(
                f"{recipe.stage_file(stage, size)}: key {key!r} is {found!r}; expected {expected!r}"
            )
    configs = [
        (recipe.stage_file(stage, size), read_yaml(recipe.stage_file(stage, size))) for stage in recipe.stages
    ]
    task_args = next((config["task_args"] for _, config in configs if "task_args" in config), None)
    for path, config in configs:
        if config.get("task", recipe.task) != recipe.task and "task" in config:
            problems.append(f"{path}: key 'task' is {config['task']!r}; the folder's task is {recipe.task!r}")
        if "task_args" in config and config["task_args"] != task_args:
            problems.append(f"{path}: key 'task_args' differs from the other stages' {task_args!r}")
    return problems


LINK_KEYS = ("dataset", "model_name_or_path", "model")


def chain_commands(
    recipe: PaperRecipe, size: str, smoke: bool = False, workdir: Path | None = None
) -> list[list[str]]:
    """The ``rankrl`` argument lists of the chain, in order. With ``smoke``, every command gets ``--smoke``
    and writes to ``workdir/<stage name>``, and every ``dataset`` / ``model_name_or_path`` / ``model`` that
    names an earlier stage's ``output_dir`` is pointed at that stage's folder in ``workdir`` instead."""
    commands, moved = [], {}
    for stage in recipe.stages:
        path = recipe.stage_file(stage, size)
        words = [stage.command, str(path)]
        if smoke:
            config = read_yaml(path)
            words += [
                "--smoke",
                *(f"{key}={moved[config[key]]}" for key in LINK_KEYS if config.get(key) in moved),
            ]
            output = Path(workdir or "outputs/smoke") / stage.name
            words.append(f"output_dir={output}")
            if config.get("output_dir"):
                moved[config["output_dir"]] = output
        commands.append(words)
    return commands


def run_chain(
    recipe: PaperRecipe,
    size: str,
    run_command: Callable[[list[str]], None],
    smoke: bool = False,
    workdir: Path | None = None,
    start: str | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """Run the chain's commands in order from stage ``start`` (the first by default), echoing each."""
    if not smoke and (problems := chain_problems(recipe, size)):
        raise RecipeError(problems[0])
    names = [stage.name for stage in recipe.stages]
    if start is not None and start not in names:
        raise RecipeError(
            f"{recipe.folder / MANIFEST}: no stage {start!r}; expected one of {', '.join(names)}"
        )
    commands = chain_commands(recipe, size, smoke, workdir)
    for words in commands[names.index(start) if start else 0 :]:
        echo(f"$ rankrl {shlex.join(words)}")
        run_command(words)


def describe(recipes: Sequence[PaperRecipe]) -> list[str]:
    """Lines of ``rankrl recipes``: folder, task, stages in order, sizes, summary."""
    lines = []
    for recipe in recipes:
        stages = " -> ".join(stage.name for stage in recipe.stages)
        lines.append(f"{recipe.name:<12} {recipe.task:<10} {stages:<28} {recipe.summary}")
        lines.append(f"{'':<12} {'':<10} sizes: {', '.join(recipe.sizes)}")
    return lines
