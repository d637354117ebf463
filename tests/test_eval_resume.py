"""A ``rankrl eval`` killed with SIGKILL resumes from its per-query cache and writes the same run file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evaluation import EvalConfig, run_eval
from tests.toy_benchmark import build_toy_model, write_toy_benchmark

ROOT = Path(__file__).resolve().parents[1]


def eval_command(bench, model, out) -> list[str]:
    settings = [
        f"model={model}", f"output_dir={out}", f"run={bench.run}", f"topics={bench.topics}",
        f"corpus={bench.corpus}", f"qrels={bench.qrels}", "max_new_tokens=24", "queries_per_batch=2",
    ]  # fmt: skip
    return [sys.executable, "-m", "rankrl.cli", "eval", *settings]


def cached_queries(out: Path) -> int:
    cache = out / "cache.jsonl"
    return max(len(cache.read_text().splitlines()) - 1, 0) if cache.is_file() else 0


def offline_env() -> dict[str, str]:
    """This environment, offline, with the repository importable."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def run_until_cached(command: list[str], out: Path, records: int) -> int:
    """Start ``command`` offline, SIGKILL it once ``out``'s cache holds ``records`` records; its exit code."""
    process = subprocess.Popen(command, cwd=ROOT, env=offline_env())
    deadline = time.monotonic() + 120
    while cached_queries(out) < records and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    return process.wait()


@pytest.mark.slow
def test_killed_evaluation_resumes_to_the_same_run(tmp_path):
    bench = write_toy_benchmark(tmp_path / "bench", num_queries=40, num_candidates=30)
    model = build_toy_model(tmp_path / "model", bench)
    out = tmp_path / "killed"
    exit_code = run_until_cached(eval_command(bench, model, out), out, 4)
    assert exit_code == -signal.SIGKILL, "the evaluation finished before it could be killed"
    done_before = cached_queries(out)
    assert 4 <= done_before < 40 and not (out / "run.trec").exists()

    subprocess.run(
        eval_command(bench, model, out), cwd=ROOT, env=offline_env(), check=True, capture_output=True
    )
    manifest_settings = dict(run=str(bench.run), topics=str(bench.topics), corpus=str(bench.corpus))
    reference = EvalConfig(
        model=str(model), output_dir=str(tmp_path / "whole"), qrels=str(bench.qrels), max_new_tokens=24,
        queries_per_batch=2, **manifest_settings,
    )  # fmt: skip
    run_eval(reference)
    assert (out / "run.trec").read_text() == (tmp_path / "whole/run.trec").read_text()
    assert cached_queries(out) == 40
