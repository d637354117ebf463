"""MRT's cumulative-regret evaluation of a reasoner (Qu et al. 2025, "Optimizing Test-Time Compute via Meta
Reinforcement Fine-Tuning", arXiv 2503.07572, §6; the authors' analysis/code/regret.ipynb): how fast the
answer the model would give if stopped improves as it thinks.

Curve. Each of the first ``traces`` samples of a problem is cut into episodes at MRT's boundaries
(:func:`rewards.progress.segment_episodes`: paragraphs opening with "Wait", "Alternatively", ..., merged
``group_size`` at a time). After each prefix z_{0:j} (j = 0..k−1) the model is forced to stop thinking and
answer (:data:`rewards.progress.STOP_TEMPLATE`); after the whole thinking (j = k) it closes it itself
(``\\n`` + ``end_think``). The forced answers (``Sampling.num_samples`` per prefix) give J_j, their pass@1,
at x_j tokens: the prompt and z_{0:j} as the model reads them plus the answers' mean length (the notebook
also counts the injected stop text, about 40 tokens; it is not the model's compute and is left out here).

Regret. The curve (0, 0), (x_0, J_0), ..., (x_k, J_k), held at J_k past x_k, integrated up to a token budget
C (interpolated linearly at C; points in prefix order) and divided by C is the normalised area; the
normalised regret at C is 1 − area: the area between the curve and an oracle that answers right at once
(J* = 1), per token. Both are averaged over a problem's traces, then over problems.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.generation import GenerationBackend, Messages, Sampling, encode_prompt
from evaluation.tts import Sample, prefilled
from rewards.progress import STOP_TEMPLATE, episode_prefixes, segment_episodes, thinking_part
from tasks.answers import answers_match, read_answer

Point = tuple[float, float]  # (tokens, pass@1)
REGRET_COLUMNS = ("cutoff", "normalized_area", "normalized_regret", "problems", "traces")


@dataclass(frozen=True)
class Regret:
    """How the curves are drawn: the first ``traces`` samples of a problem, ``sampling`` of the forced
    answers (``num_samples`` = K per prefix), the model's ``end_think`` marker and the episodes merged per
    point (``group_size``)."""

    traces: int
    sampling: Sampling
    end_think: str = "</think>"
    group_size: int = 10


def normalized_area(points: Sequence[Point], cutoff: float) -> float:
    """The area under (0, 0), ``points``..., held flat past the last point, up to ``cutoff``, over ``cutoff``;
    the curve is cut at its first point at or past ``cutoff``, linearly interpolated there."""
    xs, ys = [0.0, *(x for x, _ in points)], [0.0, *(y for _, y in points)]
    crossing = next((i for i in range(1, len(xs)) if xs[i] >= cutoff), None)
    if crossing is None:
        xs, ys = [*xs, cutoff], [*ys, ys[-1]]
    else:
        i = crossing
        ys = [*ys[:i], ys[i - 1] + (cutoff - xs[i - 1]) / (xs[i] - xs[i - 1]) * (ys[i] - ys[i - 1])]
        xs = [*xs[:i], cutoff]
    area = sum((x1 - x0) * (y0 + y1) / 2 for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:], strict=False))
    return area / cutoff


def trace_points(text: str, end_think: str, group_size: int) -> list[tuple[str, str]]:
    """``(written, injected)`` per point of one trace's curve: z_{0:j} and the stop template for j = 0..k−1,
    then the whole thinking and ``\\n`` + ``end_think``; the model answers after ``written + injected``."""
    thinking = thinking_part(text)
    prefixes = episode_prefixes(segment_episodes(thinking, group_size=group_size))[:-1]
    return [(prefix, STOP_TEMPLATE) for prefix in prefixes] + [(thinking.rstrip("\n"), "\n" + end_think)]


def prompt_tokens(backend: GenerationBackend) -> Callable[[Messages], int]:
    """How many tokens the backend reads for a prompt: its tokenizer's encoding (:func:`encode_prompt`), or
    whitespace-separated words for a backend without a tokenizer (test oracles count tokens so)."""
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is None:
        return lambda messages: sum(len(message["content"].split()) for message in messages)
    return lambda messages: len(encode_prompt(tokenizer, messages))


def regret_records(
    backend: GenerationBackend,
    prompts: Sequence[Messages],
    samples: Sequence[Sequence[Sample]],
    references: Sequence[str],
    regret: Regret,
) -> list[dict[str, Any]]:
    """Per problem, ``{"curves": [[x_j, J_j] per prefix] per trace, "seconds": its share of the time}``
    for its first ``regret.traces`` samples; one ``generate`` call for every prefix of every trace."""
    start = time.perf_counter()
    count = prompt_tokens(backend)
    owners, forced = [], []
    for problem, (prompt, mine) in enumerate(zip(prompts, samples, strict=True)):
        for trace, sample in enumerate(mine[: regret.traces]):
            for written, injected in trace_points(sample.text, regret.end_think, regret.group_size):
                owners.append((problem, trace, count(prefilled(prompt, written))))
                forced.append(prefilled(prompt, written + injected))
    answers = backend.generate(forced, regret.sampling) if forced else []
    curves: list[list[list[list[float]]]] = [[[] for _ in mine[: regret.traces]] for mine in samples]
    for (problem, trace, read), group in zip(owners, answers, strict=True):
        right = np.mean([answers_match(read_answer(g.text)[0], references[problem]) for g in group])
        curves[problem][trace].append([read + float(np.mean([g.num_tokens for g in group])), float(right)])
    seconds = (time.perf_counter() - start) / max(len(prompts), 1)
    return [{"curves": problem, "seconds": seconds} for problem in curves]


def regret_rows(curves: Sequence[Sequence[Sequence[Point]]], cutoffs: Sequence[int]) -> list[dict[str, Any]]:
    """One row per token cutoff C: the normalised area and regret (module docstring) over the problems with
    a trace."""
    rows = []
    for cutoff in cutoffs:
        areas = [np.mean([normalized_area(trace, cutoff) for trace in mine]) for mine in curves if mine]
        area = float(np.mean(areas)) if areas else 0.0
        traces = sum(len(mine) for mine in curves)
        rows.append(dict(zip(REGRET_COLUMNS, (cutoff, area, 1 - area, len(areas), traces), strict=True)))
    return rows


def regret_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The regret rows as a markdown table."""
    lines = ["| " + " | ".join(REGRET_COLUMNS) + " |", "|" + "---|" * len(REGRET_COLUMNS)]
    cells = [
        [f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in REGRET_COLUMNS]
        for row in rows
    ]
    return "\n".join(lines + ["| " + " | ".join(line) + " |" for line in cells])


