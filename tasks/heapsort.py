"""Setwise heapsort reranking (Rank-R1, arXiv 2503.06034; llmrankers ``RankR1SetwiseLlmRanker``).

Algorithm (llmrankers' ``heapSort`` with ``num_child`` = c): the candidates form an implicit (c)-ary max-heap
in an array, where node i has children ``c*i+1 .. c*i+c``. ``heapify(i, n)`` shows the model node i and its
children (up to c + 1 documents, node i labelled ``[1]``) in one prompt of the setwise task
(:class:`tasks.setwise.SetwiseTask`); the answer ``[k]`` names the most relevant one; if that is a child,
it swaps with node i and heapify continues at the child.

1. Build the heap: heapify every node from ``n // c`` down to 0.
2. Extract: for i = n-1 down to 1, swap the root to position i; stop once ``k`` documents are placed;
   otherwise heapify the root on the first i elements.
3. The ranking is the array reversed: the k extracted documents first, then the rest of the heap.

An answer the task does not parse as ``[k]`` with k in range keeps node i as the largest (llmrankers'
fallback, index 0) and is counted in ``fallbacks``. Comparisons are sequential within a query; across
queries the comparison every query waits on is generated in one call.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from core.generation import Generation, Sampling
from tasks.setwise import SetwiseTask
from tasks.strategy import QueryRun, Ranked, Request

Compare = Generator[list[Request], list[list[Generation]], int]


@dataclass(frozen=True)
class SetwiseHeapsort:
    """Rank-R1 setwise heapsort; ``num_child`` children per comparison, top ``k`` extracted, each
    comparison rendered and parsed by ``task``."""

    num_child: int = 19
    k: int = 10
    sampling: Sampling = field(default_factory=lambda: Sampling(max_new_tokens=2048))
    task: SetwiseTask = field(default_factory=SetwiseTask)

    name = "setwise"

    def __post_init__(self) -> None:
        if self.num_child < 1 or self.k < 1:
            raise ValueError(f"setwise num_child and k must be >= 1, got {self.num_child}, {self.k}")

    def describe(self) -> dict[str, Any]:
        template = {"system": self.task.release_prompt.system, "user": self.task.release_prompt.user}
        params = {"num_child": self.num_child, "k": self.k}
        return {"strategy": self.name, **params, "task": asdict(self.task), "template": template}

    def rerank(self, row: Mapping[str, Any]) -> QueryRun:
        """Coroutine ranking one row by heapsort; yields one comparison prompt at a time."""
        heap, counts = list(row["candidates"]), {"fallbacks": 0}
        n, c = len(heap), self.num_child
        for i in range(n // c, -1, -1):
            yield from self._heapify(row["query"], heap, n, i, counts)
        for placed, i in enumerate(range(n - 1, 0, -1), start=1):
            heap[i], heap[0] = heap[0], heap[i]
            if placed == self.k:
                break
            yield from self._heapify(row["query"], heap, i, 0, counts)
        return Ranked([candidate["doc_id"] for candidate in reversed(heap)], None, counts["fallbacks"])

    def _heapify(self, query: str, heap: list, n: int, i: int, counts: dict[str, int]) -> Compare:
        while self.num_child * i + 1 < n:
            positions = [i, *range(self.num_child * i + 1, min(self.num_child * (i + 1) + 1, n))]
            shown = {"query": query, "candidates": [heap[p] for p in positions]}
            (samples,) = yield [Request(self.task.prompt(shown), self.sampling)]
            label = self.task.parse(shown, samples[0].text).value
            counts["fallbacks"] += label is None
            largest = positions[label - 1] if label is not None else i
            if largest == i:
                return i
            heap[i], heap[largest] = heap[largest], heap[i]
            i = largest
        return i
