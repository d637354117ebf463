"""The endpoint teacher against a real local HTTP server that injects faults (tests/fault_server.py).

Every fault the issue names (429, 500, a hang past the timeout, malformed JSON, a response without
choices) is retried and counted; permanent errors, exhausted retries, a missing key and a spent token
budget each end in one line.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from core.generation import Sampling
from data_synth.teachers import (
    BudgetSpent,
    Completion,
    OpenAITeacher,
    RetryPolicy,
    TeacherCall,
    TeacherError,
    TokenBudget,
    public_url,
    teacher_id,
)
from tests.fault_server import FaultServer, toy_answer

MESSAGES = [{"role": "user", "content": "What is 2 + 3?\nAfter completing the reasoning"}]


def _teacher(server: FaultServer, **kwargs) -> OpenAITeacher:
    options = {"timeout_s": 0.5, "retry": RetryPolicy(max_retries=4, backoff_base_s=0.01, backoff_max_s=0.05)}
    return OpenAITeacher("toy", server.base_url, None, Sampling(), **{**options, **kwargs})


def _run(teacher: OpenAITeacher, count: int) -> dict[str, Completion]:
    done: dict[str, Completion] = {}
    requests = [TeacherCall(f"r{i}", MESSAGES, i) for i in range(count)]
    asyncio.run(
        teacher.generate(requests, lambda request, completion: done.update({request.key: completion}))
    )
    return done


def test_every_fault_is_retried_and_counted():
    with FaultServer(hang_s=1.5) as server:
        server.inject(["429", "500", "hang", "malformed", "empty", "503"])
        retry = RetryPolicy(max_retries=6, backoff_base_s=0.01, backoff_max_s=0.05)
        teacher = _teacher(server, concurrency=1, retry=retry)
        done = _run(teacher, 3)
    assert sorted(done) == ["r0", "r1", "r2"]
    assert {completion.text for completion in done.values()} == {toy_answer(MESSAGES, 0)}
    assert teacher.stats.retries == {"429": 1, "500": 1, "503": 1, "timeout": 1, "malformed": 2}
    assert teacher.stats.requests == 3 + 6
    assert teacher.stats.completion_tokens == sum(c.completion_tokens for c in done.values()) > 0


def test_permanent_http_error_is_one_line():
    with FaultServer() as server:
        server.inject(["401"])
        with pytest.raises(TeacherError, match=r"HTTP 401") as error:
            _run(_teacher(server), 1)
    assert "\n" not in str(error.value)


def test_exhausted_retries_say_how_often_and_why():
    with FaultServer() as server:
        server.inject(["500"] * 5)
        with pytest.raises(TeacherError, match=r"still failing after 5 attempts \(500\)"):
            _run(_teacher(server), 1)


def test_budget_stops_new_requests_and_says_so():
    with FaultServer() as server:
        teacher = _teacher(server, concurrency=1, budget=TokenBudget(limit=30))
        with pytest.raises(BudgetSpent, match=r"token budget of 30 spent .* after \d of 10 requests"):
            _run(teacher, 10)
        assert 1 <= server.served["ok"] < 10


def test_missing_key_variable_is_one_line(monkeypatch):
    monkeypatch.delenv("RANKRL_TEST_NO_SUCH_KEY", raising=False)
    with pytest.raises(TeacherError, match="environment variable RANKRL_TEST_NO_SUCH_KEY"):
        OpenAITeacher("toy", "http://127.0.0.1:1/v1", "RANKRL_TEST_NO_SUCH_KEY", Sampling())


def test_settings_hold_no_secret(monkeypatch):
    monkeypatch.setenv("RANKRL_TEST_KEY", "sk-never-show-me")
    teacher = OpenAITeacher("m", "https://user:pw@host.example:8443/v1", "RANKRL_TEST_KEY", Sampling())
    shown = repr(teacher.settings()) + repr(vars(teacher).get("stats"))
    assert "sk-never-show-me" not in shown and "pw" not in shown
    assert teacher.settings()["base_url"] == "https://host.example:8443/v1"
    assert public_url(None) is None


def test_teacher_sampling_is_the_core_sampling_with_stable_ids(monkeypatch):
    monkeypatch.setenv("RANKRL_TEST_KEY", "sk")
    sampling = Sampling(max_new_tokens=4096, temperature=0.6, top_p=0.95)
    teacher = OpenAITeacher("toy", None, "RANKRL_TEST_KEY", sampling, seed=3)
    expected = {"temperature": 0.6, "top_p": 0.95, "max_tokens": 4096, "seed": 3}
    assert {key: teacher.settings()[key] for key in expected} == expected
    # the ids of caches written before the teacher took core.generation.Sampling
    assert teacher_id("toy", sampling, 0) == "toy#83b93df516"
    assert teacher_id("m", Sampling(max_new_tokens=6, top_p=1.0), None) == "m#8a880abb52"
    assert teacher.teacher_id != teacher_id("toy", sampling, 0)
    with pytest.raises(ValueError, match="temperature, top_p and max_new_tokens only"):
        OpenAITeacher("toy", None, "RANKRL_TEST_KEY", Sampling(top_k=5))


def test_backoff_is_capped_exponential_with_jitter():
    policy, rng = RetryPolicy(max_retries=9, backoff_base_s=1.0, backoff_max_s=8.0), random.Random(1)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert max(delays) - min(delays) > 0  # jittered
    assert policy.delay(0, rng, retry_after=5.0) == 5.0
    assert policy.delay(0, rng, retry_after=100.0) == 8.0
