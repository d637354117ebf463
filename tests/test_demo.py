"""The demo end to end: the gain the README promises, on held-out queries, with the fixed seed."""

from __future__ import annotations

import json
from statistics import mean

import pytest
from transformers import AutoModelForCausalLM

from rankrl.demo import run_demo

GRPO_MARGIN = 0.02  # the issue's bar for GRPO's held-out gain over SFT; measured +0.028 (seed 0)


def required_ndcg(random_order: float) -> float:
    """The issue's bar: 0.2 above the random ordering, or halfway to 1.0 where random is above 0.6."""
    return random_order + 0.2 if random_order <= 0.6 else (random_order + 1.0) / 2


def test_required_ndcg_follows_the_issue():
    assert required_ndcg(0.5) == pytest.approx(0.7)
    assert required_ndcg(0.64) == pytest.approx(0.82)


def test_demo_smoke_runs_every_stage_and_writes_its_outputs(tmp_path):
    scores = run_demo(tmp_path, seed=0, smoke=True)
    assert list(scores) == ["random order", "before training", "after SFT", "after GRPO"]
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    AutoModelForCausalLM.from_pretrained(tmp_path / "grpo")
    rows = [json.loads(line) for line in (tmp_path / "data" / "train.jsonl").read_text().splitlines()]
    overlooked = [row for row in rows if len(row["teacher_order"]) < len(row["labels"])]
    assert overlooked, "the SFT teacher should leave out some partial matches that the labels keep"


@pytest.mark.slow
def test_demo_trains_a_reranker_that_beats_random_on_heldout_queries(tmp_path):
    scores = run_demo(tmp_path, seed=0)
    bar = required_ndcg(scores["random order"])
    assert scores["before training"] < bar
    assert scores["after SFT"] >= bar
    assert scores["after GRPO"] >= bar
    assert scores["after GRPO"] >= scores["after SFT"] + GRPO_MARGIN
    history = json.loads((tmp_path / "grpo" / "trainer_state.json").read_text())["log_history"]
    rewards = [entry["reward"] for entry in history if "reward" in entry]
    assert mean(rewards[-2:]) > mean(rewards[:2])  # the GRPO panel of demo.png: the mean reward rises
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    AutoModelForCausalLM.from_pretrained(tmp_path / "grpo")
