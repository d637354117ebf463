"""A hung collective ends the run with one line naming the rank and the operation (with torch's DETAIL debug
mode, the collective and the ranks that never arrived): unit tests on the messages gloo really raises, and a
real 2-process GRPO run in which rank 1 stalls inside a reward until rank 0's
``ddp_timeout`` (5 s) expires; and the end of a finished run, which waits for every rank."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rankrl.smoke import prepare_toy_workspace, smoke_overrides
from tasks import get_task
from tests.test_multiprocess import EXTENSIONS_DIR, _env, _yaml
from trainers.collectives import describe_collective_failure

ROOT = Path(__file__).resolve().parents[1]
GLOO_TIMEOUT = (
    "[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 4000ms for recv "
    "operation to complete"
)
DETAIL_STUCK = "[Rank 0]: Ranks 1 failed to pass monitoredBarrier in 4000 ms"
DETAIL_OPERATION = (
    "ProcessGroupWrapper: Monitored Barrier encountered error running collective: CollectiveFingerPrint("
    "SequenceNumber=0, OpType=ALLREDUCE, TensorShape=[1], TensorDtypes=Float)"
)


def test_gloo_timeout_names_rank_and_operation(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("TORCH_DISTRIBUTED_DEBUG", raising=False)
    message = describe_collective_failure(RuntimeError(GLOO_TIMEOUT))
    assert message.startswith("rank 0 of 2: a collective failed or timed out (operation recv)")
    assert "TORCH_DISTRIBUTED_DEBUG=DETAIL" in message and "\n" not in message


def test_detail_mode_names_the_collective_and_the_missing_ranks(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCH_DISTRIBUTED_DEBUG", "DETAIL")
    assert "(operation ALLREDUCE)" in describe_collective_failure(RuntimeError(DETAIL_OPERATION))
    monkeypatch.setenv("RANK", "0")
    message = describe_collective_failure(RuntimeError(DETAIL_STUCK))
    assert message == (
        "rank 0 of 2: a collective failed or timed out (rank(s) 1 never arrived); "
        "raise ddp_timeout if the step is just slow"
    )


def test_other_errors_are_not_collective_failures():
    assert describe_collective_failure(RuntimeError("CUDA out of memory")) is None
    assert describe_collective_failure(ValueError("Timed out")) is None


END_OF_RUN = textwrap.dedent(
    """
    import sys, time
    import torch.distributed as dist
    from trainers.collectives import end_process_group
    rank, store, delay_s = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    time.sleep(delay_s)
    started = time.monotonic()
    end_process_group()
    print(f"{time.monotonic() - started:.3f} {dist.is_initialized()}")
    """
)


@pytest.mark.multiprocess
def test_the_end_of_a_run_waits_for_every_rank_then_destroys_the_group(tmp_path):
    late_rank_delay_s = 2.0
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", END_OF_RUN, str(rank), str(tmp_path / "store"), str(delay_s)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank, delay_s in [(0, 0.0), (1, late_rank_delay_s)]
    ]
    outputs = [process.communicate(timeout=120)[0] for process in ranks]
    assert [process.returncode for process in ranks] == [0, 0], outputs
    (early_wait_s, early_initialized), (_, late_initialized) = [output.split()[-2:] for output in outputs]
    assert float(early_wait_s) >= late_rank_delay_s - 0.5, "rank 0 destroyed the group without waiting"
    assert early_initialized == late_initialized == "False"


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_stalled_rank_ends_the_run_with_one_line_naming_rank_zero(tmp_path):
    task = get_task("listwise", use_system_prompt=True, answer_mode="partial")
    workspace = prepare_toy_workspace(tmp_path / "toy", task, num_train=16, num_heldout=4)
    values = {**smoke_overrides("grpo", workspace, tmp_path / "out"), "eval_dataset": None, "ddp_timeout": 5}
    values.update(per_device_train_batch_size=2, max_completion_length=8, rich_progress=False)
    command = [sys.executable, "-m", "rankrl.cli", "train", "recipes/demo/grpo.yaml"]
    command += ["--launch", "recipes/accelerate/cpu_ddp2.yaml"]
    command += [f"{key}={_yaml(value)}" for key, value in values.items()]
    command += ["rewards=[tests.recording_rewards:stall_on_rank_one]"]
    done = subprocess.run(
        command, cwd=ROOT, env=_env(EXTENSIONS_DIR), capture_output=True, text=True, timeout=240
    )
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "a collective failed" in line]
    # Rank 0 waits in the reward gather (gloo's send), times out after ddp_timeout and exits with one line.
    assert any(line.startswith("rank 0 of 2: a collective failed or timed out (operation ") for line in lines)
