"""The math task on hand-made outputs: prompt, target, parser (junk never raises), answer equivalence under
math-verify and its fallback, the time bound on math-verify, majority voting, synthesis checks, toy problems
(training: tests/test_task_training.py)."""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import tasks.answers
from rewards import get_reward, resolve_rewards
from tasks import get_task
from tasks.answers import MathVerifyWorker, answers_match, canonical, read_answer
from tasks.base import expand_rows
from tasks.math import MATH_USER, MathTask
from tasks.setwise import R1_SYSTEM_PROMPT
from tasks.voting import majority_vote, weighted_vote
from tests.test_rewards_more import fuzz_strings

ROOT = Path(__file__).resolve().parents[1]
GSM8K_ANSWER = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nShe sold 48+24 = <<48+24=72>>72 clips.\n#### 72"
)
SLEEPING_WORKER = [
    sys.executable,
    "-c",
    "import sys, time; print('ready', flush=True); sys.stdin.readline(); time.sleep(60)",
]


def _row(**fields: str) -> dict:
    return {"id": "p1", "problem": "What is 3 + 4?", "answer": "7", "solution": "3 + 4 = 7", **fields}


# --- prompt, target, parser ---------------------------------------------------------------------------------


def test_prompt_is_r1s_system_prompt_and_the_problem_with_the_answer_instruction():
    messages = MathTask().prompt(_row())
    assert messages == [
        {"role": "system", "content": R1_SYSTEM_PROMPT},
        {"role": "user", "content": MATH_USER.format(problem="What is 3 + 4?")},
    ]
    assert messages[1]["content"].startswith("What is 3 + 4?\nAfter completing the reasoning process")
    assert MathTask(use_system_prompt=False).prompt(_row()) == messages[1:]


def test_target_is_the_solution_as_thinking_and_the_final_answer_in_tags():
    task = MathTask()
    assert task.target(_row()) == "<think>3 + 4 = 7</think>\n<answer>7</answer>"
    gsm8k = task.target(_row(answer=GSM8K_ANSWER, solution=""))
    assert gsm8k.startswith("<think>Natalia sold 48/2") and gsm8k.endswith(
        "72 clips.</think>\n<answer>72</answer>"
    )
    assert (
        task.target(_row(completion="<think>t</think><answer>7</answer>"))
        == "<think>t</think><answer>7</answer>"
    )


def test_target_parses_to_the_reference_and_earns_the_reward():
    task, reward = MathTask(), get_reward("answer_match")
    for row in (_row(), _row(answer="\\frac{1}{2}", solution="half"), _row(answer=GSM8K_ANSWER)):
        target = task.target(row)
        assert task.accept(row, task.parse(row, target).value) is None
        assert reward([[{"role": "assistant", "content": target}]], answer=[row["answer"]]) == [1.0]


@pytest.mark.parametrize(
    ("text", "value", "reason"),
    [
        ("<think>3 + 4 = 7</think>\n<answer>7</answer>", "7", ""),
        (
            "<think>try \\boxed{3}</think> <answer>\\frac{1}{2}</answer>",
            "\\frac{1}{2}",
            "",
        ),  # not the thinking's
        ("<think>t</think> The sum is \\boxed{1,234.00}.", "1234", ""),
        ("<think>t</think><answer>The answer is \\boxed{x^2}</answer>", "x^2", ""),
        ("thinking\n</think>\n\nFinal answer: 42.\nbecause", "42", ""),
        ("<think>t</think> work #### $18", "18", ""),
        ("<think>t</think> the answer is 7", None, "no_answer"),
        ("<answer>5</answer></think> the answer is 5", None, "no_answer"),
        ("<think>t</think><answer> </answer>", None, "empty_answer"),
        ("<think>t</think> \\boxed{18", None, "no_answer"),
        ("", None, "no_answer"),
        (None, None, "not_text"),
    ],
)
def test_parse_reads_the_final_answer_after_the_thinking(text, value, reason):
    parsed = MathTask().parse(_row(), text)
    assert (parsed.value, parsed.reason) == (value, reason)


def test_junk_outputs_never_raise():
    task = MathTask()
    for text in [*fuzz_strings(300, seed=5), "\\boxed{" * 50, "}" * 40 + "<answer>", "<think>" * 9, 7, b"7"]:
        parsed = task.parse(_row(), text)
        assert parsed.ok == (parsed.value is not None)


