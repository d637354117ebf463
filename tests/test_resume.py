"""Exact resume after ``kill -9``: SFT and GRPO, 1 and 2 processes, mid-epoch and epoch-boundary checkpoints.

Each case trains the tiny model through the real CLI (``python -m rankrl.cli train``) for ``STEPS`` steps on
12 rows with 4 rows per step (3 steps per epoch), saving every 2 steps. An uninterrupted run gives the
reference weights. A second run is SIGKILLed (its whole process group) as soon as ``checkpoint-6`` is
complete; the checkpoints after the one under test are removed, and the same command is run again: it
resumes automatically and must end with weights equal to the reference (max |diff| <= 1e-6) after exactly
``STEPS`` steps. Resuming from step 6 starts an epoch (verl#7401 skipped the remaining steps there); from
step 4 it resumes mid-epoch, so the data position must be restored (2-process runs: step 4 only).
One-process runs that are not killed run in this process (no interpreter start-up, one thread like the
killed run's subprocess), the same command line through ``rankrl.cli.main``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rankrl import cli
from rankrl.smoke import prepare_toy_workspace, smoke_overrides
from tasks import get_task
from tests.test_multiprocess import EXTENSIONS_DIR, _env, _yaml
from trainers.pipeline import last_complete_checkpoint

ROOT = Path(__file__).resolve().parents[1]
STEPS, KILL_AFTER, TIMEOUT_S = 10, 6, 300


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    task = get_task("listwise", use_system_prompt=True, answer_mode="partial")
    return prepare_toy_workspace(tmp_path_factory.mktemp("toy"), task, num_train=64, num_heldout=8)


def _command(stage: str, workspace, output_dir: Path, processes: int) -> list[str]:
    values = {
        **smoke_overrides(stage, workspace, output_dir),
        "eval_dataset": None,
        "max_train_samples": 12,
        "per_device_train_batch_size": 4 // processes,
        "max_steps": STEPS,
        "save_strategy": "steps",
        "save_steps": 2,
        "save_total_limit": None,
        "learning_rate": 1e-3,
        "rich_progress": False,
        "resume": True,
        "seed": 3,
    }
    if stage == "grpo":
        values.update(num_generations=2, max_completion_length=8, temperature=1.0)
    command = [sys.executable, "-m", "rankrl.cli", "train", f"recipes/demo/{stage}.yaml"]
    command += ["--launch", "recipes/accelerate/cpu_ddp2.yaml"] if processes == 2 else []
    command += [f"{key}={_yaml(value)}" for key, value in values.items()]
    return command + (["rewards=[tests.recording_rewards:text_length]"] if stage == "grpo" else [])


def _run(command: list[str], kill_after: int | None = None) -> str:
    """Run to completion, or SIGKILL the process group once checkpoint-``kill_after`` is complete."""
    env = _env(EXTENSIONS_DIR)
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    output_dir = Path(
        next(arg.split("=", 1)[1] for arg in command if arg.startswith("output_dir=")).strip('"')
    )
    deadline = time.monotonic() + TIMEOUT_S
    while process.poll() is None and time.monotonic() < deadline:
        if kill_after and (output_dir / f"checkpoint-{kill_after}" / "trainer_state.json").exists():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            assert not (output_dir / "model.safetensors").exists(), "the run finished before the kill"
            return ""
        time.sleep(0.01)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"{' '.join(command[:6])} timed out after {TIMEOUT_S}s")
    output = process.stdout.read().decode(errors="replace")
    assert process.returncode == 0, output[-5000:]
    assert not kill_after, "the run ended before checkpoint-{kill_after} appeared"
    return output


def _run_here(command: list[str], caplog: pytest.LogCaptureFixture) -> str:
    """Run a 1-process ``command`` to completion in this process with one thread; return its log."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    caplog.clear()
    try:
        with caplog.at_level(logging.INFO, logger="rankrl"):
            cli.main(command[3:])  # after `python -m rankrl.cli`
    finally:
        torch.set_num_threads(threads)
    return caplog.text


def _weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(output_dir / "model.safetensors")


def _final_step(output_dir: Path) -> int:
    state = json.loads((output_dir / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    return state["global_step"]


CASES = [
    pytest.param("sft", 1, id="sft-1proc"),
    pytest.param("grpo", 1, id="grpo-1proc"),
    pytest.param("sft", 2, id="sft-2proc", marks=pytest.mark.multiprocess),
    pytest.param("grpo", 2, id="grpo-2proc", marks=pytest.mark.multiprocess),
]


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "processes"), CASES)
def test_resume_after_kill_equals_an_uninterrupted_run(stage, processes, workspace, tmp_path, caplog):
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"

    def run(command: list[str]) -> str:
        return _run(command) if processes == 2 else _run_here(command, caplog)

    run(_command(stage, workspace, reference_dir, processes))
    reference = _weights(reference_dir)
    _run(_command(stage, workspace, killed_dir, processes), kill_after=KILL_AFTER)
    # An epoch boundary (3 steps per epoch), then mid-epoch; with 2 processes mid-epoch only (CI time).
    for resume_from in (KILL_AFTER, 4) if processes == 1 else (4,):
        resumed_dir = tmp_path / f"resumed-{resume_from}"
        shutil.copytree(killed_dir, resumed_dir)
        for checkpoint in resumed_dir.glob("checkpoint-*"):
            if int(checkpoint.name.split("-")[1]) > resume_from:
                shutil.rmtree(checkpoint)
        output = run(_command(stage, workspace, resumed_dir, processes))
        assert f"resuming from {resumed_dir / f'checkpoint-{resume_from}'}" in output
        assert _final_step(resumed_dir) == STEPS
        resumed = _weights(resumed_dir)
        diff = max((resumed[key] - reference[key]).abs().max().item() for key in reference)
        assert diff <= 1e-6, f"resumed from step {resume_from}: max |diff| {diff:.3g}"
    assert any(
        not torch.equal(reference[key], _weights(killed_dir / "checkpoint-2")[key]) for key in reference
    )


def test_resume_skips_a_checkpoint_cut_short_by_a_kill(tmp_path, caplog):
    assert last_complete_checkpoint(tmp_path / "missing") is None
    for step, complete in [(2, True), (10, True), (12, False), (9, True)]:
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-final").mkdir()
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")  # 10 > 9 numerically
    assert "skipping" in caplog.text and "checkpoint-12" in caplog.text
