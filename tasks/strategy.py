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
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol

from core.generation import Generation, GenerationBackend, Messages, Sampling
from core.recipe import described


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
class StrategyOptions:
    """How a task's strategy ranks: the keys of a ``rankrl eval`` config (and of the config that
    ``ranking_eval_config`` names for evaluation during training) that shape the ranking itself.

    Each task reads the fields of its own strategy; sampling fields left at None take the task's paper
    default (:meth:`sampling`)."""

    window: int = described("Listwise: passages per window.", 20)
    step: int = described("Listwise: ranks the window moves up between prompts.", 10)
    passes: int = described("Listwise: back-to-front sweeps.", 1)
    parse: str = described(
        "Listwise: 'lenient' repairs an answer, 'strict' keeps the window order on a bad one.", "lenient"
    )
    num_child: int = described("Setwise: children per heap node (documents per prompt = num_child + 1).", 19)
    top_k: int = described("Setwise: documents extracted by heapsort before stopping.", 10)
    stages: str = described(
        "Pointwise and rubric: depth@samples stages, e.g. '100@1,30@16' (Retro* multi-pass).", "100@1"
    )
    group_size: int = described("Groupwise: documents per prompt.", 20)
    repeats: int = described("Groupwise: reshuffled repeats whose scores are averaged.", 1)
    shuffle_groups: bool = described(
        "Groupwise: random grouping (GroupRank) instead of first-stage order.", True
    )
    max_new_tokens: int | None = described("Generation budget per completion (None: the task's default).")
    temperature: float | None = described("Sampling temperature, 0 = greedy (None: the task's default).")
    top_p: float | None = described("Nucleus sampling p (None: the task's default).")
    sample_top_k: int | None = described("Top-k sampling filter, 0 = off (None: the task's default).")
    seed: int = described("Seed of sampling, group shuffles and the randomization test.", 0)

    def sampling(self, default: Sampling) -> Sampling:
        """The task's paper ``default`` with the sampling fields set here."""
        given = {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.sample_top_k,
        }
        return replace(default, **{name: value for name, value in given.items() if value is not None})


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


def strategy_options(config: Mapping[str, Any], source: str) -> StrategyOptions:
    """The :class:`StrategyOptions` keys of a flat ``rankrl eval`` config; its other keys are ignored here."""
    from core.recipe import build_configs

    names = {f.name for f in fields(StrategyOptions)}
    (options,) = build_configs({k: v for k, v in config.items() if k in names}, (StrategyOptions,), source)
    return options
