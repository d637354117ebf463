"""Training progress for logs that are not a terminal: one plain line at a steady interval.

tqdm's bar and TRL's rich panel redraw in place, which a pipe, a file, ``tee`` or a CI log cannot show: a
long SFT stage then prints nothing until it ends. :class:`PlainProgressCallback` prints a line such as
``[sft] step 400/2000 (20%) loss 0.412 | 48s elapsed, ETA 3m12s`` every ``interval_s`` seconds (and at the
last step), with the latest logged loss and reward. :func:`progress_callbacks` picks it when stdout is not a
TTY.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from transformers import TrainerCallback

SHOWN_METRICS = ("loss", "reward", "eval_ndcg@10")


def format_duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3725`` -> ``1h02m05s``; under a minute, ``42s``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class PlainProgressCallback(TrainerCallback):
    """Print ``[label] step N/M (p%) <latest metrics> | elapsed, ETA`` every ``interval_s`` seconds.

    Only the main process prints. The ETA extrapolates the mean time per step since training began (the
    steps of a resumed run count from where it resumed).
    """

    def __init__(self, label: str, interval_s: float = 15.0, stream: TextIO | None = None):
        self.label, self.interval_s, self.stream = label, interval_s, stream
        self.latest: dict[str, float] = {}
        self.start_time = self.last_print = 0.0
        self.start_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_time = self.last_print = time.monotonic()
        self.start_step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.latest.update({key: logs[key] for key in SHOWN_METRICS if key in (logs or {})})

    def on_step_end(self, args, state, control, **kwargs):
        now = time.monotonic()
        last_step = state.global_step >= state.max_steps
        if state.is_world_process_zero and (now - self.last_print >= self.interval_s or last_step):
            self.last_print = now
            print(
                self.line(state.global_step, state.max_steps, now - self.start_time),
                file=self.stream or sys.stdout,
                flush=True,
            )

    def line(self, step: int, max_steps: int, elapsed: float) -> str:
        """The progress line for ``step`` of ``max_steps`` after ``elapsed`` seconds."""
        done = step - self.start_step
        remaining = elapsed / done * (max_steps - step) if done > 0 else float("nan")
        metrics = "".join(f" {key} {value:.4g}" for key, value in self.latest.items())
        eta = format_duration(remaining) if remaining == remaining else "?"
        percent = 100 * step / max(max_steps, 1)
        return (
            f"[{self.label}] step {step}/{max_steps} ({percent:.0f}%){metrics}"
            f" | {format_duration(elapsed)} elapsed, ETA {eta}"
        )


def progress_callbacks(label: str, rich: bool, interactive: bool | None = None) -> list[Any]:
    """The progress callbacks for a stage: TRL's rich panel (``rich``) or tqdm on a terminal (the Trainer's
    default, so none is added), a :class:`PlainProgressCallback` when stdout is not a terminal."""
    from trl import RichProgressCallback

    interactive = sys.stdout.isatty() if interactive is None else interactive
    if not interactive:
        return [PlainProgressCallback(label)]
    return [RichProgressCallback()] if rich else []
