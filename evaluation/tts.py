"""Test-time scaling for reasoners: sample N answers per problem and pick one, or force a thinking budget.

Answers. A completion's answer is the math task's (:func:`tasks.answers.read_answer`, what
:meth:`tasks.math.MathTask.parse` reads): the normalised final answer after its last ``</think>``
(``####``, ``\\boxed{}``, ``<answer>...</answer>`` or a ``Final answer:`` line). A completion without one,
or with an empty answer, is *unparseable* (answer ``""``): it abstains from every vote, and a rule that picks
it (best-of-N, first-finish) predicts nothing, which counts as wrong.

Selection rules, each over the first n of a problem's samples (so one pass of max(n) samples serves a
whole sweep, :mod:`~evaluation.tts_report`), are :data:`RULES`: ``majority`` (self-consistency),
``weighted`` (score-weighted vote), ``best_of_n`` and ``first_finish``; each function states its tie-break.

Budget forcing (s1, Muennighoff et al. 2025) is :func:`budget_force`: thinking is capped at a token budget,
then an end-of-thinking text is appended and a short final answer generated; optionally the model's own end
of thinking is replaced by ``Wait`` to spend more of the budget.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from core.generation import Generation, GenerationBackend, Messages, Sampling
from tasks.answers import END_THINK, read_answer
from tasks.voting import majority_vote, weighted_vote


@dataclass(frozen=True)
class Sample:
    """One completion of a problem: its text, the tokens generated for it and its normalised answer
    (``""`` when unparseable)."""

    text: str
    num_tokens: int
    answer: str


def to_sample(generation: Generation) -> Sample:
    """A backend's generation as a :class:`Sample` with its answer."""
    return Sample(generation.text, generation.num_tokens, read_answer(generation.text)[0])


def _winner(result: tuple[str, float] | None) -> str:
    return result[0] if result else ""


def majority(answers: Sequence[str]) -> str:
    """Self-consistency (:func:`tasks.voting.majority_vote`): the most frequent parseable answer, ties to the
    tied answer seen first; ``""`` when no sample is parseable."""
    return _winner(majority_vote([answer or None for answer in answers]))


def weighted(answers: Sequence[str], scores: Sequence[float]) -> str:
    """The parseable answer with the largest sum of its samples' scores (:func:`tasks.voting.weighted_vote`,
    scores >= 0), ties as :func:`majority`; ``""`` when none is parseable."""
    return _winner(weighted_vote([answer or None for answer in answers], scores))


def best_of_n(answers: Sequence[str], scores: Sequence[float]) -> str:
    """The answer of the highest-scored sample (the first of tied samples), parseable or not."""
    return answers[max(range(len(scores)), key=scores.__getitem__)] if answers else ""


def first_finish(answers: Sequence[str], num_tokens: Sequence[int]) -> str:
    """First-finish search: the answer of the sample with the fewest generated tokens, i.e. the first to
    finish when all N decode in parallel (the first of tied samples), parseable or not."""
    return answers[min(range(len(num_tokens)), key=num_tokens.__getitem__)] if answers else ""


Rule = Callable[[Sequence[Sample], Sequence[float]], str]
RULES: dict[str, Rule] = {
    "majority": lambda samples, scores: majority([s.answer for s in samples]),
    "weighted": lambda samples, scores: weighted([s.answer for s in samples], scores),
    "best_of_n": lambda samples, scores: best_of_n([s.answer for s in samples], scores),
    "first_finish": lambda samples, scores: first_finish(
        [s.answer for s in samples], [s.num_tokens for s in samples]
    ),
}
SCORED_RULES = ("weighted", "best_of_n")


def sample_problems(
    backend: GenerationBackend, prompts: Sequence[Messages], sampling: Sampling
) -> tuple[list[list[Sample]], float]:
    """``sampling.num_samples`` samples per prompt in one ``generate`` call, and that call's wall time."""
    start = time.perf_counter()
    generations = backend.generate(prompts, sampling)
    return [[to_sample(g) for g in samples] for samples in generations], time.perf_counter() - start


@dataclass(frozen=True)
class BudgetForcing:
    """s1's budget forcing. ``budget``: most thinking tokens per problem; ``num_waits``: times the model's
    own end of thinking is replaced by ``wait`` while budget remains; ``force``: appended to the thinking to
    end it; ``answer_tokens``: budget of the final answer generated after ``force``."""

    budget: int
    num_waits: int = 0
    wait: str = "\nWait"
    end_think: str = END_THINK
    force: str = "\n</think>\n\nFinal answer:"
    answer_tokens: int = 32


def prefilled(prompt: Messages, text: str) -> Messages:
    """``prompt`` with the assistant's reply started as ``text`` (a backend prefill)."""
    return [*prompt, {"role": "assistant", "content": text}] if text else list(prompt)


def budget_force(
    backend: GenerationBackend, prompts: Sequence[Messages], forcing: BudgetForcing, sampling: Sampling
) -> list[Sample]:
    """One budget-forced completion per prompt.

    Thinking rounds: every prompt still thinking generates up to its remaining budget (prompts batched by
    remaining budget); the text is cut at the first ``end_think`` (tokens written after it were generated,
    so they count, but are dropped). A round that stops before the budget (own ``end_think`` or end token)
    while ``num_waits`` allows gets ``wait`` appended and thinks again; otherwise thinking ends. Then
    ``force`` is appended to every thinking and one call generates the answers (``answer_tokens`` each).
    A sample's tokens are its thinking tokens (at most ``budget``) plus its answer tokens.
    """
    one = replace(sampling, num_samples=1)
    thinking, spent, waits = [""] * len(prompts), [0] * len(prompts), [0] * len(prompts)
    active = list(range(len(prompts)))
    while active:
        by_budget: dict[int, list[int]] = defaultdict(list)
        for i in active:
            by_budget[forcing.budget - spent[i]].append(i)
        active = []
        for remaining, members in by_budget.items():
            prompts_now = [prefilled(prompts[i], thinking[i]) for i in members]
            generated = backend.generate(prompts_now, replace(one, max_new_tokens=remaining))
            for i, (generation, *_) in zip(members, generated, strict=True):
                spent[i] += generation.num_tokens
                cut = generation.text.find(forcing.end_think)
                thinking[i] += generation.text[:cut] if cut >= 0 else generation.text
                stopped = cut >= 0 or generation.num_tokens < remaining
                if stopped and waits[i] < forcing.num_waits and spent[i] < forcing.budget:
                    thinking[i] += forcing.wait
                    waits[i] += 1
                    active.append(i)
    forced = [prefilled(prompt, text + forcing.force) for prompt, text in zip(prompts, thinking, strict=True)]
    answers = backend.generate(forced, replace(one, max_new_tokens=forcing.answer_tokens))
    samples = []
    for text, tokens, (answer, *_) in zip(thinking, spent, answers, strict=True):
        response = text + forcing.force + answer.text
        samples.append(Sample(response, tokens + answer.num_tokens, read_answer(response)[0]))
    return samples
