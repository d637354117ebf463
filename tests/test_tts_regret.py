"""``rankrl tts``'s pass@k and MRT's regret on hand-worked examples: Chen et al.'s unbiased pass@k, the
normalised area under pass@1 against tokens (the MRT notebook's interpolation at the cutoff), the forced
prefixes of a trace and their curve with an oracle backend, and a run whose regret curves are cached."""

from __future__ import annotations

import json

import pytest

from core.generation import Sampling
from evaluation.tts import Sample
from evaluation.tts_config import TTSConfig
from evaluation.tts_regret import Regret, normalized_area, regret_records, regret_rows, trace_points
from evaluation.tts_report import pass_at_k, pass_at_k_rows
from evaluation.tts_run import run_tts
from rewards.progress import STOP_TEMPLATE
from tests.oracles import FunctionBackend
from tests.test_rewards_group import TRACE

# TRACE's episodes (group_size 1), in whitespace words: "<think>Let x = 2 | so 2x = 4" (8),
# "Wait, check | 4 it is" (5), "But wait, 5? | Alternatively 6 | Done" (6).
THOUGHT = f"<think>{TRACE}</think> <answer>4</answer>"
SHORT = "<think>so 4 it is</think> <answer>4</answer>"  # one episode of 4 words
PROMPT = [{"role": "user", "content": "x + x = 4?"}]  # 5 words


def oracle(messages) -> str:
    """Answers 4 once the reply so far has reached "4 it is", else 7; a problem is answered with THOUGHT."""
    if messages[-1]["role"] == "user":
        return THOUGHT
    return "<answer>4</answer>" if "4 it is" in messages[-1]["content"] else "<answer>7</answer>"


def test_pass_at_k_is_the_unbiased_estimator():
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # C(3,2) / C(4,2)
    assert pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10)  # C(3,3) / C(5,3)
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)  # k = 1: the share of correct samples
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 4, 1) == 1.0 and pass_at_k(3, 1, 3) == 1.0
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(2, 1, 3)


def test_pass_at_k_rows_average_over_problems_with_k_samples_of_tokens():
    first = [Sample("", t, a) for a, t in [("2", 5), ("1", 3), ("2", 4), ("3", 8)]]  # 2 of 4 right, mean 5
    second = [Sample("", t, a) for a, t in [("1", 2), ("7", 2), ("", 1), ("9", 3)]]  # 1 of 4 right, mean 2
    rows = pass_at_k_rows([first, second], ["2", "7"], [1, 2, 4])
    assert [row["strategy"] for row in rows] == ["pass@k"] * 3 and [row["n"] for row in rows] == [1, 2, 4]
    # k = 1: (2/4 + 1/4) / 2; k = 2: (1 − 1/6 + 1 − 3/6) / 2; k = 4: both solved.
    assert [row["accuracy"] for row in rows] == pytest.approx([0.375, 2 / 3, 1.0])
    assert [row["correct"] for row in rows] == pytest.approx([0.75, 4 / 3, 2.0])
    assert [row["tokens_per_problem"] for row in rows] == [3.5, 7.0, 14.0]


def test_normalized_area_holds_the_last_value_and_interpolates_at_the_cutoff():
    points = [(100, 0.5), (300, 1.0)]
    assert normalized_area(points, 400) == pytest.approx((25 + 150 + 100) / 400)  # held at 1 past 300
    assert normalized_area(points, 300) == pytest.approx((25 + 150) / 300)
    assert normalized_area(points, 200) == pytest.approx((25 + 62.5) / 200)  # J(200) = 0.75
    assert normalized_area(points, 50) == pytest.approx(6.25 / 50)  # J(50) = 0.25
    assert normalized_area([(10, 1.0)], 20) == pytest.approx((5 + 10) / 20)


def test_a_trace_is_forced_after_each_episode_then_closes_its_own_thinking():
    points = trace_points(THOUGHT, "</think>", group_size=1)
    assert [written for written, _ in points] == [
        "",
        "<think>Let x = 2\n\nso 2x = 4\n\n",
        "<think>Let x = 2\n\nso 2x = 4\n\nWait, check\n\n4 it is\n\n",
        f"<think>{TRACE}",
    ]
    assert [injected for _, injected in points] == [STOP_TEMPLATE] * 3 + ["\n</think>"]
    assert len(trace_points(THOUGHT, "</think>", group_size=10)) == 2  # the three episodes merged into one


