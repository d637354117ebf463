"""Monitors: weight-0 "rewards" that log how listwise answers fail or collapse, once per GRPO batch.

Put a monitor in a recipe's reward list with ``weight: 0.0``: TRL then calls it like any reward, logs its
mean and std as ``rewards/<name>/mean`` and ``rewards/<name>/std``, and it does not change the advantages.
Each reward's mean/std and the fraction of groups whose rewards have zero std (``frac_reward_zero_std``)
are logged by TRL itself for every reward function, so monitors do not repeat them.

:func:`listwise_monitor` returns 1.0 for a valid answer and 0.0 otherwise (so
``rewards/listwise_monitor/mean`` is the validity rate that ``listwise_format`` logs) and, through the
``log_metric`` keyword that TRL 1.16 passes to every reward function, logs per batch:

- ``monitor/invalid_rate`` and ``monitor/invalid/<reason>``: the share of completions rejected, overall and
  per named reason: first the think/answer format (:data:`FORMAT_REASONS`, from
  :func:`tasks.parsers.parse_think_answer`), then the permutation (:data:`PERMUTATION_REASONS`, from
  :func:`tasks.parsers.parse_permutation`). Every reason is logged, 0.0 included, so curves are continuous.
- ``monitor/identity_rate``: the share of completions whose (completed) order is the input order 1..n with
  n >= 2; in ``partial`` mode an answer listing only a prefix in input order counts too, as its completion
  copies the input order.
- ``monitor/spearman_initial`` and ``monitor/kendall_initial``: the mean Spearman rho and Kendall tau (tau-b,
  equal to tau-a on permutations, :func:`rewards.metrics.kendall_tau`) between the predicted order and the
  initial (prompt) order, over valid answers with n >= 2: +1 copies the input order, -1 reverses it. Not
  logged in a batch without such answers.

All rates divide by the number of completions in the batch (per process; TRL averages the values logged by
the processes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from rewards.listwise import _column, _doc_ids, read_listwise_answer
from rewards.metrics import kendall_tau
from rewards.registry import register_reward
from tasks.parsers import MODES

FORMAT_REASONS = ("missing_think", "unclosed_think", "missing_answer", "unclosed_answer")
PERMUTATION_REASONS = ("empty", "not_an_id_list", "out_of_range", "duplicate_id", "wrong_count")
PREFIX = "monitor"

MetricLogger = Callable[[str, float], None]


@register_reward("listwise_monitor")
def listwise_monitor(completions: list[Any], *, mode: str = "strict", **columns: Any) -> list[float]:
    """1.0 per valid listwise answer (format and permutation in ``mode``), else 0.0; logs the monitors.

    Reads the ``candidates`` column like the listwise rewards; ``log_metric`` (passed by TRL) receives the
    metrics listed in the module docstring, and without it nothing is logged. Never raises on completion
    text; a malformed ``candidates`` row raises ValueError like the other listwise rewards.
    """
    if mode not in MODES:
        expected = ", ".join(MODES)
        raise ValueError(f"reward 'listwise_monitor': unknown mode {mode!r}; expected one of {expected}")
    log_metric: MetricLogger | None = columns.get("log_metric")
    rows = _column("listwise_monitor", columns, "candidates", len(completions))
    reasons: list[str] = []
    orders: list[tuple[int, ...]] = []
    validity: list[float] = []
    for completion, row in zip(completions, rows, strict=True):
        _, permutation = read_listwise_answer(completion, len(_doc_ids("listwise_monitor", row)), mode)
        validity.append(float(permutation.valid))
        if permutation.order is None:
            reasons.append(permutation.reason)
        else:
            orders.append(permutation.order)
    if log_metric is not None and completions:
        for name, value in monitor_metrics(reasons, orders, len(completions)).items():
            log_metric(name, value)
    return validity


def monitor_metrics(reasons: list[str], orders: list[tuple[int, ...]], total: int) -> dict[str, float]:
    """The monitor metrics of a batch of ``total`` completions: failure ``reasons`` and valid ``orders``."""
    counts = Counter(reasons)
    metrics = {f"{PREFIX}/invalid_rate": len(reasons) / total}
    for reason in (*FORMAT_REASONS, *PERMUTATION_REASONS, *sorted(set(counts) - _KNOWN)):
        metrics[f"{PREFIX}/invalid/{reason}"] = counts[reason] / total
    ranked = [order for order in orders if len(order) >= 2]
    metrics[f"{PREFIX}/identity_rate"] = sum(is_identity(order) for order in ranked) / total
    if ranked:
        metrics[f"{PREFIX}/spearman_initial"] = float(np.mean([spearman_initial(o) for o in ranked]))
        metrics[f"{PREFIX}/kendall_initial"] = float(np.mean([kendall_initial(o) for o in ranked]))
    return metrics


def is_identity(order: tuple[int, ...]) -> bool:
    """Whether ``order`` (0-based input positions, best first) is the input order 0, 1, ..., n-1."""
    return all(position == rank for rank, position in enumerate(order))


def spearman_initial(order: tuple[int, ...]) -> float:
    """Spearman's rho between predicted rank r and the input position ``order[r]`` (n >= 2).

    ``order`` is a permutation, so rho is 1 - 6 * sum(d^2) / (n (n^2 - 1)) exactly (no ties), which
    ``scipy.stats.spearmanr`` also returns; written out because scipy's call overhead (0.7 ms) made this
    monitor a tenth of the demo's GRPO step.
    """
    n = len(order)
    squared_distance = sum((position - rank) ** 2 for rank, position in enumerate(order))
    return 1.0 - 6.0 * squared_distance / (n * (n * n - 1))


def kendall_initial(order: tuple[int, ...]) -> float:
    """Kendall's tau between predicted rank r and the input position ``order[r]`` (n >= 2)."""
    return kendall_tau(order, range(len(order)))


_KNOWN = frozenset((*FORMAT_REASONS, *PERMUTATION_REASONS))
