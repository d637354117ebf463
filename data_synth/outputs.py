"""Writing the synthesized examples: ``OUTPUT_DIR/train.parquet`` plus a README.md card.

The dataset holds the task's examples with the teacher's answers (:meth:`tasks.base.Task.teacher_example`)
in the task's row schema (:mod:`core.data`); one file trains both stages: ``dataset: OUTPUT_DIR`` in an SFT
recipe (the teacher's answer is the target) and in a GRPO recipe (the task renders prompt and reward
columns). It is written as Parquet with the schema's features, loadable with ``load_dataset("parquet",
...)``, by ``core.data.load_dataset_file`` and from the Hub, where the card's ``configs`` header points at
the file. Everything in a card is computed from the inputs, the recipe and the cached responses, never from
this run's clock or retries, so a resumed run writes the same bytes as an uninterrupted one. The card names
the teacher's model, URL (without credentials) and sampling, never the API key or the variable's value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.data import features_of, write_dataset
from data_synth.config import SynthConfig
from data_synth.filters import FilterStats
from data_synth.inputs import Inputs
from data_synth.progress import Prices
from tasks import Task

CARD_HEADER = (
    "---\nconfigs:\n- config_name: default\n  data_files: train.parquet\ntags:\n- rankrl\n- synthetic\n---\n"
)


@dataclass
class Usage:
    """Token counts over the cached responses a dataset was built from."""

    responses: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, record: Mapping[str, Any]) -> None:
        self.responses += 1
        self.prompt_tokens += int(record.get("prompt_tokens", 0))
        self.completion_tokens += int(record.get("completion_tokens", 0))


def write_examples(rows: list[dict], path: Path, kind: str) -> None:
    """``rows`` checked and written as Parquet in the ``kind`` schema; an empty table of that schema when
    no example was kept."""
    if rows:
        write_dataset(rows, path, kind=kind)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([], schema=features_of(kind).arrow_schema), path)


def _reasons(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items())) or "none"


def _settings_table(settings: Mapping[str, Any]) -> list[str]:
    return ["| setting | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in settings.items())]


def card(
    config: SynthConfig,
    settings: Mapping[str, Any],
    inputs: Inputs,
    unit_stats: FilterStats,
    result: Any,
    columns: list[str],
) -> str:
    """The dataset card."""
    usage: Usage = result.usage
    prices = Prices(config.price_prompt_per_1m, config.price_completion_per_1m)
    lines = [
        CARD_HEADER,
        f"# {config.task} examples synthesized with rankrl",
        "",
        f"task_args: `{config.task_args}`; train with `task: {config.task}` and the same `task_args`.",
        "",
        "## Sources",
        *(f"- {source}" for source in inputs.sources),
        "",
        "## Teacher",
        *_settings_table(
            {**settings, "samples": config.samples, "teacher_suffix": repr(config.teacher_suffix)}
        ),
        "",
        "## Counts and filters",
        f"- input rows: {len(inputs.rows)}; rows skipped: {_reasons(unit_stats.reasons)}",
        f"- prompts: {result.unit_filter.kept + result.unit_filter.dropped} x {config.samples} samples",
        f"- kept: {result.unit_filter.kept}; dropped: {_reasons(result.unit_filter.reasons)}",
        f"- invalid samples: {_reasons(result.sample_failures)}",
        f"- rows in this dataset: {len(result.rows)}",
        *_decontamination_lines(inputs),
        "",
        "## Token usage",
        f"- responses: {usage.responses}; prompt tokens: {usage.prompt_tokens:,};"
        f" completion tokens: {usage.completion_tokens:,}",
        f"- estimated cost: ${prices.cost(usage.prompt_tokens, usage.completion_tokens):.2f}"
        f" (at ${prices.prompt_per_1m}/1M prompt and ${prices.completion_per_1m}/1M completion tokens)",
        "",
        "## Columns",
        ", ".join(f"`{name}`" for name in columns) or "(none: no row was kept)",
        "",
    ]
    return "\n".join(lines)


def _decontamination_lines(inputs: Inputs) -> list[str]:
    report = inputs.decontamination
    if report is None:
        return []
    return [f"- decontamination ({report.n}-grams): kept {report.kept}, dropped {report.dropped}"]


def write_outputs(
    config: SynthConfig,
    task: Task,
    settings: Mapping[str, Any],
    inputs: Inputs,
    unit_stats: FilterStats,
    result: Any,
) -> None:
    """Write ``train.parquet`` and its ``README.md`` card in the output folder."""
    folder = Path(config.output_dir)
    write_examples(result.rows, folder / "train.parquet", task.row_kind)
    columns = list(features_of(task.row_kind))
    text = card(config, settings, inputs, unit_stats, result, columns)
    (folder / "README.md").write_text(text, encoding="utf-8")