def test_regret_curves_and_rows_by_hand():
    samples = [[Sample(THOUGHT, 30, "4"), Sample(SHORT, 9, "4"), Sample(SHORT, 9, "4")]]
    backend = FunctionBackend(oracle)
    regret = Regret(traces=2, sampling=Sampling(num_samples=3, temperature=1.0), group_size=1)
    [record] = regret_records(backend, [PROMPT], samples, ["4"], regret)
    # x = prompt words (5) + words written so far + the answer's 1 word; J = 1 once "4 it is" was written.
    assert record["curves"] == [
        [[6.0, 0.0], [14.0, 0.0], [19.0, 1.0], [25.0, 1.0]],
        [[6.0, 0.0], [10.0, 1.0]],
    ]  # the third sample is beyond regret_traces
    # Areas at C = 20: THOUGHT (5 · 1/2 + 1) / 20 = 0.175, SHORT (2 + 10) / 20 = 0.6;
    # at C = 30: THOUGHT (2.5 + 6 + 5) / 30 = 0.45, SHORT (2 + 20) / 30.
    rows = regret_rows([record["curves"]], [20, 30])
    areas = [(0.175 + 0.6) / 2, (0.45 + 22 / 30) / 2]
    assert [row["normalized_area"] for row in rows] == pytest.approx(areas)
    assert [row["normalized_regret"] for row in rows] == pytest.approx([1 - area for area in areas])
    assert [(row["problems"], row["traces"]) for row in rows] == [(1, 2), (1, 2)]


class CallCounter(FunctionBackend):
    """The oracle backend, counting its generate calls."""

    calls = 0

    def generate(self, prompts, sampling):
        CallCounter.calls += 1
        return super().generate(prompts, sampling)


def test_run_writes_regret_and_reuses_cached_curves_for_new_cutoffs(tmp_path, capsys):
    dataset = tmp_path / "problems.jsonl"
    dataset.write_text(json.dumps({"problem": "x + x = 4?", "answer": "4"}) + "\n")
    settings = dict(
        dataset=str(dataset), output_dir=str(tmp_path / "out"), n_values=[1, 2], strategies=["majority"],
        regret_traces=1, regret_samples=2, regret_group_size=1, task_args={"use_system_prompt": False},
    )  # fmt: skip
    manifest = run_tts(TTSConfig(**settings, regret_cutoffs=[20]), backend=CallCounter(oracle))
    assert CallCounter.calls == 2  # the samples, then every forced prefix in one call
    curves = json.loads((tmp_path / "out/regret.json").read_text())["curves"]
    [[curve]] = curves
    assert [right for _, right in curve] == [0.0, 0.0, 1.0, 1.0]
    assert [b[0] - a[0] for a, b in zip(curve, curve[1:], strict=False)] == [8.0, 5.0, 6.0]  # episode words
    assert manifest["regret"] == regret_rows(curves, [20])
    assert "| cutoff | normalized_area | normalized_regret |" in capsys.readouterr().out
    assert (tmp_path / "out/regret.png").is_file() and (tmp_path / "out/regret.md").is_file()
    rerun = run_tts(TTSConfig(**settings, regret_cutoffs=[20, 4096]), backend=CallCounter(oracle))
    assert CallCounter.calls == 2 and rerun["regret"] == regret_rows(curves, [20, 4096])
    run_tts(TTSConfig(**{**settings, "regret_samples": 3}, regret_cutoffs=[20]), backend=CallCounter(oracle))
    assert CallCounter.calls == 3  # other regret settings: new curves, the cached samples kept


def test_regret_settings_cap_forced_answers_at_the_sample_budget_and_bad_ones_are_one_line():
    config = TTSConfig(max_new_tokens=16384, regret_max_new_tokens=4096, regret_samples=8, temperature=0.6)
    assert config.regret().sampling == Sampling(4096, 0.6, 0.95, 0, 8)
    assert TTSConfig(max_new_tokens=16, regret_max_new_tokens=4096).regret().sampling.max_new_tokens == 16
    with pytest.raises(ValueError, match="regret_cutoffs must be positive integers"):
        TTSConfig(regret_cutoffs=[0])
    with pytest.raises(ValueError, match="set n_values"):
        TTSConfig(regret_cutoffs=[4096], n_values=[], budgets=[8])
