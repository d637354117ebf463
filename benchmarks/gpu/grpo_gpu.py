"""GPU benchmark: rankrl GRPO steps of a random Qwen2.5-0.5B-shaped model, HF generation and vLLM colocate.

What it measures, on one CUDA GPU, with nothing downloaded:

- The model: a randomly initialised Qwen2 model with Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads,
  2 KV heads, intermediate 4864, vocab 151,936, tied embeddings; 494M parameters), built in code in bf16,
  with a byte-level BPE tokenizer built in code whose vocabulary has exactly the model's 151,936 entries
  (every sampled id decodes) and the ChatML template of :mod:`core.tiny`.
- The data and rewards: the demo GRPO recipe (``recipes/demo/grpo.yaml``: listwise task, nDCG reward and
  monitor) on the toy ranking data of :mod:`rankrl.smoke`; prompts are about 600 tokens.
- The run: ``trainers.grpo.main`` (:class:`trainers.trl_overrides.RankRLGRPOTrainer`), bf16, activation
  checkpointing on, ``--batch-size`` completions per step (``--num-generations`` per prompt) of up to
  ``--completion-length`` tokens (a random model never stops early), beta 0, logging every step. First with
  ``generation_backend: hf`` (HF ``generate``, ``--hf-steps`` steps), then, if vllm is installed, with
  ``generation_backend: vllm`` in colocate mode (``--vllm-steps`` steps, ``--vllm-memory`` of the GPU for
  vLLM), in the same process.

For each backend it prints the median over the steps after the first (warm-up) of what
:class:`trainers.throughput.ThroughputCallback` logs: step time, tokens/s/GPU (prompt + completion tokens,
NeMo-RL's definition), generated tokens/s, generation share of the step, MFU (6 x parameters x tokens/s over
the GPU's dense bf16 peak; printed as n/a for a GPU missing from ``trainers.throughput.PEAK_TFLOPS``) and
peak memory (``torch.cuda.max_memory_allocated``; with vLLM it includes vLLM's KV cache). No target: a
report of where a step's time goes on one GPU.

Sizes fit one 80-141 GB GPU and the defaults finish in about 5 minutes (a cold vLLM start compiles for 1-2
minutes). Run from the repository root:

    python benchmarks/gpu/grpo_gpu.py [--hf-steps 5] [--vllm-steps 10] [--batch-size 64]
        [--num-generations 8] [--completion-length 256] [--vllm-memory 0.3] [--backends hf vllm]

On a machine without CUDA it prints one line and exits with status 0, having imported only torch.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import itertools
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "demo" / "grpo.yaml"
QWEN25_05B = {  # Qwen2.5-0.5B's config.json, shape fields
    "vocab_size": 151_936,
    "hidden_size": 896,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "intermediate_size": 4864,
    "max_position_embeddings": 32_768,
    "tie_word_embeddings": True,
}
METRICS = (  # ThroughputCallback's per-step keys (without "throughput/"), their labels and formats
    ("step_time_s", "step s", "{:.2f}"),
    ("tokens_per_s_per_device", "tokens/s/GPU", "{:,.0f}"),
    ("generation_tokens_per_s", "generated tokens/s while generating", "{:,.0f}"),
    ("generation_share", "generation share", "{:.1%}"),
    ("mfu", "MFU", "{:.1%}"),
    ("peak_memory_gb", "peak GB", "{:.1f}"),
)


def byte_level_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with exactly ``vocab_size`` entries and a ChatML template, built in code.

    Vocabulary: the special tokens of :mod:`core.tiny`, the 256 byte symbols, every pair of byte symbols,
    then pair + byte triples until ``vocab_size``; each multi-byte entry has its merge, so text is split
    into 1-3 byte tokens and every id in ``range(vocab_size)`` decodes.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from core.tiny import CHATML_TEMPLATE, SPECIAL_TOKENS

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: index for index, token in enumerate([*SPECIAL_TOKENS, *alphabet])}
    merges: list[tuple[str, str]] = []
    pairs = [(first, second) for first in alphabet for second in alphabet]
    triples = ((first + second, third) for first, second in pairs for third in alphabet)
    for left, right in itertools.islice(itertools.chain(pairs, triples), vocab_size - len(vocab)):
        vocab[left + right] = len(vocab)
        merges.append((left, right))
    bpe = Tokenizer(models.BPE(vocab, merges))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_model(output_dir: Path) -> Path:
    """Save a random bf16 Qwen2 model shaped like Qwen2.5-0.5B and its tokenizer to ``output_dir``."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    tokenizer = byte_level_tokenizer(QWEN25_05B["vocab_size"])
    ids = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    config = Qwen2Config(**QWEN25_05B, bos_token_id=tokenizer.pad_token_id, **ids)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config.update(**ids)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def prepare(workdir: Path) -> tuple[Path, Any]:
    """The random model under ``workdir`` and the toy workspace (data) for the demo recipe's task."""
    from core.recipe import read_yaml
    from rankrl.smoke import prepare_toy_workspace
    from tasks import get_task

    recipe = read_yaml(RECIPE)
    task = get_task(recipe["task"], **recipe.get("task_args", {}))
    workspace = prepare_toy_workspace(workdir / "toy", task, num_train=1024, num_heldout=8)
    return build_model(workdir / "qwen2.5-0.5b-random"), workspace


