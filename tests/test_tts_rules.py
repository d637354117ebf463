"""Test-time scaling rules on hand-worked examples: answer extraction, majority / weighted voting, best-of-N,
first-finish (ties and unparseable answers), the sweep's prefix reuse (one generation pass), budget forcing
with a scripted backend, and one-line errors for bad input."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from core.data import DataError
from core.generation import Generation, Messages, Sampling
from evaluation.tts import (
    BudgetForcing,
    Sample,
    best_of_n,
    budget_force,
    first_finish,
    majority,
    to_sample,
    weighted,
)
from evaluation.tts_config import TTSConfig
from evaluation.tts_report import sweep
from evaluation.tts_run import load_problems, run_tts
from tasks.math import MathTask

REAL = Path(__file__).resolve().parents[2] / "shared/data/real"


def extract_answer(text: str) -> str:
    return to_sample(Generation(text, 1)).answer


def test_extract_answer_markers_think_and_unparseable():
    assert extract_answer("<think>maybe #### 3</think> so <answer> 1,234.00 </answer>") == "1234"
    assert extract_answer("work\n#### $18") == "18"
    assert extract_answer("<think>x</think>\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_answer("thinking\n</think>\n\nFinal answer: 42.\nbecause") == "42"
    assert extract_answer("Final answer: 7</answer>") == "7"
    # no marker after </think>, an empty tag or an unclosed box: unparseable
    assert extract_answer("<answer>5</answer></think> the answer is 5") == ""
    assert extract_answer("18") == "" and extract_answer("") == ""
    assert extract_answer("<answer> </answer>") == "" and extract_answer("\\boxed{18") == ""


def test_majority_vote_counts_ties_to_earliest_first_occurrence_and_skips_unparseable():
    assert majority(["3", "5", "5", "3", "7"]) == "3"  # 2-2 tie: "3" appeared first
    assert majority(["", "", "5", "3", "3"]) == "3"  # two blanks do not outvote
    assert majority(["", "9"]) == "9"
    assert majority(["", ""]) == "" and majority([]) == ""


def test_weighted_vote_sums_scores_per_answer():
    answers = ["3", "5", "5", "3", ""]
    assert weighted(answers, [0.9, 0.5, 0.5, 0.0, 5.0]) == "5"  # 1.0 vs 0.9; the blank's 5 abstains
    assert weighted(answers, [0.5, 0.25, 0.25, 0.0, 1.0]) == "3"  # 0.5 vs 0.5 tie: "3" first
    assert weighted(["", ""], [1.0, 1.0]) == ""
    with pytest.raises(ValueError, match="non-negative"):
        weighted(["1"], [-0.5])


def test_best_of_n_and_first_finish_pick_one_sample_first_on_ties():
    assert best_of_n(["3", "5", "7"], [0.1, 0.8, 0.8]) == "5"
    assert best_of_n(["", "5"], [0.9, 0.1]) == ""  # the best-scored sample is unparseable: no answer
    assert first_finish(["3", "5", "7"], [40, 12, 12]) == "5"
    assert first_finish(["", "5"], [3, 90]) == ""
    assert best_of_n([], []) == "" and first_finish([], []) == ""


def _samples(*answers_tokens: tuple[str, int]) -> list[Sample]:
    return [
        Sample(f"<answer>{a}</answer>", t, extract_answer(f"<answer>{a}</answer>")) for a, t in answers_tokens
    ]


def test_sweep_uses_prefixes_of_one_sample_list():
    samples = [
        _samples(("1", 5), ("2", 3), ("2", 4), ("2", 9)),
        _samples(("x", 2), ("7", 2), ("7", 1), ("8", 1)),
    ]
    scores = [[0.0, 1.0, 0.0, 0.0], [0.2, 0.1, 0.1, 0.9]]
    rows = sweep(samples, scores, ["2", "7"], [1, 2, 4], ["majority", "best_of_n", "first_finish"])
    table = {(r["strategy"], r["n"]): (r["correct"], r["tokens_per_problem"]) for r in rows}
    assert table[("majority", 1)] == (0, 3.5)  # "1", "x"
    assert table[("majority", 2)] == (0, 6.0)  # "1"/"2" tie -> "1"; "x"/"7" tie -> "x"
    assert table[("majority", 4)] == (2, 13.5)
    assert table[("best_of_n", 2)] == (1, 6.0) and table[("best_of_n", 4)] == (1, 13.5)  # "2"; "x" then "8"
    assert table[("first_finish", 2)] == (1, 6.0)  # "2" (3 tokens); 2-2 tie -> "x"
    assert table[("first_finish", 4)] == (2, 13.5)  # "2"; "7" (first of the 1-token samples)
    assert [table[("pass@n", n)][0] for n in (1, 2, 4)] == [0, 2, 2]


class CountingBackend:
    """Answers sample j of every prompt with ``answers[j]``; records each call's prompts and sampling."""

    name = "counting"

    def __init__(self, answers: Sequence[str]) -> None:
        self.answers, self.calls = list(answers), []

    def generate(self, prompts: Sequence[Messages], sampling: Sampling) -> list[list[Generation]]:
        self.calls.append((len(prompts), sampling))
        return [
            [Generation(f"<think>t</think><answer>{a}</answer>", 10 + j) for j, a in enumerate(self.answers)][
                : sampling.num_samples
            ]
            for _ in prompts
        ]


