"""A killed ``rankrl tts`` resumes from its per-problem cache: only missing problems are generated, the
table and samples equal an uninterrupted run's, a cache of other settings is refused in one line, a torn last
line is ignored; end to end, a SIGKILLed ``python -m rankrl.cli tts`` on the tiny model resumes."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import pytest
import torch

from core.data import DataError
from core.generation import Generation, Messages, Sampling
from core.tiny import build_tiny_model
from evaluation.tts_config import TTSConfig
from evaluation.tts_report import COLUMNS
from evaluation.tts_run import run_tts
from tasks.setwise import R1_SYSTEM_PROMPT
from tests.test_eval_resume import ROOT, cached_queries, offline_env, run_until_cached
from tests.toy_benchmark import SMALL_MODEL

TIMING = ("latency_s_per_problem", "problems_per_s")


class Interrupted(Exception):
    """What :class:`DiceBackend` raises in place of a kill."""


class DiceBackend:
    """Answers every sample with a die roll from torch's global generator (so it depends on the seeding);
    records the problem of every prompt it generates for, and raises on call number ``fail_at``."""

    name = "dice"

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at, self.calls = fail_at, []

    def generate(self, prompts: Sequence[Messages], sampling: Sampling) -> list[list[Generation]]:
        if len(self.calls) + 1 == self.fail_at:
            raise Interrupted
        self.calls.append([prompt[1]["content"].split("\n")[0] for prompt in prompts])
        rolls = torch.randint(1, 7, (len(prompts), sampling.num_samples)).tolist()
        return [[Generation(f"<answer>{roll}</answer>", roll) for roll in row] for row in rolls]


def problems_file(folder: Path, count: int) -> Path:
    """``count`` problems ``i + 1?`` (a die roll is right for the first six)."""
    rows = [{"problem": f"{i} + 1?", "answer": str(i + 1), "id": f"p{i}"} for i in range(count)]
    path = folder / "problems.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def dice_config(dataset: Path, out: Path, **settings) -> TTSConfig:
    """Three rules and pass@n at n = 1, 2, 4 and budget forcing at 5 tokens, two problems per chunk."""
    chosen = {
        "n_values": [1, 2, 4], "budgets": [5], "strategies": ["majority", "best_of_n", "first_finish"],
        "reward": "answer_match", "problems_per_batch": 2, **settings,
    }  # fmt: skip
    return TTSConfig(dataset=str(dataset), output_dir=str(out), **chosen)


def report(out: Path) -> tuple[list[dict[str, str]], list[list[str]], bytes]:
    """``tts.csv`` rows and ``tts.md`` cells without the measured timing columns, and ``samples.jsonl``."""
    with open(out / "tts.csv", newline="") as handle:
        rows = [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(handle)]
    kept = [i for i, column in enumerate(COLUMNS) if column not in TIMING]
    lines = (out / "tts.md").read_text().splitlines()
    cells = [[line.strip("|").split("|")[i].strip() for i in kept] for line in lines]
    return rows, cells, (out / "samples.jsonl").read_bytes()


def test_an_interrupted_run_generates_only_the_missing_problems(tmp_path):
    dataset = problems_file(tmp_path, 5)  # chunks (p0 p1) (p2 p3) (p4), each: samples, then budget 5
    run_tts(dice_config(dataset, tmp_path / "whole"), backend=DiceBackend())
    # calls: chunk 0 samples, thinking, answer; chunk 1 samples, thinking <- interrupted
    with pytest.raises(Interrupted):
        run_tts(dice_config(dataset, tmp_path / "out"), backend=DiceBackend(fail_at=5))
    assert cached_queries(tmp_path / "out") == 2 + 2 + 2  # chunk 0's samples and budget, chunk 1's samples
    resumed = DiceBackend()
    run_tts(dice_config(dataset, tmp_path / "out"), backend=resumed)
    assert resumed.calls == [["2 + 1?", "3 + 1?"]] * 2 + [["4 + 1?"]] * 3  # chunk 1's budget, then chunk 2
    assert report(tmp_path / "out") == report(tmp_path / "whole")
    assert cached_queries(tmp_path / "out") == 5 * 2
    again = DiceBackend()
    run_tts(dice_config(dataset, tmp_path / "out"), backend=again)
    assert again.calls == [] and report(tmp_path / "out") == report(tmp_path / "whole")


def test_a_torn_last_line_is_ignored_and_its_chunk_step_rerun(tmp_path):
    dataset = problems_file(tmp_path, 3)
    run_tts(dice_config(dataset, tmp_path / "whole"), backend=DiceBackend())
    out = tmp_path / "out"
    run_tts(dice_config(dataset, out), backend=DiceBackend())
    cache = out / "cache.jsonl"
    cache.write_bytes(cache.read_bytes()[:-20])  # a kill in the middle of the last record (p2, budget 5)
    resumed = DiceBackend()
    run_tts(dice_config(dataset, out), backend=resumed)
    assert resumed.calls == [["2 + 1?"]] * 2  # budget forcing of the last chunk: thinking, answer
    assert report(out) == report(tmp_path / "whole") and cached_queries(out) == 3 * 2


def test_a_cache_of_other_settings_is_refused_in_one_line(tmp_path):
    dataset = problems_file(tmp_path, 3)
    out = tmp_path / "out"
    run_tts(dice_config(dataset, out), backend=DiceBackend())
    changes = [{"temperature": 0.5}, {"seed": 1}, {"max_problems": 2}, {"num_waits": 1}, {"n_values": [1, 8]}]
    for changed in changes:
        with pytest.raises(DataError, match="cache of a different evaluation") as error:
            run_tts(dice_config(dataset, out, **changed), backend=DiceBackend())
        assert "\n" not in str(error.value)
    fresh = DiceBackend()
    run_tts(dice_config(dataset, out, seed=1, resume=False), backend=fresh)
    assert len(fresh.calls) == 2 * 3  # every chunk again: samples, thinking, answer


def tts_command(dataset: Path, model: Path, out: Path) -> list[str]:
    """``rankrl tts`` on the tiny model: 16-token samples at temperature 1, budget 6, 2 problems a chunk."""
    settings = [
        f"model={model}", f"dataset={dataset}", f"output_dir={out}", "n_values=[1,2,4]", "budgets=[6]",
        "max_new_tokens=16", "temperature=1.0", "answer_tokens=4", "problems_per_batch=2", "dtype=float32",
    ]  # fmt: skip
    return [sys.executable, "-m", "rankrl.cli", "tts", *settings]


@pytest.mark.slow
def test_killed_tts_resumes_to_the_same_report(tmp_path):
    dataset = problems_file(tmp_path, 12)
    texts = [f"{i} + 1?" for i in range(12)] + [R1_SYSTEM_PROMPT] * 5
    model = build_tiny_model(tmp_path / "model", texts, SMALL_MODEL, phrases=[R1_SYSTEM_PROMPT])
    out = tmp_path / "killed"
    exit_code = run_until_cached(tts_command(dataset, model, out), out, 5)
    assert exit_code == -signal.SIGKILL, "the run finished before it could be killed"
    assert 5 <= cached_queries(out) < 24 and not (out / "tts.csv").exists()

    run = partial(subprocess.run, cwd=ROOT, env=offline_env(), check=True, capture_output=True)
    run(tts_command(dataset, model, out))
    run(tts_command(dataset, model, tmp_path / "whole"))
    assert report(out) == report(tmp_path / "whole") and cached_queries(out) == 12 * 2
