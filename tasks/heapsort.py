"""Setwise heapsort reranking (Rank-R1, arXiv 2503.06034; llmrankers ``RankR1SetwiseLlmRanker``).

Algorithm (llmrankers' ``heapSort`` with ``num_child`` = c): the candidates form an implicit (c)-ary max-heap
in an array, where node i has children ``c*i+1 .. c*i+c``. ``heapify(i, n)`` shows the model node i and its
children (up to c + 1 documents, node i labelled ``[1]``) in one Rank-R1 prompt; the answer ``[k]`` names
the most relevant one; if that is a child, it swaps with node i and heapify continues at the child.

1. Build the heap: heapify every node from ``n // c`` down to 0.
2. Extract: for i = n-1 down to 1, swap the root to position i; stop once ``k`` documents are placed;
   otherwise heapify the root on the first i elements.
3. The ranking is the array reversed: the k extracted documents first, then the rest of the heap.

An answer that does not parse as ``[k]`` with k in range keeps node i as the largest (llmrankers' fallback,
index 0) and is counted in ``fallbacks``. Comparisons are sequential within a query; across queries the
comparison every query waits on is generated in one call.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from core.generation import Generation, Sampling
from tasks.parsers import parse_setwise_label
from tasks.prompts import R1_SYSTEM_PROMPT, SETWISE_USER, Messages, setwise_messages
from tasks.strategy import QueryRun, Ranked, Request, passage_text

Compare = Generator[list[Request], list[list[Generation]], int]


@dataclass(frozen=True)
class SetwiseHeapsort:
    """Rank-R1 setwise heapsort; ``num_child`` children per comparison, top ``k`` extracted."""

    num_child: int = 19
    k: int = 10
    max_passage_words: int = 300
    sampling: Sampling = field(default_factory=lambda: Sampling(max_new_tokens=2048))

    name = "setwise"

    def __post_init__(self) -> None:
        if self.num_child < 1 or self.k < 1:
            raise ValueError(f"setwise num_child and k must be >= 1, got {self.num_child}, {self.k}")

    def describe(self) -> dict[str, Any]:
        params = {key: value for key, value in asdict(self).items() if key != "sampling"}
        template = {"system": R1_SYSTEM_PROMPT, "user": SETWISE_USER}
        return {"strategy": self.name, **params, "template": template}

    def prompt(self, query: str, texts: Sequence[str]) -> Messages:
        """Rank-R1's setwise prompt over the passages cut to ``max_passage_words``."""
        return setwise_messages(query, [passage_text(t, self.max_passage_words) for t in texts])

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
            messages = self.prompt(query, [heap[p]["text"] for p in positions])
            (samples,) = yield [Request(messages, self.sampling)]
            label = parse_setwise_label(samples[0].text, len(positions)).label
            counts["fallbacks"] += label is None
            largest = positions[label - 1] if label is not None else i
            if largest == i:
                return i
            heap[i], heap[largest] = heap[largest], heap[i]
            i = largest
        return i
