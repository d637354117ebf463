"""The vLLM generation backend: :class:`VLLMBackend`, used by ``rankrl eval`` / ``rankrl tts`` when vLLM is
installed (``engine: auto`` or ``vllm``).

Prompts are encoded by :func:`core.generation.encode_prompt`, as :class:`HFBackend` encodes them,
and passed to vLLM as token ids, and completions are decoded by the same tokenizer call, so both engines see
the same tokens and write the same text (with float32 weights greedy decoding gives the same tokens).
Log-probabilities are vLLM's raw ones (before temperature), as HF's are. vLLM batches and schedules all
prompts itself, so one call covers every prompt. Scoring next tokens (``Sampling.score_tokens``) is
:class:`~core.generation.HFBackend`'s only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.generation import Generation, Messages, Sampling, encode_prompt


class VLLMBackend:
    """``generate(prompts, sampling)`` on a ``vllm.LLM`` engine."""

    name = "vllm"

    def __init__(self, model: str, dtype: str = "auto", seed: int = 0, **engine_args: Any) -> None:
        try:
            from vllm import LLM
        except ImportError:
            raise ImportError("the vLLM backend needs vllm: pip install 'rankrl[vllm]'") from None
        self.llm = LLM(model=model, dtype=dtype, seed=seed, **engine_args)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts: Sequence[Messages], sampling: Sampling) -> list[list[Generation]]:
        """Complete ``prompts``: ``num_samples`` per prompt (greedy: one decode repeated)."""
        from vllm import SamplingParams

        if sampling.score_tokens:
            raise NotImplementedError(
                "the vLLM backend does not score next tokens (Sampling.score_tokens); use engine: hf"
            )
        greedy = sampling.temperature <= 0
        params = SamplingParams(
            n=1 if greedy else sampling.num_samples,
            temperature=max(sampling.temperature, 0.0),
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            max_tokens=sampling.max_new_tokens,
            logprobs=0 if sampling.logprobs else None,
        )
        requests = [{"prompt_token_ids": encode_prompt(self.tokenizer, messages)} for messages in prompts]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        results = [[self._generation(choice, sampling.logprobs) for choice in out.outputs] for out in outputs]
        return [samples * sampling.num_samples if greedy else samples for samples in results]

    def _generation(self, choice: Any, logprobs: bool) -> Generation:
        ids = list(choice.token_ids)
        text = self.tokenizer.decode(ids, skip_special_tokens=True)  # as HFBackend decodes, partial bytes too
        if not logprobs:
            return Generation(text, len(ids))
        pieces = tuple(self.tokenizer.decode([token]) for token in ids)
        chosen = tuple(step[token].logprob for step, token in zip(choice.logprobs, ids, strict=True))
        return Generation(text, len(ids), pieces, chosen)
