"""Test scaffolding: a saved model's weights, to assert that training moved them."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM


def model_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of the causal LM saved in ``folder``."""
    return AutoModelForCausalLM.from_pretrained(folder).state_dict()
