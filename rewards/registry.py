"""A small verl-style registry that turns reward specs from recipes into TRL reward functions.

A spec is a registered name (``"reasonrank"``) or a dotted path (``"pkg.module:function"`` or
``"pkg.module.function"``), optionally with a weight and factory arguments::

    rewards:
      - reasonrank                                         # registered name, weight 1, default arguments
      - {name: reasonrank, weight: 1.0, args: {phi: 0.2}}  # factory arguments bound to the function
      - {name: my_pkg.my_rewards:length_penalty, weight: 0.1}

The weights become TRL's ``GRPOConfig.reward_weights``. A reward's scope (per completion, per group of G
completions, per query) and whether it samples from the policy are declared at registration; see
:mod:`rewards.groups`. Whatever goes wrong inside a reward surfaces as one :class:`RewardError` line naming
the reward and, where it can be found, the completion row: a failing per-completion reward is re-run row
by row to find it, except one that samples from the policy (its ``generate`` is collective: a re-run on one
process would hang the others) or scores whole groups or queries.
"""

from __future__ import annotations

import importlib
import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from core.hints import did_you_mean
from rewards.groups import SCOPES, reward_scope

RewardFn = Callable[..., list[float]]

_REGISTRY: dict[str, RewardFn] = {}


class RewardError(ValueError):
    """A reward failed or returned an unusable value; the message names the reward and the row."""


def register_reward(
    name: str, *, scope: str = "completion", uses_generator: bool = False
) -> Callable[[RewardFn], RewardFn]:
    """Decorator registering a reward under ``name``; reusing a name for another function is an error.

    ``scope`` is ``completion``, ``group`` or ``query`` and ``uses_generator`` says the reward takes the
    policy sampler ``generate`` (see :mod:`rewards.groups`).
    """
    if scope not in SCOPES:
        raise ValueError(f"reward {name!r}: unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")

    def decorator(fn: RewardFn) -> RewardFn:
        if _REGISTRY.get(name, fn) is not fn:
            raise ValueError(f"reward name {name!r} is taken by {_REGISTRY[name].__qualname__}")
        _REGISTRY[name] = fn
        fn.reward_name = name  # type: ignore[attr-defined]
        fn.reward_scope = scope  # type: ignore[attr-defined]
        fn.uses_generator = uses_generator  # type: ignore[attr-defined]
        return fn

    return decorator


def available_rewards() -> list[str]:
    """Sorted names of the registered rewards."""
    return sorted(_REGISTRY)


