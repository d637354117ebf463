"""Tiny offline causal LMs for tests, the demo and ``--smoke`` runs.

No test or default path may download a model, so rankrl builds one: a byte-level BPE tokenizer trained
in-process on the task's own text (ChatML chat template, ``<think>``/``<answer>`` as ordinary added tokens so
decoding with ``skip_special_tokens=True`` keeps them) and a randomly initialised Qwen3 or Llama model.
Both are written with ``save_pretrained``, so every downstream component loads them through the same
``model_name_or_path`` that accepts a Hub id or a local checkpoint.

The defaults are the ones that learned the toy listwise task from scratch in trials: 16 heads of
dimension 8, ``initializer_range=0.2`` (with the default 0.02 a model this small stays at chance) and tied
input/output embeddings, so copying a passage identifier into the answer starts from a useful bias. vLLM
needs ``tie_word_embeddings=False`` and a head dimension of at least 32.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast, Qwen3Config

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"
    "{%- else %}{{- message['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
STRUCTURE_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]
CHAT_ROLES = ["system", "user", "assistant"]


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of a tiny model; every field maps onto the transformers config of the same name."""

    architecture: str = "qwen3"
    vocab_size: int = 1024
    hidden_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 16
    intermediate_size: int = 256
    initializer_range: float = 0.2
    max_position_embeddings: int = 1024
    tie_word_embeddings: bool = True


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, phrases: Sequence[str] = ()
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it with a ChatML chat template.

    ``phrases`` (a task's constant prompt text) become single added tokens, so a tiny model spends its
    compute on the passages rather than on a fixed instruction: ReasonRank's prompt shrinks from about 230
    tokens to about 60 for an eight-passage list.
    """
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    tokenizer.add_tokens(STRUCTURE_TOKENS)
    tokenizer.add_tokens([AddedToken(role, single_word=True, normalized=False) for role in CHAT_ROLES])
    tokenizer.add_tokens([AddedToken(phrase, normalized=False) for phrase in phrases])
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _model_config(spec: TinyModelSpec, tokenizer: PreTrainedTokenizerFast) -> Qwen3Config | LlamaConfig:
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        head_dim=spec.hidden_size // spec.num_attention_heads,
        intermediate_size=spec.intermediate_size,
        initializer_range=spec.initializer_range,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_word_embeddings,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if spec.architecture == "qwen3":
        return Qwen3Config(**common)
    if spec.architecture == "llama":
        return LlamaConfig(**common)
    raise ValueError(f"tiny model architecture {spec.architecture!r}: expected 'qwen3' or 'llama'")


def build_tiny_model(
    output_dir: str | Path,
    texts: Iterable[str],
    spec: TinyModelSpec | None = None,
    phrases: Sequence[str] = (),
    seed: int = 0,
) -> Path:
    """Build a tiny causal LM and a tokenizer trained on ``texts``; save both to ``output_dir``.

    Returns the directory, which ``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer`` load offline.
    """
    import torch

    spec = spec or TinyModelSpec()
    output_dir = Path(output_dir)
    tokenizer = train_tokenizer(texts, spec.vocab_size, phrases)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_model_config(spec, tokenizer))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir
