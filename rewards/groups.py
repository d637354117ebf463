"""The group-aware reward protocol: which completions belong together, as explicit ids.

A reward declares its *scope* when it is registered (``register_reward(name, scope=...)``) or with the
attribute ``fn.reward_scope`` on a user function:

- ``completion`` (default): each completion is scored on its own; the reward runs on each process's batch.
- ``group``: the reward compares the G completions of one prompt (GRPO's group). It receives the column
  ``group_ids``: one id per completion, equal for the completions of one prompt.
- ``query``: the reward compares every completion of every prompt of one query (cross-prompt: ERank,
  Retro*'s inter-document reward). It receives ``group_ids`` and reads the dataset column ``query_id``.

Under rankrl's GRPO trainer (:mod:`trainers.trl_overrides`) a ``group`` or ``query`` reward runs on the
batch gathered from all processes, so a group split across processes is scored exactly as in one process,
and the query-grouped sampler keeps every prompt of a query in one generation batch. Called directly (in
tests, or outside training), pass ``group_ids`` yourself, e.g. :func:`consecutive_group_ids`.

A reward that samples from the policy declares ``uses_generator=True`` and receives ``generate``, a
:class:`Generate` callable; see :mod:`rewards.progress`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Protocol

SCOPES = ("completion", "group", "query")


class Generate(Protocol):
    """Samples continuations from the policy being trained (injected by the GRPO trainer).

    ``prompts[i]`` is a dataset prompt (text or chat messages), rendered as the trainer renders it for
    generation, and ``prefixes[i]`` is raw text appended after the rendered prompt (e.g. part of an
    assistant turn). Returns ``num_samples`` continuations per pair. The call is collective across
    processes: every process calls it exactly once per reward invocation, possibly with no pairs.
    """

    def __call__(
        self,
        prompts: Sequence[Any],
        prefixes: Sequence[str],
        *,
        num_samples: int,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
    ) -> list[list[str]]: ...


def reward_scope(fn: Any) -> str:
    """The declared scope of a reward function (``completion`` when it declares none)."""
    scope = getattr(fn, "reward_scope", "completion")
    if scope not in SCOPES:
        name = getattr(fn, "__name__", repr(fn))
        raise ValueError(f"reward {name!r} has reward_scope {scope!r}; expected one of {', '.join(SCOPES)}")
    return scope


def consecutive_group_ids(size: int, group_size: int) -> list[int]:
    """Group ids for ``size`` completions laid out as TRL lays them out: runs of ``group_size``."""
    if group_size < 1 or size % group_size:
        raise ValueError(f"{size} completions do not form groups of {group_size}")
    return [row // group_size for row in range(size)]


def group_rows(name: str, columns: Mapping[str, Any], size: int) -> list[list[int]]:
    """The rows of each group, groups in order of first appearance, from the ``group_ids`` column.

    ValueError naming the reward when the column is missing or does not hold one hashable id per row.
    """
    group_ids = columns.get("group_ids")
    if group_ids is None:
        raise ValueError(
            f"reward {name!r} compares the completions of a group and needs the column 'group_ids'; "
            "train with rankrl's GRPO trainer or pass group_ids (see rewards.groups.consecutive_group_ids)"
        )
    if len(group_ids) != size:
        raise ValueError(f"reward {name!r}: 'group_ids' has {len(group_ids)} entries for {size} completions")
    members: dict[Hashable, list[int]] = {}
    for row, group in enumerate(group_ids):
        try:
            members.setdefault(group, []).append(row)
        except TypeError:
            raise ValueError(f"reward {name!r}: group id {group!r} (row {row}) is not hashable") from None
    return list(members.values())
