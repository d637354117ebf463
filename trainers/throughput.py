"""Throughput metrics for TRL trainers: tokens/s per device, time shares, peak memory and MFU.

:class:`ThroughputCallback` logs, for every optimizer step (averaged over the steps of a logging window by
TRL's own metric logging), under ``throughput/``:

- ``step_time_s``: wall time from ``on_step_begin`` to ``on_step_end`` of this process.
- ``tokens_per_s_per_device``: NeMo-RL's tokens/s/GPU, the total tokens processed in the step by all
  processes divided by the step time and the number of processes. Tokens are the delta of TRL's global
  ``num_tokens`` counter (:func:`trainers.trl_overrides.tokens_seen`; GRPO: prompt + completion tokens,
  counted when generated, so with ``steps_per_generation > 1`` the steps that generate carry them all; SFT:
  attention-mask tokens).
- ``generated_tokens_per_s_per_device`` (GRPO): this process's completion tokens generated in the step over
  the step time; ``generation_tokens_per_s`` (GRPO): the same tokens over the generation time only.
- ``generation_share``, ``reward_share``, ``training_share`` (GRPO): the shares of the step time spent in
  ``GRPOTrainer._generate`` (incl. vLLM weight sync), in ``_calculate_rewards``, and the rest (old/ref
  log-probs, forward, backward, optimizer, data), from the timers of
  :class:`trainers.trl_overrides.RankRLGRPOTrainer` (``phase_seconds``, ``generated_tokens``). (TRL's own
  ``profiling/Time taken`` timings go only to wandb/mlflow/trackio, so they cannot be read back.)
- ``peak_memory_gb``: ``torch.cuda.max_memory_allocated`` on a GPU (reset at train start); on CPU the peak
  resident set size of the process (``resource.getrusage``; a lifetime peak that cannot be reset).
- ``mfu`` (GPU only): model FLOPs utilisation 6 * N * tokens_per_s_per_device / peak FLOPs of the device,
  with N the parameter count and the dense bf16 peak from :data:`PEAK_TFLOPS`; the 6N rule ignores attention
  FLOPs and counts generated tokens at training cost, so it is an estimate. Skipped for unknown devices.

The per-step metrics go into TRL's per-step metric log through :func:`trainers.trl_overrides.log_metric`.
At train end :attr:`ThroughputCallback.summary` holds the same rates over all steps together (time-weighted)
plus ``total_step_time_s``, ``total_tokens``, ``generated_tokens`` and ``steps``, under
``throughput_summary/``; it is logged once through ``trainer.log`` and merged into ``train_results``.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from trainers.trl_overrides import log_metric, tokens_seen

logger = logging.getLogger("rankrl")

PREFIX = "throughput"
PEAK_TFLOPS = {  # dense bf16 tensor-core peak per device, TFLOP/s; the first matching substring wins
    "B200": 2250.0,
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 70.0,
    "A10": 125.0,
    "L4": 121.0,
    "RTX 4090": 165.0,
}


class ThroughputCallback(TrainerCallback):
    """Logs the throughput metrics of the module docstring each step and a summary at train end."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.world_size = max(1, int(getattr(trainer.accelerator, "num_processes", 1)))
        self.summary: dict[str, float] = {}
        self.timed = hasattr(trainer, "phase_seconds")
        self._totals = {"step": 0.0, "generation": 0.0, "reward": 0.0, "generated": 0.0}
        self._step_start: float | None = None
        self._at_step_start = self._counters()
        self._tokens = 0
        self._tokens_start = 0

    def _counters(self) -> dict[str, float]:
        """The trainer's cumulative phase timers and generated-token count (zeros for an untimed trainer)."""
        phases = getattr(self.trainer, "phase_seconds", {})
        return {
            "generation": phases.get("generation", 0.0),
            "reward": phases.get("reward", 0.0),
            "generated": float(getattr(self.trainer, "generated_tokens", 0)),
        }

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Reset the GPU peak-memory counter and remember the token counter."""
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._tokens = self._tokens_start = tokens_seen(self.trainer)

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Start the step clock and remember the trainer's phase timers."""
        self._step_start = time.perf_counter()
        self._at_step_start = self._counters()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Compute this step's metrics and hand them to TRL's per-step metric log."""
        if self._step_start is None:
            return
        elapsed = max(time.perf_counter() - self._step_start, 1e-9)
        self._step_start = None
        tokens = tokens_seen(self.trainer)
        step_tokens, self._tokens = tokens - self._tokens, tokens
        step = {key: value - self._at_step_start[key] for key, value in self._counters().items()}
        for key, value in (("step", elapsed), *step.items()):
            self._totals[key] += value
        phases = {"generation": step["generation"], "reward": step["reward"]}
        metrics = self._rates(elapsed, step_tokens, step["generated"], phases)
        for name, value in metrics.items():
            log_metric(self.trainer, "train", f"{PREFIX}/{name}", value)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Summarise the run into :attr:`summary`, then log it once."""
        totals = self._totals
        tokens = tokens_seen(self.trainer) - self._tokens_start
        phases = {"generation": totals["generation"], "reward": totals["reward"]}
        rates = self._rates(totals["step"] or 1e-9, tokens, totals["generated"], phases)
        rates["total_step_time_s"] = rates.pop("step_time_s")
        rates.update(
            total_tokens=float(tokens), generated_tokens=totals["generated"], steps=state.global_step
        )
        self.summary = {f"{PREFIX}_summary/{name}": float(value) for name, value in rates.items()}
        logger.info("throughput summary: %s", self.summary)
        self.trainer.log(dict(self.summary))

    def _rates(
        self, seconds: float, tokens: float, generated: float, phases: dict[str, float]
    ) -> dict[str, float]:
        """The metrics of a span of ``seconds`` with global ``tokens`` and this process's ``generated``."""
        per_device = tokens / seconds / self.world_size
        metrics = {"step_time_s": seconds, "tokens_per_s_per_device": per_device}
        if self.timed:
            generating = phases["generation"]
            metrics["generated_tokens_per_s_per_device"] = generated / seconds
            metrics["generation_tokens_per_s"] = generated / generating if generating > 0 else 0.0
            metrics["generation_share"] = generating / seconds
            metrics["reward_share"] = phases["reward"] / seconds
            metrics["training_share"] = max(0.0, 1.0 - (generating + phases["reward"]) / seconds)
        metrics["peak_memory_gb"] = peak_memory_bytes() / 2**30
        mfu = model_flops_utilisation(self.trainer.model, per_device)
        if mfu is not None:
            metrics["mfu"] = mfu
        return metrics


def peak_memory_bytes() -> int:
    """Peak GPU memory allocated by torch on a GPU, else the process's peak resident set size."""
    if torch.cuda.is_available():
        return int(torch.cuda.max_memory_allocated())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB, macOS bytes


def device_peak_flops() -> float | None:
    """Dense bf16 peak FLOP/s of the current CUDA device from :data:`PEAK_TFLOPS`, None if unknown/CPU."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((tflops * 1e12 for key, tflops in PEAK_TFLOPS.items() if key in name), None)


def model_flops_utilisation(model: Any, tokens_per_s_per_device: float) -> float | None:
    """6 * parameters * tokens/s/device over the device's peak FLOP/s; None on CPU or an unknown GPU."""
    peak = device_peak_flops()
    if peak is None or model is None:
        return None
    params = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
    return 6.0 * params * tokens_per_s_per_device / peak
