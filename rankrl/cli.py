"""The ``rankrl`` command line: ``train`` a recipe (optionally ``--smoke``), the ``demo``, ``doctor``,
``tasks``, ``synth``, ``eval``, ``tts``, ``recipes``, ``run`` and ``compare`` (paper folders), ``export``
and ``import-gguf``.

``rankrl train RECIPE`` runs the recipe's stage in this process on one device; on a machine with several
GPUs it re-executes itself under ``accelerate launch`` with the accelerate config the recipe names
(``launch:``) or ``--launch CONFIG``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from trainers.configs import STAGES


def _check_stage(stage: str, source: str) -> None:
    if stage not in STAGES:
        from core.recipe import RecipeError

        raise RecipeError(f"{source}: key 'stage' is {stage!r}; expected one of {', '.join(STAGES)}")


def _stage_module(stage: str) -> Any:
    """The entry script of ``stage``, imported only to run it in this process: its imports (TRL,
    transformers) would delay a launch by seconds."""
    return importlib.import_module(STAGES[stage])


class _TrainHelp(argparse.Action):
    """``rankrl train [RECIPE] --help``: the train options, then every key of RECIPE's stage with its help."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        text = "show this help; after RECIPE, also every key of its stage with its help"
        super().__init__(
            option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=text
        )

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None
    ) -> None:
        recipe = getattr(namespace, "recipe", None)
        keys = ""
        if recipe:
            from core.recipe import RecipeError, apply_overrides, read_yaml
            from trainers.configs import stage_help

            try:
                config = apply_overrides(read_yaml(recipe), getattr(namespace, "overrides", None) or [])
                stage = str(config.get("stage", "sft"))
                _check_stage(stage, recipe)
            except RecipeError as error:
                parser.exit(2, f"rankrl: error: {error}\n")
            keys = "\n" + stage_help(stage, f"rankrl train {recipe} [key=value ...]")
        parser.print_help()
        print(keys, end="")
        parser.exit()


def _check_rewards(config: dict[str, Any], stage: str, source: str) -> None:
    """Resolve a GRPO recipe's reward specs before any data or model is touched, failing in one line."""
    specs = config.get("rewards")
    if stage != "grpo" or not isinstance(specs, list):
        return  # build_configs reports a non-list ``rewards``; SFT recipes do not use rewards
    from core.recipe import RecipeError
    from rewards import resolve_rewards

    try:
        resolve_rewards(specs)
    except (TypeError, ValueError) as error:
        raise RecipeError(f"{source}: key 'rewards': {str(error).splitlines()[0]}") from None


def _smoke_overrides(recipe: str, config: dict[str, Any], command: str) -> dict[str, Any]:
    from rankrl.smoke import smoke_settings

    return smoke_settings(command, config, recipe)


def _smoke_words(command: str, items: list[str]) -> list[str]:
    """``[CONFIG.yaml] key=value ...`` of synth/eval/tts with the ``--smoke`` keys put before the user's
    own overrides, which win."""
    import json

    from core.recipe import apply_overrides, read_yaml

    source, overrides = (items[0], items[1:]) if items and "=" not in items[0] else (None, items)
    config = apply_overrides(read_yaml(source) if source else {}, overrides)
    smoke = _smoke_overrides(source or command, config, command)
    words = [f"{key}={json.dumps(value)}" for key, value in smoke.items()]
    return [*([source] if source else []), *words, *overrides]


def _launch_command(launch: str, module: str, recipe: str, overrides: list[str]) -> list[str]:
    launcher = [sys.executable, "-m", "accelerate.commands.launch"]  # this environment's accelerate
    return [*launcher, "--config_file", launch, "-m", module, recipe, *overrides]