# --- answer equivalence -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predicted", "reference"),
    [
        ("\\frac{1}{2}", "0.5"),
        ("1/2", "0.5"),
        ("\\boxed{7}", "7"),
        ("<answer>\\dfrac{3}{4}</answer>", "0.75"),
        ("x=3", "#### 3"),
        ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"),
        ("10,\\!000", "10000"),
    ],
)
def test_math_verify_finds_equivalent_answers_the_normal_forms_miss(predicted, reference):
    assert answers_match(predicted, reference)


@pytest.mark.parametrize(
    ("predicted", "reference"),
    [("2", "3"), ("1,2", "12"), ("\\frac{1}{3}", "0.33"), ("", ""), ("", "7"), ("7", "")],
)
def test_different_answers_do_not_match(predicted, reference):
    assert not answers_match(predicted, reference)


def test_normal_forms_decide_when_math_verify_parses_nothing():
    assert tasks.answers.WORKER.check("7", "\\text{}") is None  # math-verify extracts nothing
    assert not answers_match("\\text{}", "7")
    assert canonical("$1,234.00") == "1234" and canonical("1,2") == "1,2" and canonical("-.50") == "-0.5"


def test_without_math_verify_the_numeric_match_decides(monkeypatch):
    broken = MathVerifyWorker([sys.executable, "-c", "raise SystemExit(1)"])
    monkeypatch.setattr(tasks.answers, "WORKER", broken)
    # timeouts no other test uses, so no cached verdict of the real worker answers
    assert answers_match("#### $1,234.00", "1234", timeout_s=4.25)
    assert not answers_match("\\frac{1}{2}", "0.5", timeout_s=4.25)
    assert "did not start" in broken.unavailable


def test_a_hanging_math_verify_is_cut_at_the_deadline_and_falls_back(monkeypatch):
    sleeper = MathVerifyWorker(SLEEPING_WORKER)
    monkeypatch.setattr(tasks.answers, "WORKER", sleeper)
    start = time.perf_counter()
    assert not answers_match("\\frac{1}{2}", "0.5", timeout_s=0.75)  # the fallback's verdict
    assert time.perf_counter() - start < 0.75 + 2.0  # worker start (~0.1 s) and the kill included
    assert sleeper.timeouts == 1
    assert answers_match("$1,234", "1234", timeout_s=0.75)  # normal forms need no worker


@pytest.mark.parametrize(
    "after_reading",
    ["pass", "print('oops', flush=True)", "print('[1]', flush=True)", "import os; os._exit(3)"],
)
def test_a_worker_that_dies_or_answers_garbage_gives_no_verdict(after_reading):
    script = f"import sys; print('ready', flush=True); sys.stdin.readline(); {after_reading}"
    worker = MathVerifyWorker([sys.executable, "-c", script])
    assert worker.check("0.5", "1/2", timeout_s=10.0) is None
    assert worker.check("0.5", "1/2", timeout_s=10.0) is None  # a fresh worker, the same end
    assert worker.timeouts == 0 and not worker.unavailable
    worker.close()


def test_real_runaway_sympy_is_killed_and_the_next_comparison_restarts_the_worker():
    worker = MathVerifyWorker()
    assert worker.check("0.5", "\\frac{1}{2}") is True  # started and warm
    start = time.perf_counter()
    assert worker.check("3", "2^{2^{2^{40}}}", timeout_s=1.0) is None  # sympy would grow memory for ever
    assert time.perf_counter() - start < 1.0 + 1.5
    assert worker.timeouts == 1
    assert worker.check("0.25", "1/4") is True
    worker.close()


def test_comparisons_from_several_threads_get_their_own_verdicts():
    pairs = [("0.5", "\\frac{1}{2}"), ("3", "2"), ("0.75", "3/4"), ("12", "1,2")] * 4
    worker = MathVerifyWorker()
    with ThreadPoolExecutor(4) as pool:
        verdicts = list(pool.map(lambda pair: worker.check(*pair), pairs))
    assert verdicts == [True, False, True, False] * 4
    worker.close()


# --- voting -------------------------------------------------------------------------------------------------


