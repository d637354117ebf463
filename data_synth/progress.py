"""The synthesis progress bar: requests done, rate, ETA, tokens and the estimated cost (rich).

The cost is ``prompt_tokens / 1e6 * price_prompt + completion_tokens / 1e6 * price_completion`` for what is
done, and the same scaled to all requests as the estimate for the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from data_synth.teachers import Completion


@dataclass(frozen=True)
class Prices:
    """Prices per million prompt and completion tokens."""

    prompt_per_1m: float = 0.0
    completion_per_1m: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.prompt_per_1m + completion_tokens * self.completion_per_1m) / 1e6


class _RateColumn(ProgressColumn):
    """Requests per second (rich's speed columns speak of bytes)."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0.0:.1f} req/s")


class SynthProgress:
    """A rich progress bar over ``total`` teacher requests; call :meth:`advance` once per completion."""

    def __init__(self, total: int, prices: Prices, console: Console | None = None) -> None:
        self.total, self.prices = total, prices
        self.prompt_tokens = self.completion_tokens = self.done = 0
        self._progress = Progress(
            TextColumn("teacher"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[usage]}"),
            console=console,
        )
        self._task = self._progress.add_task("teacher", total=total, usage=self._usage())

    def __enter__(self) -> SynthProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def advance(self, completion: Completion) -> None:
        self.done += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self._progress.update(self._task, advance=1, usage=self._usage())

    def _usage(self) -> str:
        spent = self.prices.cost(self.prompt_tokens, self.completion_tokens)
        projected = spent * self.total / self.done if self.done else 0.0
        tokens = self.prompt_tokens + self.completion_tokens
        return f"{tokens:,} tok  ${spent:.2f} (est. ${projected:.2f})"
