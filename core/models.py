"""Loading a model and its tokenizer from ``model_name_or_path``: a Hub id, a local checkpoint or a GGUF file.

One path for everything: the tiny model of tests and ``--smoke`` runs, a full checkpoint and a PEFT
adapter folder all load here (training, evaluation, synthesis and export), so what a test covers is what a
user runs. A LoRA stage that starts from an adapter folder writes its starting weights next to its own
adapter (``trainers.modeling.save_merged_base``, which asks :func:`merged_from`). A ``.gguf`` file is
imported once into a plain checkpoint next to it (``core.gguf.gguf_checkpoint``) and loaded from there.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from trl import ModelConfig, get_quantization_config

_LOCAL_PREFIXES = ("/", "./", "../", "~")
_MERGED_FROM = "rankrl_merged_from"  # attribute naming the adapter folder a loaded model was merged from


class ModelLoadError(OSError):
    """A model or tokenizer that cannot be loaded; the message is one line."""


def check_model_path(model_name_or_path: str | None) -> str:
    """Reject a missing ``model_name_or_path`` or a local path that does not exist, in one line."""
    if not model_name_or_path:
        raise ModelLoadError(
            "model_name_or_path is not set: name a Hub model id or a local checkpoint folder"
        )
    path = Path(model_name_or_path).expanduser()
    looks_local = model_name_or_path.startswith(_LOCAL_PREFIXES) or model_name_or_path.count("/") > 1
    if looks_local and not path.exists():
        raise ModelLoadError(f"model_name_or_path {model_name_or_path!r}: no such local checkpoint folder")
    return str(path) if path.exists() else model_name_or_path


def resolve_model_path(model_name_or_path: str | None) -> str:
    """What ``from_pretrained`` loads for ``model_name_or_path``.

    A ``.gguf`` file gives its imported checkpoint folder (imported on first use); anything else is checked
    by :func:`check_model_path`.
    """
    if model_name_or_path and model_name_or_path.endswith(".gguf"):
        from core.gguf import gguf_checkpoint

        return str(gguf_checkpoint(model_name_or_path))
    return check_model_path(model_name_or_path)


def _quantization(model_args: ModelConfig) -> dict:
    """``from_pretrained`` arguments for QLoRA (empty without ``load_in_4bit`` / ``load_in_8bit``)."""
    quantization_config = get_quantization_config(model_args)
    if quantization_config is None:
        return {}
    if not model_args.use_peft:
        raise ModelLoadError("load_in_4bit / load_in_8bit train LoRA adapters (QLoRA): set use_peft: true")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError("load_in_4bit / load_in_8bit need bitsandbytes: pip install 'rankrl[qlora]'")
    device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"
    device_map = {"": device}  # each process holds its whole quantized copy on its own device
    return {"quantization_config": quantization_config, "device_map": device_map}


def is_adapter(path: str) -> bool:
    """Whether ``path`` is a PEFT adapter folder (LoRA / QLoRA output) rather than a full checkpoint."""
    return (Path(path) / "adapter_config.json").is_file()


def load_tokenizer(model_args: ModelConfig) -> PreTrainedTokenizerBase:
    """Tokenizer for the policy, with a pad token and left padding for batched generation."""
    path = resolve_model_path(model_args.model_name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=model_args.model_revision)
    except OSError as error:
        raise ModelLoadError(f"tokenizer {path!r}: {str(error).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_model(model_args: ModelConfig) -> PreTrainedModel:
    """Causal LM from a Hub id, a checkpoint, a GGUF file or a PEFT adapter folder (merged onto its base).

    ``load_in_4bit`` / ``load_in_8bit`` load the weights quantized by bitsandbytes (QLoRA: TRL then trains
    LoRA adapters over the frozen quantized model), so they need ``use_peft``. They do not start from an
    adapter folder: merging into 4-bit weights rounds the adapter away, so export it first.
    """
    path = resolve_model_path(model_args.model_name_or_path)
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    kwargs = dict(revision=model_args.model_revision, dtype=dtype or "auto", **_quantization(model_args))
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    if is_adapter(path) and "quantization_config" in kwargs:
        raise ModelLoadError(
            f"load_in_4bit / load_in_8bit cannot start from adapter folder {path!r}: "
            "run `rankrl export` on it and set model_name_or_path to the merged folder"
        )
    try:
        if is_adapter(path):
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(path, **kwargs).merge_and_unload()
            model.requires_grad_(True)  # PEFT froze the base weights; a full fine-tune from here trains them
            setattr(model, _MERGED_FROM, path)
            return model
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as error:
        raise ModelLoadError(f"model {path!r}: {str(error).splitlines()[0]}") from None


def merged_from(model: PreTrainedModel) -> str | None:
    """The adapter folder :func:`load_model` merged ``model`` from, None when it loaded plain weights."""
    return getattr(model, _MERGED_FROM, None)


def check_output_folder(output_dir: Path, dtype: str, dtypes: tuple[str, ...], overwrite: bool) -> None:
    """One-line errors before a checkpoint is written: a ``dtype`` outside ``dtypes``, or a non-empty
    ``output_dir`` without ``overwrite`` (``rankrl export`` and ``rankrl import-gguf``)."""
    if dtype not in dtypes:
        raise ModelLoadError(f"dtype {dtype!r}: expected one of {', '.join(dtypes)}")
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise ModelLoadError(f"{output_dir}: not empty (pass --overwrite to replace it)")
