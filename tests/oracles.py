"""An oracle generation backend for tests: every prompt is answered by a Python function, no model.

It implements :class:`core.generation.GenerationBackend`, so a strategy, ``rankrl eval`` or ``rankrl tts``
runs through it exactly as through a model backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from core.generation import Generation, Messages, Sampling, scored_generation


class FunctionBackend:
    """Answers every prompt with ``respond(messages)``, counting whitespace-separated words as tokens, and
    scores ``Sampling.score_tokens`` with ``score(messages, tokens)`` (their log-probabilities).

    An oracle for tests: a strategy's bookkeeping and parsing without a model.
    """

    name = "function"

    def __init__(
        self,
        respond: Callable[[Messages], str],
        score: Callable[[Messages, tuple[str, ...]], Sequence[float]] | None = None,
    ) -> None:
        self.respond, self.score = respond, score

    def generate(self, prompts: Sequence[Messages], sampling: Sampling) -> list[list[Generation]]:
        if sampling.score_tokens:
            if self.score is None:
                raise ValueError("FunctionBackend: Sampling.score_tokens needs a score function")
            tokens = sampling.score_tokens
            scored = [scored_generation(tokens, tuple(map(float, self.score(m, tokens)))) for m in prompts]
            return [[generation] * sampling.num_samples for generation in scored]
        texts = [self.respond(messages) for messages in prompts]
        return [[Generation(text, len(text.split()))] * sampling.num_samples for text in texts]
