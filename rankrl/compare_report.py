"""The records of ``rankrl compare``: its settings, one row per chain, ``compare.json`` and the table.

``compare.json`` is written after each row, so an interrupted comparison resumes with the rows it lacks
(:func:`load_saved`); :func:`markdown_table` renders the rows as ``compare.md`` and the README's table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.recipe import RecipeError, read_yaml

DEMO_RECIPES = Path(__file__).resolve().parent.parent / "recipes" / "demo"
LEARNING_KEYS = ("learning_rate", "lr_scheduler_type", "warmup_steps")


@dataclass(frozen=True)
class CompareSettings:
    """What every paper shares; a ``compare.json`` made with other settings is not resumed."""

    train_steps: int = 400
    rl_steps: int = 40
    batch_size: int = 32
    num_generations: int = 8
    train_rows: int = 4000
    heldout_rows: int = 64
    seed: int = 0
    max_new_tokens: int | None = None
    model: str | None = None
    data: str | None = None
    heldout: str | None = None


@dataclass
class Row:
    """One line of the table: a paper's chain (or the start model) and what its evaluation measured."""

    name: str
    stages: str
    ndcg_10: float | None = None
    tokens_per_query: float | None = None
    invalid_rate: float | None = None
    wall_s: float | None = None
    stage_s: dict[str, float] = field(default_factory=dict)
    outputs: int = 0
    fallbacks: int = 0
    repairs: int = 0
    machine: str = ""
    error: str | None = None


def toy_learning(stage: str) -> dict[str, Any]:
    """The learning rate, schedule and warm-up the demo's recipe for ``stage`` trains a tiny model with."""
    demo = read_yaml(DEMO_RECIPES / f"{stage}.yaml")
    return {key: demo.get(key, 0) for key in LEARNING_KEYS}


def load_saved(path: Path, settings: CompareSettings) -> dict[str, Any]:
    """``compare.json`` with only its finished rows (an error row is run again); a one-line error when it
    was made with other settings."""
    if not path.is_file():
        return {"rows": {}, "first_stage_ndcg_10": None}
    saved = json.loads(path.read_text(encoding="utf-8"))
    if saved.get("settings") != asdict(settings):
        raise RecipeError(
            f"{path} was made with other settings ({saved.get('settings')}); use another --output-dir"
        )
    saved["rows"] = {name: row for name, row in saved["rows"].items() if not row.get("error")}
    return saved


def machine() -> str:
    """The GPU's name, or the CPU threads torch uses."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU (torch threads: {torch.get_num_threads()})"


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _start_line(settings: CompareSettings) -> str:
    if settings.model is not None:
        return f"{settings.model}, each paper with its own learning rates and LoRA settings"
    rates = ", ".join(
        f"{stage} {toy_learning(stage)['learning_rate']:g}" for stage in ("sft", "grpo", "score")
    )
    return (
        f"one untrained tiny model, every paper with the demo's learning rates ({rates}) and full "
        "fine-tuning (the papers' 7B learning rates and LoRA do not move a from-scratch model)"
    )


def markdown_table(rows: Sequence[Row], settings: CompareSettings, first_stage: float | None) -> str:
    """The comparison as a caption and a markdown table, one line per row."""
    data = settings.data or f"{settings.train_rows} toy training rows"
    heldout = settings.heldout or f"{settings.heldout_rows} held-out toy queries"
    baseline = f" (first-stage order: nDCG@10 {first_stage:.3f})" if first_stage is not None else ""
    machines = " / ".join(sorted({row.machine for row in rows if row.machine})) or "-"
    caption = (
        f"Same budget for every recipe: {settings.train_steps} optimizer steps per SFT / score stage, "
        f"{settings.rl_steps} per GRPO stage, batch {settings.batch_size} (GRPO: completions, "
        f"{settings.num_generations} per prompt), seed {settings.seed}. Start: {_start_line(settings)}. "
        f"Data: {data}; evaluation: {heldout}{baseline}. Tokens: generated per query at evaluation. "
        f"Wall: training + evaluation on {machines}. Invalid: model outputs that fell back or needed a "
        "lenient repair."
    )
    lines = [caption, "", "| recipe | stages | nDCG@10 | tokens / query | wall (s) | invalid | error |"]
    lines.append("|" + "---|" * 7)
    for row in rows:
        invalid = "-" if row.invalid_rate is None else f"{row.invalid_rate:.1%}"
        cells = [row.name, row.stages, _number(row.ndcg_10, ".3f"), _number(row.tokens_per_query, ".1f"),
                 _number(row.wall_s, ".0f"), invalid, row.error or ""]  # fmt: skip
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines)


def save_rows(
    path: Path, settings: CompareSettings, rows: Mapping[str, Row], first_stage: float | None
) -> None:
    """Write ``compare.json``: the settings, the first-stage nDCG@10 and every row so far."""
    record = {
        "settings": asdict(settings),
        "first_stage_ndcg_10": first_stage,
        "rows": {name: asdict(row) for name, row in rows.items()},
    }
    path.write_text(json.dumps(record, indent=1), encoding="utf-8")