def write_regret(folder: Path, rows: Sequence[dict[str, Any]], curves: Sequence[Any]) -> None:
    """``regret.json`` (the rows and every trace's curve), ``regret.md`` and ``regret.png``: each trace's
    pass@1 against tokens, and the normalised regret against the token cutoff."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    payload = {"rows": list(rows), "curves": list(curves)}
    (folder / "regret.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    (folder / "regret.md").write_text(regret_markdown(rows) + "\n", encoding="utf-8")
    figure, (by_tokens, by_cutoff) = plt.subplots(1, 2, figsize=(11, 4.2))
    for trace in (trace for mine in curves for trace in mine):
        by_tokens.plot([0, *(x for x, _ in trace)], [0, *(y for _, y in trace)], alpha=0.3, linewidth=1)
    by_tokens.set(xlabel="tokens (prompt + prefix + answer)", ylabel="pass@1 if stopped", title="per trace")
    by_tokens.set_ylim(-0.02, 1.02)
    by_cutoff.plot([r["cutoff"] for r in rows], [r["normalized_regret"] for r in rows], marker="o")
    by_cutoff.set(xlabel="token cutoff C", ylabel="normalized regret", title="1 − area / C")
    for axis in (by_tokens, by_cutoff):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(folder / "regret.png", dpi=120)
    plt.close(figure)