def run_grpo(backend: str, steps: int, model_dir: Path, workspace: Any, args: argparse.Namespace) -> Any:
    """``steps`` GRPO steps of the demo recipe through ``trainers.grpo.main``; the trained trainer."""
    from core.recipe import apply_overrides, build_configs, read_yaml
    from rankrl.smoke import smoke_overrides
    from trainers import grpo
    from trainers.configs import stage_config_types

    overrides = {
        **smoke_overrides("grpo", workspace, model_dir.parent / f"grpo-{backend}"),
        "model_name_or_path": str(model_dir),
        "eval_dataset": None,
        "max_steps": steps,
        "per_device_train_batch_size": args.batch_size,
        "num_generations": args.num_generations,
        "max_completion_length": args.completion_length,
        "learning_rate": 1e-6,
        "bf16": True,
        "dtype": "bfloat16",
        "activation_checkpointing": True,
        "rich_progress": False,
        "generation_backend": backend,
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": args.vllm_memory,
    }
    config = apply_overrides({**read_yaml(RECIPE), **overrides}, [])
    return grpo.main(*build_configs(config, stage_config_types("grpo"), str(RECIPE)))


def report(backend: str, trainer: Any) -> None:
    """One line: the median of each throughput metric over the steps after the first."""
    steps = [entry for entry in trainer.state.log_history if "throughput/step_time_s" in entry][1:]
    parts = []
    for key, label, form in METRICS:
        values = [entry[f"throughput/{key}"] for entry in steps if f"throughput/{key}" in entry]
        parts.append(f"{label} {form.format(statistics.median(values)) if values else 'n/a'}")
    print(f"{backend:<5} median of {len(steps)} steps: " + ", ".join(parts), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", choices=["hf", "vllm"], default=["hf", "vllm"])
    parser.add_argument("--hf-steps", type=int, default=5, help="steps with HF generate (first not counted)")
    parser.add_argument("--vllm-steps", type=int, default=10, help="steps with vLLM (first not counted)")
    parser.add_argument("--batch-size", type=int, default=64, help="completions per step")
    parser.add_argument("--num-generations", type=int, default=8, help="completions per prompt")
    parser.add_argument("--completion-length", type=int, default=256, help="max_completion_length")
    parser.add_argument("--vllm-memory", type=float, default=0.3, help="vllm_gpu_memory_utilization")
    args = parser.parse_args(argv)
    if min(args.hf_steps, args.vllm_steps) < 2:
        parser.error("--hf-steps and --vllm-steps must be at least 2: the first step is not counted")
    if not torch.cuda.is_available():
        print("grpo_gpu: no CUDA device visible; this benchmark needs a GPU (nothing run)")
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="rankrl-grpo-gpu-") as name:
        model_dir, workspace = prepare(Path(name))
        print(
            f"{torch.cuda.get_device_name()}: random Qwen2.5-0.5B shape, bf16, activation checkpointing, "
            f"{args.batch_size} completions/step ({args.num_generations} per prompt) of "
            f"{args.completion_length} tokens",
            flush=True,
        )
        for backend in args.backends:
            if backend == "vllm" and importlib.util.find_spec("vllm") is None:
                print("vllm  skipped: vLLM is not installed")
                continue
            steps = args.hf_steps if backend == "hf" else args.vllm_steps
            report(backend, run_grpo(backend, steps, model_dir, workspace, args))
            gc.collect()  # the finished trainer's model and optimizer state, before vLLM reserves its share
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