def _problems(tmp_path: Path, rows: list[dict]) -> str:
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


class PromptRecorder(CountingBackend):
    """A :class:`CountingBackend` that also keeps every prompt it was given."""

    def generate(self, prompts: Sequence[Messages], sampling: Sampling) -> list[list[Generation]]:
        self.prompts = [*getattr(self, "prompts", []), *prompts]
        return super().generate(prompts, sampling)


def test_run_tts_renders_each_prompt_with_the_math_task(tmp_path):
    rows = [{"problem": "1+1?", "answer": "2"}, {"problem": "2+2?", "answer": "4"}]
    backend = PromptRecorder(["2"])
    config = TTSConfig(
        dataset=_problems(tmp_path, rows), output_dir=str(tmp_path / "out"), n_values=[1],
        strategies=["majority"], task_args={"use_system_prompt": False}, temperature=0.0,
    )  # fmt: skip
    run_tts(config, backend=backend)
    assert backend.prompts == [MathTask(use_system_prompt=False).prompt(row) for row in rows]
    with pytest.raises(ValueError, match="unknown option 'system_prompt' of task 'math'"):
        TTSConfig(dataset="x.jsonl", task_args={"system_prompt": False})


def test_run_tts_sweeps_with_one_generation_pass(tmp_path):
    dataset = _problems(
        tmp_path, [{"problem": "1+1?", "answer": "2"}, {"problem": "2+2?", "answer": "#### 4"}]
    )
    backend = CountingBackend(["3", "2", "2", "4", "4", "4", "4", "4"])
    config = TTSConfig(
        dataset=dataset, output_dir=str(tmp_path / "out"), n_values=[1, 2, 4, 8],
        strategies=["majority", "weighted", "best_of_n", "first_finish"], reward="answer_match",
    )  # fmt: skip
    manifest = run_tts(config, backend=backend)
    assert len(backend.calls) == 1 and backend.calls[0][0] == 2 and backend.calls[0][1].num_samples == 8
    accuracy = {(r["strategy"], r["n"]): r["accuracy"] for r in manifest["table"]}
    assert accuracy[("majority", 1)] == 0.0 and accuracy[("majority", 2)] == 0.0  # "3", then a 3/2 tie -> 3
    assert accuracy[("majority", 4)] == 0.5 and accuracy[("majority", 8)] == 0.5  # "2" wins at 4, "4" at 8
    assert accuracy[("best_of_n", 2)] == 0.5 and accuracy[("weighted", 2)] == 0.5  # answer_match: an oracle
    assert accuracy[("pass@n", 2)] == 0.5 and accuracy[("pass@n", 4)] == 1.0
    tokens = [r["tokens_per_problem"] for r in manifest["table"] if r["strategy"] == "majority"]
    assert tokens == [10.0, 21.0, 46.0, 108.0]
    lines = (tmp_path / "out/samples.jsonl").read_text().splitlines()
    assert len(lines) == 2 and len(json.loads(lines[0])["samples"]) == 8


