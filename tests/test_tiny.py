"""Tests for core.tiny: a tiny causal LM and its in-process tokenizer, saved and reloaded offline."""

from __future__ import annotations

import huggingface_hub
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from core.tiny import STRUCTURE_TOKENS, TinyModelSpec, build_tiny_model
from tasks.listwise import ListwiseTask

SMALL = dict(vocab_size=300, hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=96)
TEXTS = [
    "fleas live for about a year",
    "<think>the first passage answers it</think>\n<answer>[2] > [1]</answer>",
    "how long do fleas live? passages about insects and pets",
] * 10
MESSAGES = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "rank these"},
    {"role": "assistant", "content": "<think>ok</think>\n<answer>[2] > [1]</answer>"},
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Nothing here may reach the Hub: the env var for subprocesses, the constant for this process."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    phrases = ListwiseTask().template_phrases()
    return build_tiny_model(tmp_path_factory.mktemp("tiny"), TEXTS, TinyModelSpec(**SMALL), phrases=phrases)


@pytest.fixture(scope="module")
def tokenizer(tiny_dir):
    return AutoTokenizer.from_pretrained(tiny_dir)


def test_saved_model_and_tokenizer_reload_offline(tiny_dir, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert model.config.model_type == "qwen3"
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 1
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id


def test_chat_template_renders_chatml(tokenizer):
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False)
    assert text == (
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nrank these<|im_end|>\n"
        "<|im_start|>assistant\n<think>ok</think>\n<answer>[2] > [1]</answer><|im_end|>\n"
    )


def test_chat_template_adds_generation_prompt_only_when_asked(tokenizer):
    with_prompt = tokenizer.apply_chat_template(MESSAGES[:2], tokenize=False, add_generation_prompt=True)
    without = tokenizer.apply_chat_template(MESSAGES[:2], tokenize=False)
    assert with_prompt == without + "<|im_start|>assistant\n"


def test_structure_tags_survive_decoding_without_special_tokens(tokenizer):
    text = "<think>fleas</think>\n<answer>[2] > [1]</answer>"
    ids = tokenizer(text + "<|im_end|>", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    for tag in STRUCTURE_TOKENS:
        assert len(tokenizer(tag, add_special_tokens=False)["input_ids"]) == 1


def test_template_phrases_are_single_tokens(tokenizer):
    phrases = ListwiseTask().template_phrases()
    lengths = {phrase: len(tokenizer(phrase, add_special_tokens=False)["input_ids"]) for phrase in phrases}
    assert phrases and {phrase for phrase, n in lengths.items() if n != 1} == set()


def test_prompt_tokenizes_phrases_as_single_tokens(tokenizer):
    task = ListwiseTask()
    candidates = [{"doc_id": "a", "text": "pets"}, {"doc_id": "b", "text": "x"}]
    example = {"query": "fleas", "candidates": candidates}
    ids = tokenizer.apply_chat_template(task.prompt(example), tokenize=True, return_dict=True)["input_ids"]
    phrase_ids = set(tokenizer.convert_tokens_to_ids(task.template_phrases()))
    assert len(phrase_ids & set(ids)) >= 5  # prefix, suffix, system prompt and identifier pieces


def test_generation_block_gives_assistant_mask(tokenizer):
    out = tokenizer.apply_chat_template(MESSAGES, return_assistant_tokens_mask=True, return_dict=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert len(mask) == len(ids) and set(mask) == {0, 1}
    masked = tokenizer.decode([token for token, keep in zip(ids, mask, strict=True) if keep])
    assert masked == "<think>ok</think>\n<answer>[2] > [1]</answer><|im_end|>"
    first = mask.index(1)
    assert mask == [0] * first + [1] * (len(ids) - first - 1) + [0]  # one run, then the trailing newline


def _logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer.apply_chat_template(MESSAGES, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


def test_saved_weights_are_the_built_ones(tiny_dir, tokenizer):
    torch.manual_seed(0)  # build_tiny_model's default seed
    built = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_dir))
    reloaded = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert torch.equal(_logits(built, tokenizer), _logits(reloaded, tokenizer))


def test_resaved_checkpoint_gives_identical_logits(tiny_dir, tokenizer, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    with torch.no_grad():
        next(model.parameters()).add_(0.5)  # differ from the built weights, so the reload must read them
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    expected = _logits(model, tokenizer)
    assert torch.equal(expected, _logits(reloaded, tokenizer))
    assert not torch.equal(expected, _logits(AutoModelForCausalLM.from_pretrained(tiny_dir), tokenizer))


def test_seed_changes_weights(tmp_path):
    spec = TinyModelSpec(**SMALL)
    first = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "a", TEXTS, spec, seed=0))
    second = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "b", TEXTS, spec, seed=1))
    assert not torch.equal(first.lm_head.weight, second.lm_head.weight)


def test_llama_architecture_builds_and_runs(tmp_path):
    path = build_tiny_model(tmp_path, TEXTS, TinyModelSpec(architecture="llama", **SMALL))
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == "llama"
    assert _logits(model, tokenizer).shape[-1] == len(tokenizer)


def test_default_spec_is_the_one_that_learns():
    spec = TinyModelSpec()
    assert spec.initializer_range == pytest.approx(0.2) and spec.num_attention_heads >= 8


def test_unknown_architecture_is_a_one_line_value_error(tmp_path):
    with pytest.raises(ValueError, match="architecture 'gpt9'") as caught:
        build_tiny_model(tmp_path, TEXTS, TinyModelSpec(architecture="gpt9", **SMALL))
    assert "\n" not in str(caught.value)
