"""A local Hugging Face teacher: batched ``generate`` on a model folder, offline, same protocol as the
endpoint teacher (:class:`data_synth.teachers.Teacher`).

Prompts go through the tokenizer's chat template, left-padded, ``batch_size`` at a time; sampling follows
the teacher's :class:`core.generation.Sampling` (greedy when ``temperature`` is 0), seeded with ``seed``
plus the first call's sample index of each batch. Greedy decoding is the setting to use when reruns must
give the same answers: with sampling, a batch's draws depend on which calls share it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from core.generation import Sampling
from data_synth.teachers import (
    BudgetSpent,
    Completion,
    OnDone,
    RequestStats,
    TeacherCall,
    TokenBudget,
    teacher_id,
    teacher_sampling,
)


class HFTeacher:
    """Answers requests with ``model.generate`` on a local causal LM (CPU or the default device)."""

    def __init__(
        self,
        model_path: str | Path,
        sampling: Sampling,
        batch_size: int = 8,
        budget: TokenBudget | None = None,
        seed: int | None = 0,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path, self.sampling, self.batch_size = str(model_path), sampling, batch_size
        self.seed, self.budget, self.stats = seed, budget or TokenBudget(), RequestStats()
        self.teacher_id = teacher_id(Path(model_path).name, sampling, seed)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(self.model_path).eval()

    def settings(self) -> dict[str, Any]:
        return {
            "kind": "hf",
            "model": Path(self.model_path).name,
            **teacher_sampling(self.sampling, self.seed),
        }

    async def generate(self, requests: Sequence[TeacherCall], on_done: OnDone) -> None:
        for start in range(0, len(requests), self.batch_size):
            if self.budget.spent:
                raise BudgetSpent(
                    f"token budget of {self.budget.limit} spent ({self.budget.used} used) after {start} of "
                    f"{len(requests)} requests; rerun with a larger token_budget to continue"
                )
            batch = requests[start : start + self.batch_size]
            for request, completion in zip(batch, self._generate_batch(batch), strict=True):
                self.budget.charge(completion)
                self.stats.count(completion)
                on_done(request, completion)
            await asyncio.sleep(0)  # let the progress display refresh

    def _generate_batch(self, batch: Sequence[TeacherCall]) -> Iterable[Completion]:
        import torch

        texts = [
            self.tokenizer.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True)
            for r in batch
        ]
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        greedy = self.sampling.temperature <= 0
        sampling = {} if greedy else {"temperature": self.sampling.temperature, "top_p": self.sampling.top_p}
        if self.seed is not None:
            torch.manual_seed(self.seed + batch[0].sample_index)
        self.stats.requests += len(batch)
        with torch.no_grad():
            output = self.model.generate(
                **encoded.to(self.model.device),
                max_new_tokens=self.sampling.max_new_tokens,
                do_sample=not greedy,
                pad_token_id=self.tokenizer.pad_token_id,
                **sampling,
            )
        new_tokens = output[:, encoded["input_ids"].shape[1] :].cpu()
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        for row, prompt_tokens in zip(new_tokens, prompt_lengths, strict=True):
            length = int((row != self.tokenizer.pad_token_id).sum())
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            yield Completion(text=text, prompt_tokens=int(prompt_tokens), completion_tokens=length)