class ScriptedThinker:
    """Thinks "hmm" forever (or ends thinking with ``</think>`` after ``stop_after`` words); after a prefill
    ending in ``Final answer:`` answers ``42``. One token per word, ``max_new_tokens`` respected."""

    name = "scripted"

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after, self.calls = stop_after, []

    def generate(self, prompts: Sequence[Messages], sampling: Sampling) -> list[list[Generation]]:
        self.calls.append(([p[-1]["content"] for p in prompts], sampling.max_new_tokens))
        out = []
        for prompt in prompts:
            prefill = prompt[-1]["content"] if prompt[-1]["role"] == "assistant" else ""
            if prefill.endswith("Final answer:"):
                words = ["42", "<|im_end|>"]
            elif self.stop_after:
                words = ["hmm"] * self.stop_after + ["</think>", "<answer>1</answer>", "<|im_end|>"]
            else:
                words = ["hmm"] * 10_000
            words = words[: sampling.max_new_tokens]
            text = " ".join(w for w in words if w != "<|im_end|>")
            out.append([Generation(text, len(words))] * sampling.num_samples)
        return out


def test_budget_forcing_caps_thinking_appends_the_marker_and_parses_the_answer():
    backend = ScriptedThinker()
    (sample,) = budget_force(backend, [[{"role": "user", "content": "q"}]], BudgetForcing(7), Sampling())
    assert [budget for _, budget in backend.calls] == [7, 32]  # thinking at the budget, then the answer
    forced_prefill = backend.calls[1][0][0]
    assert forced_prefill == " ".join(["hmm"] * 7) + "\n</think>\n\nFinal answer:"
    assert sample.answer == "42" and sample.num_tokens == 7 + 2
    assert sample.text == forced_prefill + "42"


def test_budget_forcing_wait_extends_an_early_end_of_thinking_within_the_budget():
    backend = ScriptedThinker(stop_after=3)  # 3 words, </think>, an answer, end: 6 tokens per round
    forcing = BudgetForcing(20, num_waits=2)
    (sample,) = budget_force(backend, [[{"role": "user", "content": "q"}]], forcing, Sampling())
    assert [budget for _, budget in backend.calls] == [20, 14, 8, 32]
    assert backend.calls[2][0][0] == "hmm hmm hmm \nWait" + "hmm hmm hmm \nWait"
    assert sample.num_tokens == 18 + 2 and sample.answer == "42"
    (no_wait,) = budget_force(
        ScriptedThinker(stop_after=3), [[{"role": "user", "content": "q"}]], BudgetForcing(20), Sampling()
    )
    assert no_wait.num_tokens == 6 + 2 and no_wait.text.count("Wait") == 0 and no_wait.answer == "42"


def test_bad_input_is_one_line(tmp_path):
    no_answer = _problems(tmp_path, [{"problem": "1+1?", "solution": "2"}])
    with pytest.raises(DataError, match="missing column 'answer'") as error:
        load_problems(TTSConfig(dataset=no_answer))
    assert "\n" not in str(error.value)
    for settings, message in [
        ({"n_values": [0, 2]}, "n_values must be positive integers"),
        ({"n_values": [], "budgets": []}, "nothing to do"),
        ({"budgets": [-5]}, "budgets must be positive integers"),
        ({"strategies": ["best_of_n"]}, "needs a scorer"),
        ({"strategies": ["vote"]}, "strategy 'vote'"),
        ({"temperature": 0.0}, "temperature 0"),
        ({"reward": "answer_match", "reward_model": "rm"}, "not both"),
    ]:
        with pytest.raises(ValueError, match=message) as error:
            TTSConfig(**settings)
        assert "\n" not in str(error.value)


@pytest.mark.skipif(not (REAL / "gsm8k").is_dir(), reason="needs ../shared/data/real/gsm8k")
def test_gsm8k_rows_load_with_renamed_columns_and_grade_against_the_reference(tmp_path):
    lines = (REAL / "gsm8k/gsm8k.test.jsonl").read_text(encoding="utf-8").splitlines()[:5]
    path = tmp_path / "gsm8k.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rows = load_problems(TTSConfig(dataset=str(path), problem_field="question", max_problems=3))
    assert len(rows) == 3 and rows[0]["problem"].startswith("Janet")
    assert rows[0]["answer"].endswith("#### 18")
    backend = CountingBackend(["18", "18", "3"])
    config = TTSConfig(
        dataset=str(path), problem_field="question", n_values=[1, 3], output_dir=str(tmp_path / "o")
    )
    manifest = run_tts(config, backend=backend)
    majority = {r["n"]: r["correct"] for r in manifest["table"] if r["strategy"] == "majority"}
    assert majority == {1: 1, 3: 1}  # only Janet's ducks (18) is right
    assert manifest["inputs"]["problems"] == 5 and "sha256" in manifest["inputs"]
