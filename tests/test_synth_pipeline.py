"""The synthesis pipeline end to end against a real local fault-injecting server (tests/fault_server.py).

Every task survives every fault without losing a record, its examples feed its rewards, a run stopped by its
token budget or by kill -9 and then rerun writes byte-identical datasets to an uninterrupted run, the API
key appears in no output, and ``--dry-run`` calls no teacher.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from core.data import load_dataset_file
from data_synth.config import SynthConfig
from data_synth.pipeline import synth
from data_synth.teachers import BudgetSpent
from rewards import resolve_rewards
from rewards.groups import consecutive_group_ids
from tests.fault_server import FaultServer

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-test-NEVER-WRITE-ME"
FAULTS = ["429", "500", "hang", "malformed", "empty", "502"]
OUTPUTS = ("train.parquet", "README.md")
TOY_TASK_ARGS = {  # small lists so the toy teacher's prompts stay short
    "listwise": {"list_size": 8},
    "groupwise": {"list_size": 8, "group_size": 4},
    "setwise": {"negatives_per_query": 3},
    "pointwise": {"negatives_per_query": 3},
    "rubric": {"negatives_per_query": 3},
    "yesno": {"negatives_per_query": 3},
    "math": {},
}


@pytest.fixture(scope="module")
def server():
    with FaultServer(hang_s=1.0) as running:
        yield running


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("RANKRL_TEST_KEY", SECRET)


def toy_config(server: FaultServer, out: Path, **overrides) -> SynthConfig:
    settings = dict(
        task="listwise",
        toy_queries=8,
        model="toy",
        base_url=server.base_url,
        api_key_env="RANKRL_TEST_KEY",
        output_dir=str(out),
        timeout_s=0.5,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
    )
    task = overrides.get("task", "listwise")
    return SynthConfig(**{**settings, "task_args": TOY_TASK_ARGS[task], **overrides})


def quiet() -> Console:
    return Console(file=io.StringIO())


def math_problems(path: Path) -> str:
    problems = [
        {"id": f"p{a}", "problem": f"What is {a} + {a + 1}?", "answer": str(2 * a + 1)} for a in range(5)
    ]
    problems[4]["answer"] = "99"  # a wrong reference: the majority answer cannot match it
    path.write_text("".join(json.dumps(p) + "\n" for p in problems))
    return str(path)


def cache_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "cache.jsonl").read_text().splitlines()]


def check_rewards(config: SynthConfig, rows: list[dict]) -> None:
    """The task's default rewards read the examples' columns, and score the teacher's answers (the SFT
    targets) above an answer that does not parse."""
    task = config.task_object()
    columns = [{**row, **task.reward_columns(row)} for row in rows]
    batch = {key: [row[key] for row in columns] for key in columns[0]}
    batch["group_ids"] = consecutive_group_ids(len(rows), 1)  # one completion per prompt
    targets = [task.target(row) for row in rows]
    for reward, _ in zip(*resolve_rewards(list(task.default_rewards)), strict=True):
        teacher = reward(targets, **batch)
        junk = reward(["no answer"] * len(rows), **batch)
        assert sum(teacher) > sum(value or 0.0 for value in junk), reward


@pytest.mark.parametrize("task", ["listwise", "setwise", "pointwise", "rubric", "yesno", "groupwise", "math"])
def test_every_task_survives_faults_and_feeds_its_rewards(server, tmp_path, task):
    server.inject(FAULTS)
    extra = {"dataset": math_problems(tmp_path / "math.jsonl"), "toy_queries": 0} if task == "math" else {}
    config = toy_config(server, tmp_path / "out", task=task, samples=1 if task == "listwise" else 3, **extra)
    result = synth(config, console=quiet())
    records = cache_lines(tmp_path / "out")
    assert len(records) == len({r["key"] for r in records}) == result.usage.responses
    assert result.sample_failures == {}
    dropped = {"wrong_answer": 1} if task == "math" else {}
    assert dict(result.unit_filter.reasons) == dropped and result.unit_filter.kept > 0
    check_rewards(config, result.rows)
    card = (tmp_path / "out/README.md").read_text()
    assert f"kept: {result.unit_filter.kept}" in card and "completion tokens" in card


def test_listwise_examples_load_as_ranking_data(server, tmp_path):
    synth(toy_config(server, tmp_path), console=quiet())
    rows = load_dataset_file(tmp_path).to_list()  # the output folder is a dataset
    assert len(rows) == 8 and {row["task"] for row in rows} == {"listwise"}
    assert all(sorted(row["teacher_order"]) == sorted(c["doc_id"] for c in row["candidates"]) for row in rows)


def _same_outputs(first: Path, second: Path) -> None:
    for name in OUTPUTS:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    keys = [r["key"] for r in cache_lines(second)]
    assert len(keys) == len(set(keys)) == len(cache_lines(first))


def test_budget_stop_then_rerun_equals_an_uninterrupted_run(server, tmp_path):
    synth(toy_config(server, tmp_path / "whole", task="pointwise", samples=3), console=quiet())
    with pytest.raises(BudgetSpent, match="token budget of 500 spent"):
        synth(
            toy_config(server, tmp_path / "resumed", task="pointwise", samples=3, token_budget=500),
            console=quiet(),
        )
    assert 0 < len(cache_lines(tmp_path / "resumed")) < len(cache_lines(tmp_path / "whole"))
    server.inject(FAULTS)
    synth(toy_config(server, tmp_path / "resumed", task="pointwise", samples=3), console=quiet())
    _same_outputs(tmp_path / "whole", tmp_path / "resumed")


@pytest.mark.slow  # a fresh interpreter imports datasets, openai and scipy: 5-15 s on 2 busy cores
def test_kill_9_then_rerun_equals_an_uninterrupted_run(tmp_path):
    with FaultServer(latency_s=0.1) as slow:
        killed, whole = tmp_path / "killed", tmp_path / "whole"
        config = {"toy_queries": 30, "concurrency": 2, "model": "toy", "base_url": slow.base_url}
        recipe = tmp_path / "recipe.yaml"
        config.update(api_key_env="RANKRL_TEST_KEY", task_args={"list_size": 8})
        recipe.write_text(yaml.safe_dump(config))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        command = [sys.executable, "-m", "rankrl.cli", "synth", str(recipe), f"output_dir={killed}"]
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        cache, deadline = killed / "cache.jsonl", time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if cache.is_file() and cache.read_bytes().count(b"\n") >= 6:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
        before = cache.read_bytes().count(b"\n")
        assert 6 <= before < 30 and not (killed / "train.parquet").exists()
        with cache.open("ab") as file:
            file.write(b'{"key": "torn by kill -9", "te')
        synth(toy_config(slow, killed, toy_queries=30, concurrency=8), console=quiet())
        synth(toy_config(slow, whole, toy_queries=30, concurrency=8), console=quiet())
    _same_outputs(whole, killed)
    for path in [*killed.rglob("*"), *whole.rglob("*")]:
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path


def test_dry_run_prints_counts_and_prompts_and_calls_no_teacher(tmp_path):
    console = Console(file=io.StringIO(), width=200)
    with FaultServer() as fresh:
        config = toy_config(fresh, tmp_path, task="rubric", samples=8, task_args={"negatives_per_query": 1})
        assert synth(config, dry=True, console=console) is None
        assert sum(fresh.served.values()) == 0
    shown = console.file.getvalue()
    counts = "task rubric: 8 input rows -> 16 prompts x 8 samples = 128 requests (0 cached, 128 to request)"
    assert counts in shown and shown.count("[Begin of Query]") == 2
    assert not (tmp_path / "train.parquet").exists()
