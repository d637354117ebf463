"""Sampling from the policy being trained, for rewards that need it (MRT's meta-prover in rewards.progress).

:class:`PolicySampler` implements :class:`rewards.groups.Generate`. Each prompt is rendered as TRL renders
prompts for generation (:func:`trainers.trl_overrides.render_prompt`) and the prefix is appended as raw
text. Generation uses the trainer's engine, reached only through :mod:`trainers.trl_overrides`:

- HF ``generate`` on the policy inside :func:`trainers.trl_overrides.policy_for_generation` (which gathers
  ZeRO-3 parameters and pauses activation checkpointing), in chunks of ``chunk_size`` sequences,
  left-padded. The context is entered exactly once per call, on every process, so the call is safe under
  ZeRO-3 and FSDP even when a process has nothing to sample.
- TRL's vLLM engine when ``use_vllm`` is on (:func:`trainers.trl_overrides.vllm_sample`, which swaps the
  call's sampling settings in for the engine's own for the duration of the call). (Not exercised on CPU:
  TRL's vLLM weight sync needs CUDA.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trainers.trl_overrides import policy_for_generation, render_prompt, vllm_sample


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
        texts = [
            render_prompt(self.trainer, prompt) + prefix
            for prompt, prefix in zip(prompts, prefixes, strict=True)
        ]
        settings = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens}
        if self.trainer.args.use_vllm:
            flat = self._vllm(texts, num_samples, settings)
        else:
            flat = self._hf(texts, num_samples, **settings)
        return [flat[start : start + num_samples] for start in range(0, len(flat), num_samples)]

    def _hf(self, texts: list[str], num_samples: int, **settings: Any) -> list[str]:
        trainer, tokenizer = self.trainer, self.trainer.processing_class
        outputs: list[str] = []
        per_chunk = max(1, self.chunk_size // num_samples)
        with policy_for_generation(trainer) as model:
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

    def _vllm(self, texts: list[str], num_samples: int, settings: dict[str, Any]) -> list[str]:
        tokenizer = self.trainer.processing_class
        prompt_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        completion_ids = vllm_sample(self.trainer, prompt_ids, num_samples, settings)
        return tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
