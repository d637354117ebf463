"""The functions through which other modules reach TRL trainers' internals (see the package docstring)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import trl.trainer.utils as trl_utils
from trl.data_utils import maybe_apply_chat_template
from trl.models.utils import unwrap_model_for_generation

VLLM_SETTINGS = {"temperature": "temperature", "top_p": "top_p", "max_new_tokens": "max_completion_length"}
_TRL_COMPACTS_ON = trl_utils._use_triton


def _compacts_on(device: torch.device) -> bool:
    return device.type == "cpu" or _TRL_COMPACTS_ON(device)


def project_labelled_positions_only() -> None:
    """Make TRL's fused LM head project only the positions that have a label on CPU, as it does on CUDA.

    TRL's SFT and GRPO trainers patch the model's forward with a chunked LM head (``add_fused_lm_head``)
    that keeps just the positions whose label is not -100 when ``trl.trainer.utils._use_triton(device)``
    holds (CUDA, XPU). Elsewhere it projects every position, prompt and padding included, because a varying
    number of rows would recompile an XLA or Neuron graph. Eager CPU compiles nothing, and there the full
    projection is pure waste: on the demo's SFT batch (32 rows, 290 labelled positions of 2,240) one forward
    and backward took 164 ms with it and 128 ms without, and the demo's 1,700 SFT steps 266 s against 217 s.
    This answers True for CPU tensors in that one decision; which kernel computes the tiles
    (``trl.kernels.chunked_logprob._use_triton``) stays TRL's. Idempotent; applies to the whole process.
    """
    trl_utils._use_triton = _compacts_on


def log_metric(trainer: Any, mode: str, name: str, value: float) -> None:
    """Add ``value`` to the metric ``name`` that a TRL trainer averages into its next log entry of ``mode``.

    Relies on ``trainer._metrics[mode]`` (GRPOTrainer and SFTTrainer): a ``defaultdict(list)`` per mode
    (``"train"`` / ``"eval"``) whose lists the trainer's ``log`` averages into the logged entry, then clears.
    """
    trainer._metrics[mode][name].append(value)


def tokens_seen(trainer: Any) -> int:
    """The tokens a TRL trainer has processed so far, over all processes: what it logs as ``num_tokens``.

    Relies on GRPOTrainer adding every generation batch's prompt + completion tokens to
    ``state.num_input_tokens_seen``, and on SFTTrainer counting attention-mask tokens in
    ``trainer._total_train_tokens`` (which GRPOTrainer leaves at 0).
    """
    return int(max(trainer.state.num_input_tokens_seen or 0, trainer._total_train_tokens))


def render_prompt(trainer: Any, prompt: Any) -> str:
    """``prompt`` as GRPOTrainer renders it for generation (chat template with the generation prompt).

    A conversation goes through the chat template, plain text stays as is. Relies on
    ``trainer.chat_template_kwargs`` (GRPOTrainer's ``args.chat_template_kwargs or {}``), passed to the chat
    template as TRL passes them (without tools, which rankrl does not use).
    """
    return maybe_apply_chat_template(
        {"prompt": prompt}, trainer.processing_class, **trainer.chat_template_kwargs
    )["prompt"]


@contextmanager
def policy_for_generation(trainer: Any) -> Iterator[Any]:
    """The policy being trained, ready for HF ``generate``, entered as ``GRPOTrainer._generate`` enters it.

    Relies on TRL's ``unwrap_model_for_generation`` (gathers ZeRO-3 parameters when
    ``ds3_gather_for_generation``, pauses activation checkpointing), under ``torch.no_grad`` and
    ``trainer._dist.summon_full_params(trainer.model_wrapped, recurse=False)`` (FSDP's full parameters).
    Under ZeRO-3 and FSDP entering it is collective: every process must enter it the same number of times.
    """
    with (
        unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
        ) as model,
        torch.no_grad(),
        trainer._dist.summon_full_params(trainer.model_wrapped, recurse=False),
    ):
        yield model


def vllm_sample(
    trainer: Any, prompt_ids: list[list[int]], num_samples: int, settings: Mapping[str, Any]
) -> list[list[int]]:
    """``num_samples`` completions (token ids) of each of ``prompt_ids``, in order, from TRL's vLLM engine.

    ``settings`` (``temperature``, ``top_p``, ``max_new_tokens``) replace the engine's own for the duration
    of the call.

    Relies on ``trainer.vllm_generation`` (TRL's ``VLLMGeneration``, built when ``use_vllm``), whose
    ``generate(prompts, images, num_generations)`` takes each prompt repeated ``num_generations`` times,
    returns the completion ids second and reads ``temperature``, ``top_p`` and ``max_completion_length``
    (:data:`VLLM_SETTINGS`) from the engine when called. The engine holds the policy's weights of this step:
    GRPOTrainer syncs them before the step's own generation, which precedes the rewards that sample.
    """
    engine = trainer.vllm_generation
    saved = {attribute: getattr(engine, attribute) for attribute in VLLM_SETTINGS.values()}
    for key, attribute in VLLM_SETTINGS.items():
        setattr(engine, attribute, settings[key])
    repeated = [ids for ids in prompt_ids for _ in range(num_samples)]
    try:
        _, completion_ids, _, _ = engine.generate(prompts=repeated, images=None, num_generations=num_samples)
    finally:
        for attribute, value in saved.items():
            setattr(engine, attribute, value)
    return completion_ids
