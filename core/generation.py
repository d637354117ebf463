"""Generation backends: the one interface every ranking strategy generates through.

A backend turns a list of chat prompts and one :class:`Sampling` into, per prompt, ``num_samples``
:class:`Generation` objects (text, generated-token count and, when asked, per-token log-probabilities).
Strategies never see the model, so any engine plugs in by implementing :class:`GenerationBackend`:
:class:`HFBackend` is the transformers implementation, :class:`evaluation.vllm_backend.VLLMBackend`
the vLLM one (tests answer with an oracle, ``tests/oracles.py``); both encode prompts with
:func:`encode_prompt`, so they see the same tokens.

:class:`HFBackend` tokenizes every prompt once, sorts the prompts by length so a batch holds prompts of
similar length (less padding), generates ``batch_size`` prompts at a time with left padding and returns the
results in the caller's order. Greedy decoding (``temperature == 0``) is deterministic for a given call;
sampling draws from torch's global generator, seeded when the backend is built with a ``seed``.

A prompt whose last message is the assistant's is a prefill: its text is appended verbatim (tokenized
without special tokens) after the generation prompt and the completion continues it; budget forcing
(:mod:`~evaluation.tts`) relies on this.

Scoring instead of generating: with ``Sampling.score_tokens`` (e.g. ``("yes", "no")``) a backend runs one
forward pass per prompt and returns, in ``Generation.candidate_logprobs``, the log-probability of each of
those strings as the next token (each must be one token of the tokenizer). Relevance judgements that rank
by ``logit(yes) - logit(no)`` (monoT5, Qwen3-Reranker, ProRank) read this difference of log-probabilities,
which equals the difference of logits. The tokens every prompt of a batch starts with (a template's system
turn and instruction) are run once and their key/value cache is shared by the batch, so each pair costs only
its own tokens.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.integrations import is_deepspeed_zero3_enabled
from transformers.modeling_outputs import CausalLMOutputWithPast

Messages = list[dict[str, str]]  # a chat prompt: {"role": ..., "content": ...} turns
# The key/value cache's name in a causal LM's forward and output: transformers 5.0's ``past_key_values``
# became ``cache`` in later 5.x releases, which warn on the old name.
_CACHE_ARG = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


@dataclass(frozen=True)
class Sampling:
    """How to decode: ``temperature == 0`` is greedy; ``top_k == 0`` and ``top_p == 1`` disable those
    filters; ``logprobs`` asks for the log-probability of every generated token. Non-empty
    ``score_tokens`` replaces generation by one forward pass that scores those next tokens (module
    docstring); the other fields are then ignored."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    num_samples: int = 1
    logprobs: bool = False
    score_tokens: tuple[str, ...] = ()


@dataclass(frozen=True)
class Generation:
    """One completion: its text, how many tokens were generated (up to and including the end token) and,
    with ``Sampling.logprobs``, each generated token's decoded text and log-probability under the model.

    With ``Sampling.score_tokens`` nothing is generated: ``candidate_logprobs[i]`` is the log-probability of
    ``score_tokens[i]`` as the next token, ``text`` the likeliest of them and ``num_tokens`` 0."""

    text: str
    num_tokens: int
    token_texts: tuple[str, ...] = ()
    token_logprobs: tuple[float, ...] = ()
    candidate_logprobs: tuple[float, ...] = ()


class GenerationBackend(Protocol):
    """Anything that completes chat prompts: ``generate(prompts, sampling)[i][j]`` is sample j of prompt i."""

    name: str

    def generate(self, prompts: Sequence[Messages], sampling: Sampling) -> list[list[Generation]]: ...


