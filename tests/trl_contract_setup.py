"""Test scaffolding shared by the TRL contract tests: their prompts, one-step CPU settings and tiny model."""

from __future__ import annotations

from pathlib import Path

from core.tiny import build_tiny_model

PROMPTS = [[{"role": "user", "content": f"rank passage {i} against passage {i + 1}"}] for i in range(4)]

ONE_CPU_STEP = dict(
    max_steps=1,
    per_device_train_batch_size=4,
    use_cpu=True,
    bf16=False,
    report_to="none",
    logging_steps=1,
    save_strategy="no",
)


def tiny_contract_model(folder: Path) -> str:
    """A tiny model in ``folder`` whose tokenizer knows :data:`PROMPTS`."""
    texts = [message["content"] for prompt in PROMPTS for message in prompt] * 8
    return str(build_tiny_model(folder, texts))
