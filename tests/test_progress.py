"""Progress in a log that is not a terminal: a plain line per interval from a real training run."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from trainers.progress import PlainProgressCallback, format_duration, progress_callbacks

ROOT = Path(__file__).resolve().parents[1]


def test_durations_read_as_minutes_and_hours():
    assert [format_duration(s) for s in (42, 75, 3725)] == ["42s", "1m15s", "1h02m05s"]


def test_line_holds_step_latest_metrics_elapsed_and_eta():
    callback = PlainProgressCallback("sft", interval_s=0.0, stream=io.StringIO())
    state = SimpleNamespace(global_step=0, max_steps=100, is_world_process_zero=True)
    callback.on_train_begin(None, state, None)
    callback.on_log(None, state, None, logs={"loss": 0.41234, "learning_rate": 1e-3})
    assert (
        callback.line(25, 100, elapsed=30.0) == "[sft] step 25/100 (25%) loss 0.4123 | 30s elapsed, ETA 1m30s"
    )


def test_a_terminal_keeps_tqdm_or_the_rich_panel():
    assert progress_callbacks("sft", rich=False, interactive=True) == []
    assert type(progress_callbacks("sft", rich=True, interactive=True)[0]).__name__ == "RichProgressCallback"
    assert isinstance(progress_callbacks("sft", rich=True, interactive=False)[0], PlainProgressCallback)


def test_training_piped_to_a_file_prints_plain_progress_lines(tmp_path):
    env = {**os.environ, "RANKRL_SMOKE_DIR": str(tmp_path), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    command = [
        sys.executable,
        "-m",
        "rankrl.cli",
        "train",
        "recipes/demo/sft.yaml",
        "--smoke",
        "max_steps=3",
    ]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("[sft] step ")]
    assert lines and lines[-1].startswith("[sft] step 3/3 (100%) loss "), result.stdout[-2000:]
    assert "elapsed, ETA" in lines[-1]
