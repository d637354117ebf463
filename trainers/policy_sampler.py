"""Sampling from the policy being trained, for rewards that need it (MRT's meta-prover in rewards.progress).

:class:`PolicySampler` implements :class:`rewards.groups.Generate`. Each prompt is rendered as TRL renders
prompts for generation (its chat template with the generation prompt; plain text as is) and the prefix is
appended as raw text. Generation uses the trainer's engine:

- HF ``generate`` on the unwrapped model, inside TRL's ``unwrap_model_for_generation`` (which gathers ZeRO-3
  parameters and pauses activation checkpointing), in chunks of ``chunk_size`` sequences, left-padded. The
  context is entered exactly once per call, on every process, so the call is safe under ZeRO-3 and FSDP
  even when a process has nothing to sample.
- TRL's vLLM engine (``trainer.vllm_generation``) when ``use_vllm`` is on, with the sampling settings of the
  call swapped in for its own for the duration of the call. (Not exercised on CPU: TRL's vLLM weight sync
  needs CUDA.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from trl.data_utils import maybe_apply_chat_template
from trl.models.utils import unwrap_model_for_generation


class PolicySampler:
    """``generate(prompts, prefixes, num_samples=, temperature=, top_p=, max_new_tokens=)`` on the policy."""

    def __init__(self, trainer: Any, chunk_size: int = 64) -> None:
        self.trainer = trainer
        self.chunk_size = chunk_size
        if getattr(trainer, "is_deepspeed_enabled", False) and not trainer.args.ds3_gather_for_generation:
            raise ValueError(
                "rewards that sample from the policy need ds3_gather_for_generation: true under ZeRO-3"
            )

    def __call__(
        self,
        prompts: Sequence[Any],
        prefixes: Sequence[str],
        *,
        num_samples: int,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
    ) -> list[list[str]]:
        """``num_samples`` sampled continuations of each rendered prompt + prefix."""
        texts = [self._render(prompt) + prefix for prompt, prefix in zip(prompts, prefixes, strict=True)]
        settings = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens}
        if getattr(self.trainer, "use_vllm", False):
            flat = self._vllm(texts, num_samples, **settings)
        else:
            flat = self._hf(texts, num_samples, **settings)
        return [flat[start : start + num_samples] for start in range(0, len(flat), num_samples)]

    def _render(self, prompt: Any) -> str:
        chat_kwargs = getattr(self.trainer, "chat_template_kwargs", {})
        return maybe_apply_chat_template({"prompt": prompt}, self.trainer.processing_class, **chat_kwargs)[
            "prompt"
        ]

    def _hf(self, texts: list[str], num_samples: int, **settings: Any) -> list[str]:
        trainer, tokenizer = self.trainer, self.trainer.processing_class
        outputs: list[str] = []
        per_chunk = max(1, self.chunk_size // num_samples)
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
            for start in range(0, len(texts), per_chunk):
                batch = tokenizer(
                    texts[start : start + per_chunk],
                    return_tensors="pt",
                    padding=True,
                    padding_side="left",
                    add_special_tokens=False,
                ).to(trainer.accelerator.device)
                generated = model.generate(
                    **batch,
                    do_sample=True,
                    num_return_sequences=num_samples,
                    pad_token_id=tokenizer.pad_token_id,
                    **settings,
                )
                new_tokens = generated[:, batch["input_ids"].shape[1] :]
                outputs.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        return outputs

    def _vllm(self, texts: list[str], num_samples: int, **settings: Any) -> list[str]:
        tokenizer, engine = self.trainer.processing_class, self.trainer.vllm_generation
        prompt_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        repeated = [ids for ids in prompt_ids for _ in range(num_samples)]
        with _engine_settings(engine, settings):
            _, completion_ids, _, _ = engine.generate(
                prompts=repeated, images=None, num_generations=num_samples
            )
        return tokenizer.batch_decode(completion_ids, skip_special_tokens=True)


@contextmanager
def _engine_settings(engine: Any, settings: dict[str, Any]) -> Iterator[None]:
    """Swap the call's sampling settings into TRL's ``VLLMGeneration`` and restore its own afterwards."""
    names = {"temperature": "temperature", "top_p": "top_p", "max_new_tokens": "max_completion_length"}
    saved = {attribute: getattr(engine, attribute) for attribute in names.values()}
    for key, attribute in names.items():
        setattr(engine, attribute, settings[key])
    try:
        yield
    finally:
        for attribute, value in saved.items():
            setattr(engine, attribute, value)
