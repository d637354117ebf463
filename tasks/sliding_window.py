"""Listwise sliding-window reranking (RankGPT / rank_llm, as ReasonRank evaluates: arXiv 2508.07050 §3).

Algorithm, for n candidates, window w, step s and p passes:

1. Windows go back to front. The first covers ranks ``[max(0, n - w), n)``; each next window ends s ranks
   earlier; the sweep stops after the window that starts at rank 0 (so with n <= w there is one window).
   n=100, w=20, s=10 gives the 9 windows (80,100), (70,90), ..., (0,20) that rank_llm uses; n=25 gives
   (5,25), (0,15). (rank_llm would add a third window (0,5) there; both agree whenever w - s divides n - w.)
2. Each window's passages, in the current order, become one ReasonRank prompt
   (:class:`tasks.listwise.ListwiseTask`); the answer's permutation reorders that slice in place,
   so a relevant passage can climb from the bottom to the top in one sweep.
3. The sweep is repeated ``passes`` times.

Parsing (model output is untrusted, nothing raises): ``lenient`` ranks the window with the lenient repair
(invalid and repeated ids dropped, missing ones appended in their current order) and counts every answer that
needed it in ``repairs``; ``strict`` accepts only a ``<think>...</think><answer>`` with a full permutation
and otherwise keeps the window's current order, counting it in ``fallbacks``.

All queries advance one window at a time in lockstep (:mod:`tasks.strategy`), so the windows at
the same depth of every query are generated in one call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from core.generation import Sampling
from tasks.listwise import PREFIX_TEMPLATE, SUFFIX_TEMPLATE, SYSTEM_PROMPT, ListwiseTask
from tasks.strategy import QueryRun, Ranked, Request

PARSE_MODES = ("strict", "lenient")


def sliding_windows(n: int, window: int = 20, step: int = 10) -> list[tuple[int, int]]:
    """The ``(start, end)`` rank slices of one back-to-front sweep, in processing order (module docstring)."""
    if window < 1 or step < 1:
        raise ValueError(f"window and step must be >= 1, got window={window}, step={step}")
    windows, end = [], n
    while end > 0:
        start = max(0, end - window)
        windows.append((start, end))
        if start == 0:
            break
        end -= step
    return windows


@dataclass(frozen=True)
class SlidingWindow:
    """Sliding-window listwise reranking; fields are the strategy's parameters."""

    window: int = 20
    step: int = 10
    passes: int = 1
    parse: str = "lenient"
    sampling: Sampling = field(default_factory=lambda: Sampling(max_new_tokens=1024))
    task: ListwiseTask = field(default_factory=ListwiseTask)

    name = "listwise"

    def __post_init__(self) -> None:
        if self.parse not in PARSE_MODES:
            raise ValueError(f"listwise parse {self.parse!r}; expected one of {', '.join(PARSE_MODES)}")
        if self.passes < 1:
            raise ValueError(f"listwise passes must be >= 1, got {self.passes}")
        sliding_windows(1, self.window, self.step)

    def describe(self) -> dict[str, Any]:
        params = {k: v for k, v in asdict(self).items() if k not in ("sampling", "task")}
        template = {"system": SYSTEM_PROMPT, "prefix": PREFIX_TEMPLATE, "suffix": SUFFIX_TEMPLATE}
        return {"strategy": self.name, **params, "task": asdict(self.task), "template": template}

    def rerank(self, row: Mapping[str, Any]) -> QueryRun:
        """Coroutine ranking one row; yields one window prompt at a time."""
        candidates = list(row["candidates"])
        fallbacks = repairs = 0
        for _ in range(self.passes):
            for start, end in sliding_windows(len(candidates), self.window, self.step):
                window_row = {"query": row["query"], "candidates": candidates[start:end]}
                (samples,) = yield [Request(self.task.prompt(window_row), self.sampling)]
                order, clean = self.task.rank(window_row, samples[0].text)
                if not clean and self.parse == "strict":
                    fallbacks += 1
                    continue
                repairs += not clean
                by_id = {c["doc_id"]: c for c in window_row["candidates"]}
                candidates[start:end] = [by_id[doc_id] for doc_id in order]
        return Ranked([c["doc_id"] for c in candidates], None, fallbacks, repairs)