def test_majority_vote_ties_go_to_the_answer_seen_first_and_none_abstains():
    assert majority_vote(["3", "5", "5", "3", "7"]) == ("3", 2)
    assert majority_vote([None, None, "5", "3", "3"]) == ("3", 2)
    assert majority_vote([None, None]) is None and majority_vote([]) is None
    assert majority_vote([(1, 2), (1, 2), (2, 1)]) == ((1, 2), 2)


def test_weighted_vote_sums_weights_and_refuses_negative_ones():
    assert weighted_vote(["3", "5", "5", None], [0.9, 0.5, 0.5, 5.0]) == ("5", 1.0)
    assert weighted_vote(["3", "5"], [0.5, 0.5]) == ("3", 0.5)
    with pytest.raises(ValueError, match="non-negative"):
        weighted_vote(["1"], [-0.5])


def test_synthesis_majority_of_parsed_samples_is_accepted_when_equivalent():
    task, row = MathTask(), _row(answer="\\frac{1}{2}")
    samples = ["<think>a</think><answer>0.5</answer>", "<answer>1/3</answer>", "\\boxed{0.5}", "junk"]
    values = [task.parse(row, text).value for text in samples]
    agreed, count = majority_vote(values)
    assert (agreed, count) == ("0.5", 2) and task.agreement == "majority"
    assert task.accept(row, agreed) is None and task.accept(row, "1/3") == "wrong_answer"
    example = task.teacher_example(row, f"  {samples[0]}\n", agreed, values)
    assert example["completion"] == samples[0] and task.target(example) == samples[0]


# --- examples, registry, toy data ---------------------------------------------------------------------------


def test_examples_are_one_per_problem_with_a_stable_id():
    task = MathTask()
    (example,), reason = task.examples(_row())
    assert reason == "" and example["task"] == "math" and example["example_id"] == "p1"
    (hashed,), _ = task.examples(_row(id=""))
    (again,), _ = task.examples(_row(id="", solution="other"))
    (other,), _ = task.examples(_row(id="", problem="What is 5 + 4?"))
    assert hashed["example_id"] == again["example_id"] != other["example_id"]
    assert task.examples(_row(answer="####")) == ([], "no_answer")
    examples, dropped = expand_rows(task, [_row(), _row(answer=" ")])
    assert len(examples) == 1 and dropped == {"no_answer": 1}


def test_registry_defaults_and_no_ranking_strategy():
    task = get_task("math", use_system_prompt=False)
    assert isinstance(task, MathTask) and not task.use_system_prompt
    with pytest.raises(ValueError, match="unknown option 'system_prompt'"):
        get_task("math", system_prompt=False)
    assert task.row_kind == "reasoning" and task.strategy(None) is None and task.reward_columns(_row()) == {}
    functions, weights = resolve_rewards(task.default_rewards)
    assert len(functions) == 1 and weights == [1.0]
    assert functions[0](["<answer>1/2</answer>", "<answer>7</answer>"], answer=["0.5", "8"]) == [1.0, 0.0]


def test_toy_splits_are_deterministic_disjoint_and_correct():
    task = MathTask()
    train, heldout = task.toy_splits(50, 10, seed=3)
    assert (train, heldout) == task.toy_splits(50, 10, seed=3) and train != task.toy_splits(50, 10, seed=4)[0]
    assert len(train) == 50 and len(heldout) == 10
    assert not {row["problem"] for row in train} & {row["problem"] for row in heldout}
    assert len({row["id"] for row in train + heldout}) == 60
    for row in train + heldout:
        a, op, b = row["problem"].removeprefix("What is ").removesuffix("?").split()
        assert int(row["answer"]) == (int(a) + int(b) if op == "+" else int(a) - int(b))
    with pytest.raises(ValueError, match="held out leaves none"):
        task.toy_splits(1, 20000)


def test_template_phrases_are_constant_pieces_of_the_prompt():
    task = MathTask()
    prompt = "\n".join(message["content"] for message in task.prompt(_row()))
    phrases = task.template_phrases()
    assert R1_SYSTEM_PROMPT in phrases and all(phrase in prompt for phrase in phrases)
    assert R1_SYSTEM_PROMPT not in MathTask(use_system_prompt=False).template_phrases()


def test_read_answer_never_raises_on_fuzz():
    for text in fuzz_strings(200, seed=11):
        answer, reason = read_answer(text)
        assert bool(answer) != bool(reason)
