"""Teachers: models that answer synthesis prompts, over an OpenAI-compatible endpoint or a local HF model.

A :class:`Teacher` takes a list of :class:`TeacherCall` objects and calls ``on_done(call, completion)`` once
per finished call, as soon as it is finished, so the caller can write the completion to its cache before
anything else happens (the endpoint teacher calls it in a worker thread, so ``on_done`` must be thread-safe
and its ``fsync`` does not hold up the other requests). :class:`OpenAITeacher` runs requests concurrently
(an ``asyncio.Semaphore`` bounds how many are in flight) through ``openai.AsyncOpenAI``. The local teacher
is in :mod:`data_synth.hf_teacher`. Every call of one teacher decodes with the teacher's
:class:`core.generation.Sampling` (its ``temperature``, ``top_p`` and ``max_new_tokens``; a teacher refuses
the other settings), seeded with the teacher's ``seed`` plus the call's sample index.

Retries are hand-written rather than left to the ``openai`` client (``max_retries=0``) so that every retry
is counted by reason, the backoff is testable, and a malformed 200 response (no choices, no text, a body
that is not JSON) is retried like a 429 or 5xx: ``openai``'s own retries cover only status codes and
connection errors. The delay before retry ``a`` (0-based) is ``min(backoff_max_s, backoff_base_s * 2**a)``
scaled by a random factor in [0.5, 1] ("equal jitter"), or the server's ``Retry-After`` when that is longer
(capped).

The API key is read from the environment variable the recipe names and handed to the client only: it is
never logged, never part of :meth:`Teacher.settings` and never written anywhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import openai

from core.generation import Messages, Sampling


class TeacherError(RuntimeError):
    """A teacher request failed for good (bad key, unknown model, retries exhausted); one line."""


class BudgetSpent(RuntimeError):
    """The token budget is spent: no new request was issued after it ran out."""


@dataclass(frozen=True)
class TeacherCall:
    """One teacher call: the cache ``key``, the chat ``messages`` and which sample of the prompt it is.

    Not a :class:`tasks.strategy.Request`, which is a prompt and how to decode it that a ranking strategy
    hands to a generation backend: a teacher call carries no sampling (the teacher's one :class:`Sampling`
    applies), it is identified by its cache key, and its sample index seeds it.
    """

    key: str
    messages: Messages
    sample_index: int


@dataclass(frozen=True)
class Completion:
    """A teacher's answer text and the tokens it cost."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class TokenBudget:
    """Stops new requests once ``limit`` tokens (prompt + completion) are spent; ``limit`` 0 means none."""

    limit: int = 0
    used: int = 0

    @property
    def spent(self) -> bool:
        return 0 < self.limit <= self.used

    def charge(self, completion: Completion) -> None:
        self.used += completion.prompt_tokens + completion.completion_tokens


@dataclass
class RequestStats:
    """What the teacher did in this run: requests sent, retries by reason, tokens."""

    requests: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def count(self, completion: Completion) -> None:
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens


OnDone = Callable[[TeacherCall, Completion], None]


class Teacher(Protocol):
    """Anything that answers lists of :class:`TeacherCall`; ``teacher_id`` names model and sampling for the
    cache."""

    teacher_id: str
    budget: TokenBudget
    stats: RequestStats

    def settings(self) -> dict[str, Any]:
        """Model and sampling settings for the dataset card (never a secret)."""
        ...

    async def generate(self, requests: Sequence[TeacherCall], on_done: OnDone) -> None:
        """Answer every request, calling ``on_done`` as each finishes; raise :class:`BudgetSpent` if the
        budget ran out first (finished requests have been passed to ``on_done``)."""
        ...


def teacher_sampling(sampling: Sampling, seed: int | None) -> dict[str, Any]:
    """The settings a teacher decodes with, as the dataset card and :func:`teacher_id` show them; a
    ``ValueError`` for a :class:`Sampling` that sets anything a teacher cannot apply (``top_k``, several
    samples per call, log-probabilities)."""
    used = Sampling(
        max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature, top_p=sampling.top_p
    )
    if sampling != used:
        raise ValueError(f"a teacher decodes with temperature, top_p and max_new_tokens only, got {sampling}")
    return {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_new_tokens,
        "seed": seed,
    }


def teacher_id(model: str, sampling: Sampling, seed: int | None) -> str:
    """``model`` plus a short hash of the sampling settings: changing either starts a fresh cache key."""
    digest = hashlib.sha256(json.dumps(teacher_sampling(sampling, seed), sort_keys=True).encode()).hexdigest()
    return f"{model}#{digest[:10]}"


def public_url(url: str | None) -> str | None:
    """``url`` without any ``user:password@`` part, for the dataset card."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure."""

    max_retries: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry ``attempt`` (0-based): capped exponential with equal jitter."""
        backoff = min(self.backoff_max_s, self.backoff_base_s * 2**attempt) * rng.uniform(0.5, 1.0)
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, self.backoff_max_s))
        return backoff


class _Transient(Exception):
    """A failure worth retrying; ``reason`` names it for the retry counts."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


