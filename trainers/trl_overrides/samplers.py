"""TRL's ``RepeatSampler`` made resumable, and a variant that keeps each query's prompts in one batch."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import torch
from trl.trainer.utils import RepeatSampler

logger = logging.getLogger(__name__)


class EpochSeededRepeatSampler(RepeatSampler):
    """TRL's ``RepeatSampler`` whose shuffle for epoch e is seeded by ``seed + e`` (epoch 0 equals TRL's).

    Transformers' Trainer calls :meth:`set_epoch` (through accelerate's data loader) before each epoch, also
    when it resumes, so the order of every epoch depends on the epoch alone.
    """

    def set_epoch(self, epoch: int) -> None:
        """Reseed the shuffle for ``epoch``."""
        if self.shuffle and self.seed is not None:
            self.generator.manual_seed(self.seed + epoch)


class QueryGroupedRepeatSampler(EpochSeededRepeatSampler):
    """TRL's ``RepeatSampler`` with batches made of whole queries.

    Queries (not rows) are shuffled with TRL's seeded generator; their rows, in dataset order, are laid end
    to end and cut into batches of ``batch_size`` prompts, each prompt repeated ``mini_repeat_count`` (G)
    times and each batch ``repeat_count`` times, as TRL does. A query's rows must divide ``batch_size``, so
    no query is ever split across generation batches: the most common such row count is used and queries
    with another count (a query short of negatives, a teacher answer filtered out) are left out, counted
    in a warning.
    """

    def __init__(self, data_source: Any, query_ids: Sequence[Hashable], **kwargs: Any) -> None:
        super().__init__(data_source, **kwargs)
        rows: dict[Hashable, list[int]] = {}
        for row, query_id in enumerate(query_ids):
            rows.setdefault(query_id, []).append(row)
        counts = Counter(len(members) for members in rows.values())
        usable = [size for size, _ in counts.most_common() if self.batch_size % size == 0]
        if not usable:
            raise ValueError(
                f"group_by_query needs queries whose number of rows divides the {self.batch_size} prompts of "
                f"a generation batch (generation_batch_size / num_generations); found queries with "
                f"{sorted(counts)} rows"
            )
        self.query_rows = [members for members in rows.values() if len(members) == usable[0]]
        if left_out := len(rows) - len(self.query_rows):
            logger.warning(
                "group_by_query: %d of %d queries do not have %d rows (found %s): left out of training",
                left_out, len(rows), usable[0], sorted(counts),
            )  # fmt: skip

    def __iter__(self):
        order = (
            torch.randperm(len(self.query_rows), generator=self.generator).tolist()
            if self.shuffle
            else range(len(self.query_rows))
        )
        indexes = [row for query in order for row in self.query_rows[query]]
        for start in range(0, len(indexes) - self.batch_size + 1, self.batch_size):
            chunk = indexes[start : start + self.batch_size]
            for _ in range(self.repeat_count):
                for index in chunk:
                    yield from [index] * self.mini_repeat_count