class HFBackend:
    """Batched ``model.generate`` with left padding; see the module docstring."""

    name = "transformers"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int = 64,
        seed: int | None = None,
    ) -> None:
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        if seed is not None:  # left alone inside training, where the trainer owns the global generator
            torch.manual_seed(seed)

    def generate(self, prompts: Sequence[Messages], sampling: Sampling) -> list[list[Generation]]:
        """Complete (or, with ``score_tokens``, score) ``prompts``; the model's mode and the tokenizer's
        padding side are restored after."""
        encoded = [encode_prompt(self.tokenizer, messages) for messages in prompts]
        if sampling.score_tokens:
            run = partial(
                self._score_batch, token_ids=single_token_ids(self.tokenizer, sampling.score_tokens)
            )
        else:
            run = self._generate_batch
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        results: list[list[Generation]] = [[] for _ in prompts]
        was_training, padding_side = self.model.training, self.tokenizer.padding_side
        self.model.eval()
        self.tokenizer.padding_side = "left"
        try:
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                generated = run([encoded[i] for i in chunk], sampling)
                for index, generations in zip(chunk, generated, strict=True):
                    results[index] = generations
        finally:
            self.model.train(was_training)
            self.tokenizer.padding_side = padding_side
        return results

    @torch.no_grad()
    def _generate_batch(self, input_ids: list[list[int]], sampling: Sampling) -> list[list[Generation]]:
        batch = self.tokenizer.pad({"input_ids": input_ids}, return_tensors="pt").to(self.model.device)
        output = self.model.generate(
            **batch,
            **_decoding_kwargs(sampling),
            pad_token_id=self.tokenizer.pad_token_id,
            return_dict_in_generate=True,
            output_logits=sampling.logprobs,
            synced_gpus=is_deepspeed_zero3_enabled(),
        )
        new_tokens = output.sequences[:, batch["input_ids"].shape[1] :]
        logprobs = _chosen_logprobs(output.logits, new_tokens) if sampling.logprobs else None
        flat = [self._generation(row, new_tokens, logprobs) for row in range(len(new_tokens))]
        if sampling.temperature <= 0:  # greedy: one decode, repeated for every requested sample
            return [[generation] * sampling.num_samples for generation in flat]
        k = sampling.num_samples
        return [flat[i * k : (i + 1) * k] for i in range(len(input_ids))]

    @torch.no_grad()
    def _score_batch(
        self, input_ids: list[list[int]], sampling: Sampling, token_ids: list[int]
    ) -> list[list[Generation]]:
        """The log-probabilities of ``token_ids`` after each prompt: the prompts' common prefix is run once,
        then one forward pass over the rest of every prompt, left-padded after the shared prefix.

        Position ids count from each prompt's first token, as ``generate`` counts them, so a padded prompt
        scores as it does alone.
        """
        device = self.model.device
        shared = _shared_prefix_length(input_ids)
        cache = None
        if shared:
            prefix = torch.tensor([input_ids[0][:shared]], device=device)
            cache = getattr(self.model(input_ids=prefix, use_cache=True), _CACHE_ARG)
            cache.batch_repeat_interleave(len(input_ids))
        rest = [ids[shared:] for ids in input_ids]
        batch = self.tokenizer.pad({"input_ids": rest}, return_tensors="pt").to(device)
        mask = batch["attention_mask"]
        output = self.model(
            input_ids=batch["input_ids"],
            attention_mask=torch.cat([mask.new_ones(len(rest), shared), mask], dim=1),
            position_ids=shared + (mask.cumsum(-1) - 1).clamp(min=0),
            use_cache=cache is not None,
            logits_to_keep=1,
            **{_CACHE_ARG: cache},
        )
        logprobs = torch.log_softmax(output.logits[:, -1].float(), dim=-1)[:, token_ids].tolist()
        scored = [scored_generation(sampling.score_tokens, tuple(row)) for row in logprobs]
        return [[generation] * sampling.num_samples for generation in scored]

    def _generation(self, row: int, new_tokens: torch.Tensor, logprobs: torch.Tensor | None) -> Generation:
        ids = new_tokens[row].tolist()
        length = _generated_length(ids, self.model.generation_config.eos_token_id)
        text = self.tokenizer.decode(ids[:length], skip_special_tokens=True)
        if logprobs is None:
            return Generation(text, length)
        pieces = tuple(self.tokenizer.decode([token]) for token in ids[:length])
        return Generation(text, length, pieces, tuple(logprobs[row, :length].tolist()))


def encode_prompt(tokenizer: PreTrainedTokenizerBase, messages: Messages) -> list[int]:
    """Token ids of a chat prompt with the generation prompt; a final assistant message is a prefill."""
    prefill = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else None
    prompt = messages[:-1] if prefill is not None else messages
    encoded = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)
    return list(encoded["input_ids"]) + tokenizer.encode(prefill or "", add_special_tokens=False)


def single_token_ids(tokenizer: PreTrainedTokenizerBase, tokens: Sequence[str]) -> list[int]:
    """The id of each string in ``tokens``; a one-line ``ValueError`` when one is not exactly one token."""
    ids = []
    for token in tokens:
        encoded = tokenizer.encode(token, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(
                f"score token {token!r} is {len(encoded)} tokens of this tokenizer, not one "
                "(Sampling.score_tokens)"
            )
        ids.extend(encoded)
    return ids


def scored_generation(tokens: tuple[str, ...], logprobs: tuple[float, ...]) -> Generation:
    """A scoring result: the candidate tokens' log-probabilities, the likeliest one as text, nothing
    generated."""
    return Generation(tokens[logprobs.index(max(logprobs))], 0, candidate_logprobs=logprobs)


def generate_texts(backend: GenerationBackend, prompts: Sequence[Messages], sampling: Sampling) -> list[str]:
    """The first sample's text for each prompt."""
    return [samples[0].text for samples in backend.generate(prompts, sampling)]


def _shared_prefix_length(input_ids: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all of several prompts share, leaving each at least its last token; 0 for one
    prompt (nothing to share)."""
    if len(input_ids) < 2:
        return 0
    return min(len(os.path.commonprefix(list(input_ids))), min(map(len, input_ids)) - 1)


def _decoding_kwargs(sampling: Sampling) -> dict:
    if sampling.temperature <= 0:
        return {"max_new_tokens": sampling.max_new_tokens, "do_sample": False, "num_return_sequences": 1}
    return {
        "max_new_tokens": sampling.max_new_tokens,
        "do_sample": True,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k or None,
        "num_return_sequences": sampling.num_samples,
    }


def _chosen_logprobs(step_logits: tuple[torch.Tensor, ...], tokens: torch.Tensor) -> torch.Tensor:
    """``[row, t]`` = log p(token generated at step t) under the model's raw (unprocessed) logits."""
    logits = torch.stack(step_logits, dim=1).float()
    return torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, : logits.shape[1], None]).squeeze(-1)


def _generated_length(ids: list[int], eos: int | list[int] | None) -> int:
    """Tokens up to and including the first end token (all of them when there is none)."""
    ends = set(eos if isinstance(eos, list) else [eos])
    return next((i + 1 for i, token in enumerate(ids) if token in ends), len(ids))
