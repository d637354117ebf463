"""Running a ranking strategy over many queries with generation batched across queries.

A strategy reranks one query as a generator (a coroutine): it yields a list of :class:`Request` (the prompts
it needs now), receives their generations, and finally returns a :class:`Ranked`. :func:`rerank_rows`
starts one coroutine per query and, in every round, sends the pending requests of *all* queries to the
backend in one ``generate`` call per sampling setting. For the sliding window this puts the window at the
same depth of every query into one call; for pointwise and groupwise strategies, which ask for everything at
once, every (query, document) prompt lands in one call; setwise heapsort batches the comparison each query is
waiting on. A query's result never depends on which other queries share its calls (greedy decoding), so the
per-query loop of ``rerank_rows([row], ...)`` ranks exactly the same way, only slower.

Cost bookkeeping per query: generated tokens are counted from the backend's token counts; the wall time of
every ``generate`` call is shared among the queries in it in proportion to their number of prompts.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.generation import Generation, GenerationBackend, Sampling
from tasks.prompts import Messages


@dataclass(frozen=True)
class Request:
    """One prompt a strategy needs completed, with how to decode it."""

    messages: Messages
    sampling: Sampling


@dataclass(frozen=True)
class Ranked:
    """A strategy's answer for one query: every candidate doc id once, best first, with optional scores
    (aligned with ``doc_ids``), how many model outputs fell back as the strategy documents (``fallbacks``)
    and how many were used only after a lenient repair (``repairs``)."""

    doc_ids: list[str]
    scores: list[float] | None = None
    fallbacks: int = 0
    repairs: int = 0


QueryRun = Generator[list[Request], list[list[Generation]], Ranked]


def passage_text(text: str, max_words: int) -> str:
    """Whitespace-normalised ``text`` cut to its first ``max_words`` words (a strategy's passage budget)."""
    return " ".join(text.split()[:max_words])


class Strategy(Protocol):
    """A ranking strategy: ``rerank(row)`` is the coroutine for one ranking row (see the module docstring)."""

    name: str

    def rerank(self, row: Mapping[str, Any]) -> QueryRun: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class QueryResult:
    """The reranked query with its cost: prompts sent, tokens generated and its share of generation time."""

    query_id: str
    doc_ids: list[str]
    scores: list[float] | None
    fallbacks: int = 0
    repairs: int = 0
    prompts: int = 0
    generated_tokens: int = 0
    latency_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Active:
    run: QueryRun
    requests: list[Request]
    result: QueryResult
    answers: list[list[Generation] | None] = field(default_factory=list)


def rerank_rows(
    rows: Sequence[Mapping[str, Any]],
    strategy: Strategy,
    backend: GenerationBackend,
    on_result: Callable[[QueryResult], None] | None = None,
) -> list[QueryResult]:
    """Rerank every row, batching generation across queries; ``on_result`` sees each query as it finishes."""
    results: list[QueryResult | None] = [None] * len(rows)
    active: dict[int, _Active] = {}

    def finish(index: int, result: QueryResult) -> None:
        results[index] = result
        if on_result is not None:
            on_result(result)

    for index, row in enumerate(rows):
        state = _Active(strategy.rerank(row), [], QueryResult(str(row["query_id"]), [], None))
        if _advance(state, None):
            active[index] = state
        else:
            finish(index, state.result)
    while active:
        _generate_round(active, backend)
        for index in list(active):
            if not _advance(active[index], active[index].answers):
                finish(index, active.pop(index).result)
    return [result for result in results if result is not None]


def _advance(state: _Active, answers: list[list[Generation] | None] | None) -> bool:
    """Send ``answers`` into the query's coroutine; False once it has returned its ranking."""
    try:
        requests = state.run.send(answers) if answers is not None else next(state.run)
        while not requests:
            requests = state.run.send([])
    except StopIteration as stop:
        ranked: Ranked = stop.value
        state.result.doc_ids, state.result.scores = list(ranked.doc_ids), ranked.scores
        state.result.fallbacks += ranked.fallbacks
        state.result.repairs += ranked.repairs
        return False
    state.requests, state.answers = list(requests), [None] * len(requests)
    return True


def _generate_round(active: dict[int, _Active], backend: GenerationBackend) -> None:
    """One ``generate`` call per sampling setting for every pending request of every active query."""
    by_sampling: dict[Sampling, list[tuple[int, int]]] = defaultdict(list)
    for index, state in active.items():
        for position, request in enumerate(state.requests):
            by_sampling[request.sampling].append((index, position))
    for sampling, slots in by_sampling.items():
        prompts = [active[index].requests[position].messages for index, position in slots]
        start = time.perf_counter()
        generations = backend.generate(prompts, sampling)
        share = (time.perf_counter() - start) / len(slots)
        for (index, position), samples in zip(slots, generations, strict=True):
            result = active[index].result
            result.prompts += 1
            result.generated_tokens += sum(sample.num_tokens for sample in samples)
            result.latency_s += share
            active[index].answers[position] = samples
