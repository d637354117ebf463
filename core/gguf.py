"""Importing a GGUF file (llama.cpp's format) as a plain Hugging Face checkpoint: ``rankrl import-gguf``.

Transformers reads GGUF through the ``gguf`` package and dequantizes every tensor to float, but the model it
returns still carries a ``quantization_config`` (``quant_method: gguf``): ``save_pretrained`` refuses it and
TRL will not fine-tune it. :func:`import_gguf` rebuilds the same weights in a model whose config has no
quantization config and saves it with safetensors, the tokenizer and its chat template, so the folder loads
with ``AutoModelForCausalLM``, PEFT and vLLM like any checkpoint.

A ``.gguf`` path given as ``model_name_or_path`` is imported once by :func:`gguf_checkpoint` into the folder
``<file>.rankrl/`` next to the file (under ``$RANKRL_GGUF_CACHE`` when that is set), re-imported only when
the file's size or modification time changes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from core.models import ModelLoadError, check_output_folder

DTYPES = ("float32", "bfloat16", "float16")
CACHE_ENV = "RANKRL_GGUF_CACHE"
_SOURCE = "rankrl_gguf_source.json"  # the size and mtime of the file a cached import was made from


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _check_tensor_types(path: Path) -> None:
    """Dequantize the smallest tensor of each type in the file: a type ``gguf`` cannot read fails here."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    try:
        reader = GGUFReader(path)
    except (ValueError, KeyError, OSError) as error:
        raise ModelLoadError(f"{path}: not a readable GGUF file ({_first_line(error)})") from None
    smallest = {}
    for tensor in sorted(reader.tensors, key=lambda t: t.n_bytes, reverse=True):
        smallest[tensor.tensor_type] = tensor
    for qtype, tensor in smallest.items():
        try:
            dequantize(tensor.data, qtype)
        except NotImplementedError:
            raise ModelLoadError(f"{path}: quantization type {qtype.name} is not supported") from None


def _load(path: Path, dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The dequantized model and the tokenizer transformers reads from the file, errors in one line.

    The tokenizer comes first: reading it checks the architecture and the tokenizer metadata in seconds,
    before any tensor is dequantized.
    """
    folder, name = path.parent, path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    except (ValueError, KeyError, NotImplementedError, OSError) as error:
        raise ModelLoadError(f"{path}: {_first_line(error)}") from None
    return model, tokenizer


def _plain_copy(model: PreTrainedModel, dtype: torch.dtype) -> PreTrainedModel:
    """The same weights in a model built from the config without its ``quantization_config``."""
    settings = {k: v for k, v in model.config.to_dict().items() if k != "quantization_config"}
    config = type(model.config).from_dict(settings)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    plain.load_state_dict(model.state_dict(), assign=True)
    plain.tie_weights()
    plain.generation_config = model.generation_config
    return plain.eval()


def import_gguf(
    path: str | Path, output_dir: str | Path, dtype: str = "float32", overwrite: bool = False
) -> Path:
    """Write the GGUF model at ``path`` to ``output_dir`` as a safetensors checkpoint in ``dtype``."""
    path, output_dir = Path(path).expanduser(), Path(output_dir).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such GGUF file")
    check_output_folder(output_dir, dtype, DTYPES, overwrite)
    _check_tensor_types(path)
    torch_dtype = getattr(torch, dtype)
    model, tokenizer = _load(path, torch_dtype)
    plain = _plain_copy(model, torch_dtype)
    if output_dir.exists():
        shutil.rmtree(output_dir)
    plain.save_pretrained(output_dir)
    tokenizer.model_max_length = plain.config.max_position_embeddings  # GGUF's context_length
    tokenizer.save_pretrained(output_dir)
    return output_dir


def _source_key(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _is_current(folder: Path, key: dict[str, int]) -> bool:
    source = folder / _SOURCE
    return source.is_file() and json.loads(source.read_text()) == key


def cache_dir(path: str | Path) -> Path:
    """Where :func:`gguf_checkpoint` keeps the import of ``path``."""
    path = Path(path).expanduser().resolve()
    root = os.environ.get(CACHE_ENV)
    return (Path(root).expanduser() if root else path.parent) / f"{path.name}.rankrl"


def _move_into_place(staging: Path, target: Path, key: dict[str, int]) -> None:
    shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(staging, target)
    except OSError:
        if not _is_current(target, key):
            raise  # not another process that finished the same import first


def gguf_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder imported from the GGUF file ``path``, importing it on first use.

    The import is written to a temporary folder and renamed into place, so processes importing the same file
    at once (one per DDP rank) never read a half-written folder.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such GGUF file")
    target, key = cache_dir(path), _source_key(path)
    if _is_current(target, key):
        return target
    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        import_gguf(path, staging, overwrite=True)
        (staging / _SOURCE).write_text(json.dumps(key))
        _move_into_place(staging, target, key)
    except PermissionError as error:
        raise ModelLoadError(
            f"{path}: cannot write its import ({_first_line(error)}); set {CACHE_ENV} to a writable folder "
            "or run `rankrl import-gguf` and name the folder it writes"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