def train(args: argparse.Namespace) -> None:
    """Run (or launch) the recipe's training stage."""
    from core.recipe import apply_overrides, read_yaml
    from trainers.configs import build_stage_configs

    overrides = list(args.overrides) + (["resume=false"] if args.no_resume else [])
    config = apply_overrides(read_yaml(args.recipe), overrides)
    stage = str(config.get("stage", "sft"))
    _check_stage(stage, args.recipe)
    _check_rewards(config, stage, args.recipe)
    if args.smoke:
        config = apply_overrides({**config, **_smoke_overrides(args.recipe, config, "train")}, overrides)
    launch = args.launch or config.get("launch")
    import torch

    # An explicit --launch always launches; the recipe's own config only where several GPUs are visible.
    inside_launcher = "LOCAL_RANK" in os.environ
    wanted = bool(args.launch) or torch.cuda.device_count() > 1
    if launch and wanted and not args.smoke and not inside_launcher:
        from rankrl.launch import validate_launch

        validate_launch(launch, config)  # one-line RecipeError before any model or data is loaded
        raise SystemExit(subprocess.call(_launch_command(launch, STAGES[stage], args.recipe, overrides)))
    _stage_module(stage).main(*build_stage_configs(config, args.recipe))


def demo(args: argparse.Namespace) -> None:
    """The main job on a tiny model: SFT then GRPO on a toy task, evaluated before, between and after."""
    from rankrl.demo import run_demo

    run_demo(Path(args.output_dir), seed=args.seed, smoke=args.smoke)


def doctor(args: argparse.Namespace) -> None:
    """Print versions, devices, environment and known traps; exit 1 on a known-bad combination."""
    from rankrl.doctor import run_doctor

    raise SystemExit(run_doctor(launch=args.launch, recipe=args.recipe))


def list_tasks(args: argparse.Namespace) -> None:
    """One line per registered task: name, the rows it reads and what it is."""
    from tasks import describe_tasks

    for name, row_kind, summary in describe_tasks():
        print(f"{name:<10} {row_kind:<10} {summary}")


def synth(args: argparse.Namespace) -> None:
    """Synthesize a task's examples with a teacher model's answers (see data_synth.pipeline)."""
    from data_synth.pipeline import synth_command

    overrides = _smoke_words("synth", [args.recipe, *args.overrides])[1:] if args.smoke else args.overrides
    raise SystemExit(synth_command(args.recipe, overrides, dry=args.dry_run))


def evaluate(args: argparse.Namespace) -> None:
    """Rerank a first-stage run and write run, results, metrics and manifest (evaluation)."""
    from evaluation.runner import eval_command

    if args.smoke:
        args.overrides = _smoke_words("eval", args.overrides)
    eval_command(args)


def tts(args: argparse.Namespace) -> None:
    """Test-time scaling of a reasoner: voting, best-of-N, first-finish, budget forcing (docs/eval.md)."""
    from evaluation.tts_run import tts_command

    if args.smoke:
        args.overrides = _smoke_words("tts", args.overrides)
    tts_command(args)


def list_recipes(args: argparse.Namespace) -> None:
    """One entry per paper folder: name, task, stages in order, sizes and what it reproduces."""
    from rankrl.recipes import describe, find_paper_recipes

    print("\n".join(describe(find_paper_recipes(args.root))))


def _run_stage(words: list[str]) -> None:
    """One ``rankrl`` command of a chain in this process; a failing command stops the chain."""
    try:
        main(words)
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise


def run(args: argparse.Namespace) -> None:
    """Run a paper folder's stages in order (``--dry-run``: print the commands only)."""
    from rankrl.recipes import read_paper_recipe, run_chain
    from rankrl.smoke import smoke_root

    recipe = read_paper_recipe(args.folder)
    size = recipe.check_size(args.size)
    workdir = Path(args.output_dir) if args.output_dir else smoke_root() / f"{recipe.name}-{size}"
    run_stage = (lambda words: None) if args.dry_run else _run_stage
    run_chain(recipe, size, run_stage, smoke=args.smoke, workdir=workdir, start=args.start)


def compare(args: argparse.Namespace) -> None:
    """Train one start model with each reranking paper's recipe on the same data and budget; one table."""
    from rankrl.compare import CompareSettings, default_folders, run_comparison

    keys = ("train_steps", "rl_steps", "batch_size", "train_rows", "heldout_rows", "seed", "max_new_tokens")
    given = {key: getattr(args, key) for key in (*keys, "model", "data", "heldout")}
    settings = CompareSettings(**{key: value for key, value in given.items() if value is not None})
    run_comparison(args.folders or default_folders(args.root), settings, args.output_dir)


