"""Saving what a LoRA stage that started from an adapter folder needs to be loaded on its own."""

from __future__ import annotations

from pathlib import Path

from transformers import Trainer

from core.models import merged_from

BASE_DIR = "base"  # where a LoRA stage started from an adapter folder saves its starting weights


def save_merged_base(trainer: Trainer, output_dir: str | Path) -> Path | None:
    """Make a LoRA stage that started from an adapter folder self-contained: the ``base`` folder it wrote, or
    None for any other stage (nothing to do).

    :func:`load_model` merges a starting adapter (say SFT-LoRA) into its base, so a new adapter (GRPO-LoRA)
    trains over the merged weights while PEFT records the original base in its ``adapter_config.json``:
    loading or exporting it would drop the first delta. This saves the merged starting weights and the
    tokenizer in ``OUTPUT_DIR/base`` and points the new adapter's ``base_model_name_or_path`` there, so
    :func:`load_model`, ``rankrl export``, PEFT's ``AutoPeftModelForCausalLM`` and vLLM (serving ``base``
    with the adapter) all see the whole chain, however long, and the output no longer needs the starting
    folder. The starting weights are merged again from the adapter folder rather than read off the trained
    model, which sharded or wrapped training may hold in pieces. The path is absolute because PEFT resolves
    a relative one against the working directory: a moved output folder needs the path edited (or export it
    before moving). Call it before training, so every ``checkpoint-N`` adapter records ``base`` too; only
    the main process writes, and a resumed run keeps the ``base`` it already wrote.
    """
    model = trainer.accelerator.unwrap_model(trainer.model)
    source = merged_from(model.get_base_model()) if hasattr(model, "peft_config") else None
    if source is None:
        return None
    base_dir = (Path(output_dir) / BASE_DIR).resolve()
    for config in model.peft_config.values():
        config.base_model_name_or_path = str(base_dir)
    if trainer.args.should_save and not (base_dir / "config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        dtype = model.get_base_model().config.dtype or "auto"
        merged = AutoPeftModelForCausalLM.from_pretrained(source, dtype=dtype).merge_and_unload()
        merged.save_pretrained(base_dir)
        trainer.processing_class.save_pretrained(base_dir)
    trainer.accelerator.wait_for_everyone()
    return base_dir