def get_reward(spec: str, **kwargs: Any) -> RewardFn:
    """Resolve ``spec`` to a reward function with ``kwargs`` bound as its factory (config) arguments.

    The returned callable has ``__name__`` = the registered name (or the function's own name for a dotted
    path), which TRL uses to log ``rewards/<__name__>/mean``. Any named parameter after ``completions`` may
    be bound. TRL passes every dataset column as a keyword argument, so a column named like a bound argument
    or a keyword-only (config) parameter would silently change the config: that raises ValueError instead.
    """
    fn = _lookup(spec)
    name = getattr(fn, "reward_name", getattr(fn, "__name__", spec))
    accepted = _parameters(fn, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        accepted_text = ", ".join(accepted) or "none"
        raise ValueError(
            f"reward {name!r} got unknown argument(s) {', '.join(unknown)}; accepted: {accepted_text}"
        )
    guarded = (set(kwargs) | set(_parameters(fn, inspect.Parameter.KEYWORD_ONLY))) - {"generate"}

    scope = reward_scope(fn)
    unisolated = _unisolated(scope, bool(getattr(fn, "uses_generator", False)))

    def reward(completions: list[Any], **columns: Any) -> list[float]:
        clashes = sorted(set(columns) & guarded)
        if clashes:
            raise ValueError(
                f"dataset column(s) {', '.join(clashes)} clash with arguments of reward {name!r}"
            )
        try:
            values = fn(completions, **columns, **kwargs)
        except Exception as error:
            where = (
                f" ({unisolated})"
                if unisolated
                else _where(_failing_row(fn, completions, columns, kwargs), columns)
            )
            raise RewardError(f"reward {name!r} failed{where}: {_reason(name, error)}") from error
        return _checked(name, values, len(completions), columns)

    reward.__name__ = reward.__qualname__ = name
    reward.__doc__ = fn.__doc__
    reward.reward_scope = scope  # type: ignore[attr-defined]
    reward.uses_generator = bool(getattr(fn, "uses_generator", False))  # type: ignore[attr-defined]
    return reward


def _unisolated(scope: str, uses_generator: bool) -> str | None:
    """Why a failing reward is not re-run row by row to find the failing row, or None when it is.

    A reward that samples from the policy calls ``generate``, which every process must join: a re-run on
    one process would hang the others. A group or query reward needs whole groups: one row is no input.
    """
    if uses_generator:
        return "row not isolated: it samples from the policy"
    if scope != "completion":
        return f"row not isolated: it scores whole {'groups' if scope == 'group' else 'queries'}"
    return None


def _failing_row(
    fn: RewardFn, completions: list[Any], columns: Mapping[str, Any], kwargs: Mapping
) -> int | None:
    """The first row on which ``fn`` fails when called on that row alone (per-row columns sliced)."""
    size = len(completions)
    for row in range(size):
        sliced = {
            key: value[row : row + 1] if isinstance(value, list) and len(value) == size else value
            for key, value in columns.items()
        }
        try:
            fn(completions[row : row + 1], **sliced, **kwargs)
        except Exception:
            return row
    return None


def _where(row: int | None, columns: Mapping[str, Any]) -> str:
    if row is None:
        return ""
    query = columns.get("query_id")
    return f" on completion {row}" + (f" (query_id {query[row]!r})" if query else "")


def _reason(name: str, error: BaseException) -> str:
    """The error's first line without a repeated ``reward 'name': `` prefix, after its type."""
    message = (str(error).splitlines() or [""])[0].removeprefix(f"reward {name!r}: ")
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _checked(name: str, values: Any, size: int, columns: Mapping[str, Any]) -> list[float | None]:
    """A reward's output, or a one-line ValueError naming the reward and the row if it is not usable.

    TRL would read a NaN as "not applicable" and drop it silently; ``None`` (really not applicable) passes.
    """
    values = list(values)
    if len(values) != size:
        raise RewardError(f"reward {name!r} returned {len(values)} values for {size} completions")
    for row, value in enumerate(values):
        if value is not None and not (isinstance(value, numbers.Real) and math.isfinite(value)):
            raise RewardError(
                f"reward {name!r} returned {value!r}{_where(row, columns)}; expected a finite number or None"
            )
    return values


SPEC_KEYS = ("name", "weight", "args")


def resolve_rewards(specs: list[str | Mapping[str, Any]]) -> tuple[list[RewardFn], list[float]]:
    """A recipe's reward list as (functions, weights); an entry is a spec or ``{name, weight, args}``."""
    functions, weights = [], []
    for entry in specs:
        entry = {"name": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise TypeError(f"reward entry must be a name or a mapping with a 'name' key, got {entry!r}")
        unknown = sorted(set(entry) - set(SPEC_KEYS))
        if unknown:
            name = entry["name"]
            raise ValueError(f"reward {name!r}: unknown key(s) {', '.join(unknown)}; use {SPEC_KEYS}")
        args, weight = entry.get("args") or {}, entry.get("weight", 1.0)
        if not isinstance(args, Mapping) or isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise TypeError(f"reward {entry['name']!r}: 'args' must be a mapping and 'weight' a number")
        functions.append(get_reward(entry["name"], **args))
        weights.append(float(weight))
    return functions, weights


def _lookup(spec: str) -> RewardFn:
    if spec in _REGISTRY:
        return _REGISTRY[spec]
    if ":" not in spec and "." not in spec:
        known = available_rewards()
        raise ValueError(
            f"unknown reward {spec!r}{did_you_mean(spec, known)}; known rewards: {', '.join(known)}"
        )
    module_name, _, attr = spec.rpartition(":") if ":" in spec else spec.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"cannot import reward {spec!r}: {error}") from None
    if not callable(fn):
        raise TypeError(f"reward {spec!r} is not callable")
    return fn


def _parameters(fn: RewardFn, *kinds: Any) -> list[str]:
    """Names of ``fn``'s parameters of the given kinds, skipping the first one (``completions``)."""
    parameters = list(inspect.signature(fn).parameters.values())[1:]
    return [p.name for p in parameters if p.kind in kinds]