def export(args: argparse.Namespace) -> None:
    """Merge a LoRA / QLoRA adapter into its base model (trainers.export)."""
    from trainers.export import export_merged

    output = export_merged(args.adapter, args.output, dtype=args.dtype, overwrite=args.overwrite)
    print(f"merged checkpoint written to {output}")


def import_gguf(args: argparse.Namespace) -> None:
    """Write a GGUF file (llama.cpp) as a plain safetensors checkpoint (core.gguf)."""
    from core.gguf import import_gguf as write_checkpoint

    output = write_checkpoint(args.file, args.output, dtype=args.dtype, overwrite=args.overwrite)
    print(f"checkpoint written to {output}")


def build_parser() -> argparse.ArgumentParser:
    """The ``rankrl`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="rankrl", description="Train LLM rerankers and reasoners with SFT and GRPO."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser(
        "train", help="train one recipe stage (SFT, GRPO or score learning)", add_help=False
    )
    train_parser.add_argument("-h", "--help", action=_TrainHelp)
    train_parser.add_argument("recipe", help="recipe YAML, e.g. recipes/reasonrank/qwen2.5-7b-sft.yaml")
    train_parser.add_argument(
        "overrides", nargs="*", help="key=value recipe overrides, e.g. learning_rate=1e-6"
    )
    train_parser.add_argument("--smoke", action="store_true", help="tiny model, toy data, 2 steps on CPU")
    train_parser.add_argument("--launch", help="accelerate config to launch with (default: the recipe's)")
    train_parser.add_argument("--no-resume", action="store_true", help="start over instead of resuming")
    train_parser.set_defaults(handler=train)
    demo_parser = commands.add_parser("demo", help="train a tiny reranker with SFT then GRPO on a toy task")
    demo_parser.add_argument("--output-dir", default="outputs/demo", help="where data, checkpoints, plot go")
    demo_parser.add_argument("--seed", type=int, default=0, help="seed for data, model and training")
    demo_parser.add_argument(
        "--smoke", action="store_true", help="every step of the demo on 256 rows, 4 steps a stage (seconds)"
    )
    demo_parser.set_defaults(handler=demo)
    doctor_parser = commands.add_parser("doctor", help="check versions, devices and known launch traps")
    doctor_parser.add_argument("--launch", help="also validate this accelerate config on this machine")
    doctor_parser.add_argument("--recipe", help="recipe to validate the --launch config against")
    doctor_parser.set_defaults(handler=doctor)
    tasks_parser = commands.add_parser("tasks", help="list the tasks a recipe's 'task' can name")
    tasks_parser.set_defaults(handler=list_tasks)
    synth_parser = commands.add_parser("synth", help="synthesize a task's training data with a teacher")
    synth_parser.add_argument("recipe", help="synthesis recipe YAML, e.g. recipes/reasonrank/synth.yaml")
    synth_parser.add_argument("overrides", nargs="*", help="key=value recipe overrides")
    synth_parser.add_argument("--dry-run", action="store_true", help="print counts and prompts only")
    synth_parser.add_argument("--smoke", action="store_true", help="toy rows, the offline labels teacher")
    synth_parser.set_defaults(handler=synth)
    eval_parser = commands.add_parser("eval", help="rerank a first-stage run and score it (docs/eval.md)")
    eval_parser.add_argument("overrides", nargs="*", help="[CONFIG.yaml] then key=value settings")
    eval_parser.add_argument("--skip-missing", action="store_true", help="skip and count bad input lines")
    eval_parser.add_argument("--smoke", action="store_true", help="held-out toy queries, tiny model, CPU")
    eval_parser.set_defaults(handler=evaluate)
    tts_parser = commands.add_parser("tts", help="a reasoner's accuracy against samples and tokens")
    tts_parser.add_argument("overrides", nargs="*", help="[CONFIG.yaml] then key=value settings")
    tts_parser.add_argument("--smoke", action="store_true", help="four toy problems, tiny model, CPU")
    tts_parser.set_defaults(handler=tts)
    recipes_parser = commands.add_parser("recipes", help="list the paper recipe folders and their stages")
    recipes_parser.add_argument("--root", default="recipes", help="folder holding the paper folders")
    recipes_parser.set_defaults(handler=list_recipes)
    run_parser = commands.add_parser("run", help="run a paper folder's stages in order (synth ... eval)")
    run_parser.add_argument("folder", help="a paper recipe folder, e.g. recipes/reasonrank")
    run_parser.add_argument("--size", help="model size (default: the folder's first; see rankrl recipes)")
    run_parser.add_argument("--smoke", action="store_true", help="every stage on toy data, tiny model, CPU")
    run_parser.add_argument("--from", dest="start", help="start at this stage (the earlier ones are done)")
    run_parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    run_parser.add_argument(
        "--output-dir", help="--smoke: the chain's work folder (default under outputs/smoke)"
    )
    run_parser.set_defaults(handler=run)
    compare_parser = commands.add_parser(
        "compare", help="train one start model with each reranking paper's recipe, same data and budget"
    )
    compare_parser.add_argument("folders", nargs="*", help="paper folders (default: every reranking one)")
    compare_parser.add_argument("--root", default="recipes", help="where the default folders are found")
    compare_parser.add_argument("--output-dir", default="outputs/compare", help="work folders and the table")
    compare_parser.add_argument("--train-steps", type=int, help="steps per SFT / score stage (default 400)")
    compare_parser.add_argument("--rl-steps", type=int, help="steps per GRPO stage (default 40)")
    compare_parser.add_argument("--batch-size", type=int, help="examples (GRPO: completions) a step (32)")
    compare_parser.add_argument("--train-rows", type=int, help="toy training rows (default 4000)")
    compare_parser.add_argument("--heldout-rows", type=int, help="held-out toy queries (default 64)")
    compare_parser.add_argument("--seed", type=int, help="seed of the data, model and training (default 0)")
    compare_parser.add_argument("--max-new-tokens", type=int, help="cap (default: longest target + 8)")
    compare_parser.add_argument("--model", help="start checkpoint (default: an untrained tiny model)")
    compare_parser.add_argument("--data", help="ranking rows to train on (default: the toy rows)")
    compare_parser.add_argument("--heldout", help="held-out ranking rows to evaluate on (default: toy)")
    compare_parser.set_defaults(handler=compare)
    export_parser = commands.add_parser("export", help="merge a LoRA/QLoRA adapter into a full checkpoint")
    export_parser.add_argument("adapter", help="adapter folder (a training output_dir with use_peft)")
    export_parser.add_argument("output", help="folder for the merged checkpoint")
    export_parser.add_argument(
        "--dtype", default="auto", help="weights dtype: auto, float32, bfloat16, float16"
    )
    export_parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    export_parser.set_defaults(handler=export)
    gguf_parser = commands.add_parser("import-gguf", help="write a GGUF model file as a plain checkpoint")
    gguf_parser.add_argument("file", help="the .gguf file, e.g. SmolLM2-135M-Instruct.Q4_1.gguf")
    gguf_parser.add_argument("output", help="folder for the checkpoint (safetensors, config, tokenizer)")
    gguf_parser.add_argument("--dtype", default="float32", help="weights dtype: float32, bfloat16, float16")
    gguf_parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    gguf_parser.set_defaults(handler=import_gguf)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``rankrl`` console script."""
    parser = build_parser()
    # argparse binds the ``overrides`` positional before ``--smoke`` in ``train RECIPE --smoke k=v``;
    # collect the key=value words it leaves over instead of calling them unrecognized.
    args, extra = parser.parse_known_args(argv)
    if extra and (not hasattr(args, "overrides") or any(e.startswith("-") or "=" not in e for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    from core.data import DataError
    from core.models import ModelLoadError
    from core.recipe import RecipeError

    try:
        args.handler(args)
    except (RecipeError, DataError, ModelLoadError, FileNotFoundError, KeyError, ValueError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"rankrl: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
