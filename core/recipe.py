"""Recipe parsing: one YAML file plus ``key=value`` overrides into config dataclasses.

A recipe is flat, like open-r1's: every key belongs to exactly one of the dataclasses it is read into (a
training stage's ``ScriptArguments``, TRL's ``ModelConfig`` and ``SFTConfig`` / ``GRPOConfig``; the
``rankrl eval`` or ``rankrl synth`` config); two dataclasses with a field of the same name are an error.
Unknown keys, values of the wrong type and keys the caller refuses (with the reason) are rejected with one
line naming the file, the key and what was expected, before any model is loaded, instead of a traceback
from deep inside a library. :func:`recipe_help` is the ``--help`` of a command: every key with its help
text, grouped by dataclass.
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml

from core.hints import did_you_mean


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
    """Each recipe key with its dataclass and type; a key that two of ``config_types`` own is an error."""
    owners: dict[str, tuple[type, Any]] = {}
    for config_type in config_types:
        hints = typing.get_type_hints(config_type)
        for f in dataclasses.fields(config_type):
            if not f.init:
                continue
            if f.name in owners:
                first = owners[f.name][0].__name__
                raise RecipeError(
                    f"key {f.name!r} is a field of both {first} and {config_type.__name__}: "
                    "a recipe key must belong to one dataclass"
                )
            owners[f.name] = (config_type, hints[f.name])
    return owners


def build_configs(
    config: dict[str, Any],
    config_types: Sequence[type],
    source: str,
    refused: Mapping[str, str] | None = None,
) -> tuple[Any, ...]:
    """Split a flat recipe dict over ``config_types`` and instantiate each; unknown keys are errors, and so
    are the keys of ``refused`` (key -> why it may not be set)."""
    owners = _fields_by_name(config_types)
    kwargs: dict[type, dict[str, Any]] = {config_type: {} for config_type in config_types}
    for key, value in config.items():
        if refused and key in refused:
            raise RecipeError(f"{source}: key {key!r} {refused[key]}")
        if key not in owners:
            raise RecipeError(f"{source}: unknown key {key!r}{did_you_mean(key, owners)}")
        config_type, annotation = owners[key]
        kwargs[config_type][key] = _coerce(value, annotation, key, source)
    instances = []
    for config_type in config_types:
        try:
            instances.append(config_type(**kwargs[config_type]))
        except (TypeError, ValueError) as error:
            raise RecipeError(f"{source}: {config_type.__name__}: {str(error).splitlines()[0]}") from None
    return tuple(instances)


def recipe_help(config_types: Sequence[type], usage: str, refused: Mapping[str, str] | None = None) -> str:
    """The ``--help`` of a stage: every key of ``config_types`` with its help text and default, grouped by
    dataclass (transformers' ``HfArgumentParser`` formats them), then the keys a recipe may not set."""
    from transformers import HfArgumentParser

    _fields_by_name(config_types)  # two fields of one name would be conflicting options
    grouped = [type(t.__name__, (t,), {"_argument_group_name": f"{t.__name__} keys"}) for t in config_types]
    description = (
        "Recipe keys: `key: value` in the recipe YAML or a key=value override. --key below is that key; "
        "--no_key is `key: false`."
    )
    parser = HfArgumentParser(grouped, usage=usage, description=description, add_help=False)
    lines = [
        textwrap.fill(f"{key} {why}", 100, initial_indent="  ", subsequent_indent="    ")
        for key, why in (refused or {}).items()
    ]
    refused_part = ["keys a recipe may not set:", *lines] if lines else []
    return "\n".join([parser.format_help(), *refused_part, ""])
