"""Recipe parsing: one YAML file plus ``key=value`` overrides into the dataclasses of a training stage.

A recipe is flat, like open-r1's: every key belongs to exactly one of the stage's dataclasses
(:class:`ScriptArguments`, TRL's ``ModelConfig`` and ``SFTConfig`` / ``GRPOConfig``). Unknown keys and
values of the wrong type are rejected with one line naming the file, the key and what was expected, before
any model is loaded, instead of a traceback from deep inside TRL.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPLACED_KEYS = {  # TRL keys that rankrl sets itself from another recipe key
    "reward_weights": "set each reward's 'weight' in 'rewards' instead",
    "use_vllm": "set generation_backend: auto, vllm or hf instead",
}


class RecipeError(ValueError):
    """A recipe or override that cannot be turned into configs; the message is one line."""


def described(text: str, default: Any = None, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with ``help`` ``text`` (shown by ``--help`` and in recipe errors) and ``default``,
    or ``default_factory`` when one is given."""
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


class _RecipeLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false are booleans, so ``save_strategy: no`` stays the string "no"."""


_RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    """Parse recipe YAML (YAML 1.2 booleans)."""
    return yaml.load(text, Loader=_RecipeLoader)


@dataclass
class ScriptArguments:
    """What to train on and how it is scored; the rest of a recipe is TRL's and ModelConfig's fields."""

    stage: str = field(default="sft", metadata={"help": "Training stage this recipe runs: 'sft' or 'grpo'."})
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Training data: a .jsonl/.parquet file, a saved dataset folder or a Hub dataset id."
        },
    )
    dataset_split: str = field(
        default="train", metadata={"help": "Split to read from a dataset dict or Hub id."}
    )
    eval_dataset: str | None = field(
        default=None,
        metadata={"help": "Optional held-out ranking data for evaluation during and after training."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training rows (None: all)."}
    )
    task: str = field(default="listwise", metadata={"help": "Task that builds prompts and parses answers."})
    task_args: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Options of the task, e.g. {use_system_prompt: false}."}
    )
    rewards: list[Any] = field(
        default_factory=lambda: ["reasonrank"],
        metadata={"help": "GRPO rewards: registered names, dotted paths or {name, weight, args} mappings."},
    )
    launch: str | None = field(
        default=None,
        metadata={"help": "Accelerate config this recipe was tuned for; `rankrl train` launches with it."},
    )
    resume: bool = field(
        default=True, metadata={"help": "Resume from the last checkpoint in output_dir when there is one."}
    )
    generation_backend: str = field(
        default="auto",
        metadata={
            "help": "GRPO rollouts: 'vllm' (TRL's vLLM engine, vllm_mode colocate or server), 'hf' "
            "(transformers generate) or 'auto' (vLLM when it is installed and a GPU is visible, else HF)."
        },
    )
    group_by_query: bool = field(
        default=False,
        metadata={
            "help": "GRPO: keep every prompt of a query (dataset column query_id) in one generation batch, "
            "as cross-prompt rewards (erank_rr, retro_inter, retro_composite) need."
        },
    )
    rich_progress: bool = field(
        default=False,
        metadata={
            "help": "On a terminal, show a rich progress panel with the latest metrics instead of tqdm "
            "(a log that is not a terminal gets a plain progress line every 15 s either way)."
        },
    )
    eval_steps_ndcg: int = field(
        default=0, metadata={"help": "Evaluate held-out nDCG@10 every N steps during training (0: never)."}
    )
    eval_strategy: str | None = field(
        default=None,
        metadata={
            "help": "A `rankrl eval` config (YAML) whose strategy ranks the held-out rows during and after "
            "training, so those numbers mean what the final evaluation's do; default: one greedy "
            "completion of the task prompt per row."
        },
    )
    eval_max_samples: int = field(
        default=200, metadata={"help": "Held-out rows used by the in-training nDCG evaluation."}
    )


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A recipe file as a flat dict; a missing file or non-mapping content is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    try:
        content = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(content, dict):
        raise RecipeError(f"{path}: expected a mapping of key: value at the top level")
    return content


def apply_overrides(config: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``config`` updated by ``key=value`` strings, values read as YAML (``lr=1e-5``, ``x=[a,b]``)."""
    updated = dict(config)
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise RecipeError(f"override {override!r}: expected key=value")
        updated[key.strip()] = load_yaml(value) if value else None
    return updated


def _candidate_types(annotation: Any) -> list[Any]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return [t for t in typing.get_args(annotation) if t is not type(None)]
    return [annotation]


def _coerce(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Convert YAML scalars to the field's type (PyYAML reads ``3e-3`` as a string); reject mismatches."""
    if value is None:
        return None
    for candidate in _candidate_types(annotation):
        origin = typing.get_origin(candidate) or candidate
        if origin is bool and isinstance(value, bool):
            return value
        if origin in (int, float) and not isinstance(value, bool):
            try:
                number = origin(value)
            except (TypeError, ValueError):
                continue
            if origin is float or number == float(value):
                return number
        if origin is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if origin in (list, tuple) and isinstance(value, (list, tuple)):
            return value
        if origin is dict and isinstance(value, dict):
            return value
        if origin is Any or not isinstance(origin, type):
            return value
        if origin not in (bool, int, float, str, list, dict, tuple) and isinstance(value, origin):
            return value
    expected = " or ".join(getattr(t, "__name__", str(t)) for t in _candidate_types(annotation))
    raise RecipeError(f"{source}: key {key!r} expects {expected}, got {value!r}")


def _fields_by_name(config_types: Sequence[type]) -> dict[str, tuple[type, Any]]:
    owners: dict[str, tuple[type, Any]] = {}
    for config_type in config_types:
        hints = typing.get_type_hints(config_type)
        for f in dataclasses.fields(config_type):
            if f.init:
                owners.setdefault(f.name, (config_type, hints[f.name]))
    return owners


def build_configs(config: dict[str, Any], config_types: Sequence[type], source: str) -> tuple[Any, ...]:
    """Split a flat recipe dict over ``config_types`` and instantiate each; unknown keys are errors."""
    owners = _fields_by_name(config_types)
    kwargs: dict[type, dict[str, Any]] = {config_type: {} for config_type in config_types}
    for key, value in config.items():
        if key not in owners:
            close = difflib.get_close_matches(key, owners, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RecipeError(f"{source}: unknown key {key!r}{hint}")
        config_type, annotation = owners[key]
        kwargs[config_type][key] = _coerce(value, annotation, key, source)
    for key, instead in REPLACED_KEYS.items():
        if key in config:
            raise RecipeError(f"{source}: key {key!r}: {instead}")
    instances = []
    for config_type in config_types:
        try:
            instances.append(config_type(**kwargs[config_type]))
        except (TypeError, ValueError) as error:
            raise RecipeError(f"{source}: {config_type.__name__}: {str(error).splitlines()[0]}") from None
    return tuple(instances)
