"""Collective timeouts and one-line reports of failed collectives in multi-process runs.

A collective waits at most ``ddp_timeout`` seconds (a TrainingArguments field, default 1800; set it in the
recipe). Transformers passes it to the process group on GPUs but not with ``use_cpu`` (its CPU branch drops
it), so :func:`start_cpu_process_group` starts the gloo group itself with that timeout.

When a collective fails, gloo and NCCL raise long errors that name neither this process nor, usually, the
operation. :func:`describe_collective_failure` turns them into one line naming this rank and what is known
of the operation; with ``TORCH_DISTRIBUTED_DEBUG=DETAIL`` in the environment torch checks every collective
with a monitored barrier first, and the line then names the collective (e.g. ``ALLREDUCE``) and the ranks
that never arrived.

:func:`end_process_group` closes a finished run's group while the interpreter is still whole.
"""

from __future__ import annotations

import gc
import os
import re
import sys
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
_ARRIVED, _ALL_ARRIVED = "rankrl/end_of_run/arrived", "rankrl/end_of_run/all_arrived"
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


def end_process_group() -> None:
    """Close a finished run's process groups on every rank while the interpreter is still whole.

    Two ways a launched run failed after its work was saved, both fixed here:

    - DeepSpeed keeps process groups of its own (a clone of the world group), which torch's
      ``destroy_process_group`` does not free. They lived on into interpreter teardown, and when a peer
      exited then, gloo aborted the rank ("terminate called without an active exception").
      ``deepspeed.comm.destroy_process_group`` also releases DeepSpeed's references, and a garbage
      collection frees the groups now.
    - A rank that closes its groups right after a gloo barrier can close them while a slower rank is still
      completing that barrier, which then fails ("Connection closed by peer"). So the ranks meet on the
      group's key-value store instead (under ``accelerate launch`` and ``torchrun`` its server lives in
      the launcher, not in a rank): once every rank has arrived, no gloo work is in flight anywhere, and
      closing the groups cannot cut one short.

    Uses torch's ``_get_default_store`` (there is no public accessor); no-op in a single-process run.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    _wait_for_every_rank(dist.distributed_c10d._get_default_store(), dist.get_world_size())
    deepspeed_comm = sys.modules.get("deepspeed.comm")
    if deepspeed_comm is not None and deepspeed_comm.is_initialized():
        deepspeed_comm.destroy_process_group()
    else:
        dist.destroy_process_group()
    gc.collect()


def _wait_for_every_rank(store: dist.Store, world_size: int) -> None:
    """Return once all ``world_size`` ranks have called this with the same ``store``."""
    if store.add(_ARRIVED, 1) == world_size:
        store.set(_ALL_ARRIVED, "1")
    store.wait([_ALL_ARRIVED])
