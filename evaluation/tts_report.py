"""The test-time scaling report: accuracy per (rule, n) over sample prefixes, and its table and plot.

:func:`sweep` applies every rule of :data:`~evaluation.tts.RULES` to the *first n* samples of each problem
for every n, beside the oracle ``pass@n`` (a correct answer among the first n), so one pass of max(n)
samples serves the whole sweep; a prediction is right when it is equivalent to the reference
(:func:`tasks.answers.answers_match`: same normal form, or equal under math-verify). :func:`pass_at_k_rows`
adds ``pass@k`` for every k of n_values, Chen et al.'s (2021, arXiv 2107.03374) unbiased estimate from all N
samples of a problem (:func:`pass_at_k`; at k = 1, the mean accuracy of a sample). :func:`with_latency`
adds the cost columns; :func:`write_table` writes ``tts.csv`` and ``tts.md``; :func:`write_plot` draws
accuracy against n and against generated tokens per problem (``tts.png``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluation.tts import RULES, Sample
from tasks.answers import answers_match

ORACLE = "pass@n"
PASS_AT_K = "pass@k"
COLUMNS = (
    "strategy", "n", "budget", "accuracy", "correct", "problems", "unparseable",
    "tokens_per_problem", "latency_s_per_problem", "problems_per_s",
)  # fmt: skip


def score_row(
    strategy: str, n: int, budget: int | None, picked: Sequence[str], references: Sequence[str], tokens: int
) -> dict[str, Any]:
    """One table row (without latency): accuracy of the predictions ``picked``, their unparseable count
    (``""``) and the mean generated tokens per problem (``tokens`` in all)."""
    problems = max(len(references), 1)
    correct = sum(answers_match(p, r) for p, r in zip(picked, references, strict=True))
    return {
        "strategy": strategy,
        "n": n,
        "budget": budget,
        "accuracy": correct / problems,
        "correct": correct,
        "problems": len(references),
        "unparseable": list(picked).count(""),
        "tokens_per_problem": tokens / problems,
    }


def sweep(
    samples: Sequence[Sequence[Sample]],
    scores: Sequence[Sequence[float]] | None,
    references: Sequence[str],
    n_values: Sequence[int],
    strategies: Sequence[str],
) -> list[dict[str, Any]]:
    """Rows per (rule, n) for ``strategies`` and ``pass@n``, each over the first n samples of every problem.

    ``scores`` (aligned with ``samples``) are needed by the scored rules only. The oracle's prediction is a
    correct answer among the first n when there is one, else the first sample's answer.
    """
    rows = []
    for name in [*strategies, ORACLE]:
        for n in n_values:
            heads = [problem[:n] for problem in samples]
            if name == ORACLE:
                picked = [
                    next(
                        (s.answer for s in head if answers_match(s.answer, ref)),
                        head[0].answer if head else "",
                    )
                    for head, ref in zip(heads, references, strict=True)
                ]
            else:
                picked = [RULES[name](head, scores[i][:n] if scores else []) for i, head in enumerate(heads)]
            tokens = sum(s.num_tokens for head in heads for s in head)
            rows.append(score_row(name, n, None, picked, references, tokens))
    return rows


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al.'s unbiased pass@k from ``n`` samples of which ``c`` are correct: 1 − C(n−c, k) / C(n, k),
    the chance that k of the n drawn without replacement hold a correct one."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_at_k_rows(
    samples: Sequence[Sequence[Sample]], references: Sequence[str], n_values: Sequence[int]
) -> list[dict[str, Any]]:
    """One ``pass@k`` row per k of ``n_values``: :func:`pass_at_k` from all of a problem's samples, averaged
    over problems (``correct`` is its sum, the expected number solved); tokens per problem are k times the
    mean tokens of a sample."""
    correct = [
        sum(answers_match(s.answer, ref) for s in mine) for mine, ref in zip(samples, references, strict=True)
    ]
    mean_tokens = [sum(s.num_tokens for s in mine) / max(len(mine), 1) for mine in samples]
    problems = max(len(samples), 1)
    rows = []
    for k in n_values:
        solved = sum(pass_at_k(len(mine), c, k) for mine, c in zip(samples, correct, strict=True))
        rows.append(
            {
                "strategy": PASS_AT_K,
                "n": k,
                "budget": None,
                "accuracy": solved / problems,
                "correct": solved,
                "problems": len(samples),
                "unparseable": None,
                "tokens_per_problem": k * sum(mean_tokens) / problems,
            }
        )
    return rows


def with_latency(row: dict[str, Any], seconds: float) -> dict[str, Any]:
    """``row`` with latency per problem and problems per second for ``seconds`` spent on all its problems."""
    per_problem = seconds / max(row["problems"], 1)
    return {
        **row,
        "latency_s_per_problem": per_problem,
        "problems_per_s": 1 / per_problem if per_problem else None,
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a markdown table with :data:`COLUMNS`."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def write_table(folder: Path, rows: Sequence[dict[str, Any]]) -> None:
    """``tts.csv`` and ``tts.md`` in ``folder``."""
    with open(folder / "tts.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows([{c: row.get(c) for c in COLUMNS} for row in rows])
    (folder / "tts.md").write_text(markdown_table(rows) + "\n", encoding="utf-8")


def write_plot(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Accuracy against n (sampled rules, log2 axis) and against tokens per problem (every row) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_n, by_tokens) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in dict.fromkeys(row["strategy"] for row in rows):
        mine = [row for row in rows if row["strategy"] == name]
        style = {"linestyle": "--" if name in (ORACLE, PASS_AT_K) else "-", "marker": "o", "label": name}
        if name != "budget_forcing":
            by_n.plot([r["n"] for r in mine], [r["accuracy"] for r in mine], **style)
        by_tokens.plot([r["tokens_per_problem"] for r in mine], [r["accuracy"] for r in mine], **style)
    by_n.set(xlabel="samples per problem (n)", ylabel="accuracy", title="accuracy vs samples")
    by_n.set_xscale("log", base=2)
    n_values = sorted({row["n"] for row in rows if row["strategy"] != "budget_forcing"})
    by_n.set_xticks(n_values, [str(n) for n in n_values])
    by_tokens.set(xlabel="generated tokens per problem", ylabel="accuracy", title="accuracy vs tokens")
    if all(row["tokens_per_problem"] > 0 for row in rows):
        by_tokens.set_xscale("log")
    for axis in (by_n, by_tokens):
        axis.grid(alpha=0.3)
        axis.set_ylim(-0.02, 1.02)
        if axis.lines:
            axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