def _retry_after(error: openai.APIStatusError) -> float | None:
    try:
        return float(error.response.headers.get("retry-after", ""))
    except ValueError:
        return None


def read_api_key(env_name: str | None) -> str:
    """The key in environment variable ``env_name``; ``"EMPTY"`` when no variable is named (local servers)."""
    if not env_name:
        return "EMPTY"
    key = os.environ.get(env_name)
    if not key:
        raise TeacherError(f"environment variable {env_name} (the recipe's api_key_env) is not set")
    return key


class OpenAITeacher:
    """Chat completions from an OpenAI-compatible endpoint, concurrent, retried and budgeted."""

    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key_env: str | None,
        sampling: Sampling,
        concurrency: int = 32,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        budget: TokenBudget | None = None,
        seed: int | None = 0,
    ) -> None:
        self.model, self.base_url, self.sampling, self.seed = model, base_url, sampling, seed
        self.concurrency, self.timeout_s = concurrency, timeout_s
        self.retry = retry or RetryPolicy()
        self.budget, self.stats = budget or TokenBudget(), RequestStats()
        self.teacher_id = teacher_id(model, sampling, seed)
        self._api_key = read_api_key(api_key_env)
        self._rng = random.Random(0)

    def settings(self) -> dict[str, Any]:
        return {
            "kind": "openai",
            "model": self.model,
            "base_url": public_url(self.base_url),
            **teacher_sampling(self.sampling, self.seed),
            "concurrency": self.concurrency,
            "timeout_s": self.timeout_s,
        }

    async def generate(self, requests: Sequence[TeacherCall], on_done: OnDone) -> None:
        client = openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self._api_key, max_retries=0, timeout=self.timeout_s
        )
        gate = asyncio.Semaphore(self.concurrency)

        async def run(request: TeacherCall) -> bool:
            async with gate:
                if self.budget.spent:
                    return False
                completion = await self._with_retries(client, request)
                self.budget.charge(completion)
                self.stats.count(completion)
                await asyncio.to_thread(on_done, request, completion)  # its fsync must not stall the loop
                return True

        tasks = [asyncio.ensure_future(run(request)) for request in requests]
        try:
            finished = await asyncio.gather(*tasks)
        finally:
            for task in tasks:  # after a permanent failure, stop the rest before closing the client
                task.cancel()
            await client.close()
        if not all(finished):
            raise BudgetSpent(
                f"token budget of {self.budget.limit} spent ({self.budget.used} used) after "
                f"{sum(finished)} of {len(requests)} requests; rerun with a larger token_budget to continue"
            )

    async def _with_retries(self, client: openai.AsyncOpenAI, request: TeacherCall) -> Completion:
        for attempt in range(self.retry.max_retries + 1):
            self.stats.requests += 1
            try:
                return await self._complete(client, request)
            except _Transient as failure:
                if attempt == self.retry.max_retries:
                    tries = f"{attempt + 1} attempts ({failure.reason})"
                    raise TeacherError(f"request {request.key}: still failing after {tries}") from None
                self.stats.retries[failure.reason] += 1
                await asyncio.sleep(self.retry.delay(attempt, self._rng, failure.retry_after))
        raise AssertionError("unreachable")

    async def _complete(self, client: openai.AsyncOpenAI, request: TeacherCall) -> Completion:
        seed = None if self.seed is None else self.seed + request.sample_index
        try:
            response = await client.chat.completions.create(
                model=self.model,
                messages=request.messages,
                temperature=self.sampling.temperature,
                top_p=self.sampling.top_p,
                max_tokens=self.sampling.max_new_tokens,
                seed=seed,
            )
        except openai.APITimeoutError:
            raise _Transient("timeout") from None
        except openai.APIConnectionError:
            raise _Transient("connection") from None
        except openai.APIStatusError as error:
            if error.status_code == 429 or error.status_code >= 500:
                raise _Transient(str(error.status_code), _retry_after(error)) from None
            raise TeacherError(
                f"request {request.key}: HTTP {error.status_code} ({_first_line(error)})"
            ) from None
        except (openai.APIResponseValidationError, ValueError):
            raise _Transient("malformed") from None
        return _completion(response)


def _first_line(error: Exception) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:200]


def _completion(response: Any) -> Completion:
    """The first choice's text and the usage; a response without text is malformed (retried)."""
    choices = getattr(response, "choices", None)
    message = getattr(choices[0], "message", None) if choices else None
    text = getattr(message, "content", None)
    if not isinstance(text, str):
        raise _Transient("malformed")
    usage = getattr(response, "usage", None)
    return Completion(
        text=text,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
    )
