"""Collective timeouts and one-line reports of failed collectives in multi-process runs.

A collective waits at most ``ddp_timeout`` seconds (a TrainingArguments field, default 1800; set it in the
recipe). Transformers passes it to the process group on GPUs but not with ``use_cpu`` (its CPU branch drops
it), so :func:`start_cpu_process_group` starts the gloo group itself with that timeout.

When a collective fails, gloo and NCCL raise long errors that name neither this process nor, usually, the
operation. :func:`describe_collective_failure` turns them into one line naming this rank and what is known
of the operation; with ``TORCH_DISTRIBUTED_DEBUG=DETAIL`` in the environment torch checks every collective
with a monitored barrier first, and the line then names the collective (e.g. ``ALLREDUCE``) and the ranks
that never arrived.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import torch.distributed as dist

DEFAULT_TIMEOUT_S = 1800  # TrainingArguments.ddp_timeout's default
_FAILURE_MARKS = (
    "Timed out",
    "timed out",
    "monitoredBarrier",
    "Monitored Barrier",
    "Connection closed by peer",
    "Watchdog caught",
)
_OPERATION = re.compile(r"OpType=(\w+)|waiting \d+ms for (\w+) operation")
_STUCK = re.compile(r"Ranks? ([\d, ]+) failed to pass monitoredBarrier")


def describe_collective_failure(error: BaseException) -> str | None:
    """One line for a failed collective, or None when ``error`` is not one."""
    text = str(error)
    if not isinstance(error, RuntimeError) or not any(mark in text for mark in _FAILURE_MARKS):
        return None
    rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    details = []
    operation = _OPERATION.search(text)
    if operation:
        details.append(f"operation {next(group for group in operation.groups() if group)}")
    stuck = _STUCK.search(text)
    if stuck:
        details.append(f"rank(s) {stuck.group(1).strip()} never arrived")
    if "Connection closed by peer" in text:
        details.append("a peer process exited")
    hint = (
        ""
        if os.environ.get("TORCH_DISTRIBUTED_DEBUG") == "DETAIL"
        else "; on GPUs, TORCH_DISTRIBUTED_DEBUG=DETAIL names the collective and the missing ranks"
    )
    what = f" ({', '.join(details)})" if details else ""
    failure = f"rank {rank} of {world}: a collective failed or timed out{what}"
    return f"{failure}; raise ddp_timeout if the step is just slow{hint}"


def start_cpu_process_group(config: Mapping[str, Any]) -> None:
    """Start the gloo process group with the recipe's ``ddp_timeout`` for a multi-process CPU run.

    Reads the recipe mapping because it must run before the training config exists: building it sets up
    the devices, which starts the process group. Accelerate then reuses this group. No-op otherwise.
    """
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if config.get("use_cpu") is True and distributed and not dist.is_initialized():
        timeout = timedelta(seconds=int(config.get("ddp_timeout") or DEFAULT_TIMEOUT_S))
        dist.init_process_group("gloo", timeout=timeout)
