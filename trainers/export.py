"""``rankrl export``: merge a LoRA / QLoRA adapter into its base model, giving a full checkpoint.

The merged folder (safetensors weights, config, generation config, tokenizer) loads with
``AutoModelForCausalLM.from_pretrained`` and serves with vLLM like any checkpoint. The base model is loaded
unquantized in ``dtype`` (the adapter config names it), so a QLoRA adapter is merged into full-precision
weights rather than into the 4-bit copy it was trained against: PEFT's recommended way to merge QLoRA.
Merging is PEFT's ``merge_and_unload``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from transformers import AutoTokenizer

from core.models import ModelLoadError, check_model_path, check_output_folder

DTYPES = ("auto", "float32", "bfloat16", "float16")


def export_merged(
    adapter_dir: str | Path, output_dir: str | Path, dtype: str = "auto", overwrite: bool = False
) -> Path:
    """Merge the adapter in ``adapter_dir`` into its base model and save the result in ``output_dir``."""
    adapter_dir, output_dir = Path(adapter_dir), Path(output_dir)
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"{adapter_dir}: no adapter_config.json (expected a LoRA adapter folder)")
    check_output_folder(output_dir, dtype, DTYPES, overwrite)
    base = json.loads(config_path.read_text()).get("base_model_name_or_path")
    check_model_path(base)
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(
        adapter_dir, dtype=dtype if dtype == "auto" else getattr(torch, dtype)
    )
    merged = model.merge_and_unload()
    if output_dir.exists():
        shutil.rmtree(output_dir)
    merged.save_pretrained(output_dir)
    tokenizer_source = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base
    AutoTokenizer.from_pretrained(tokenizer_source).save_pretrained(output_dir)
    return output_dir
