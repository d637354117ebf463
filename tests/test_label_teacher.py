"""The ``labels`` teacher: synthesis answers every prompt with the task's label-derived target, offline,
through the cache (a rerun asks nothing again), and examples whose prompts coincide keep their own answers."""

from __future__ import annotations

import io

from rich.console import Console

from data_synth.config import SynthConfig
from data_synth.pipeline import synth
from tasks import get_task


def _synth(tmp_path, **keys):
    config = SynthConfig(teacher="labels", model="labels", output_dir=str(tmp_path / "out"), **keys)
    console = Console(file=io.StringIO())
    return synth(config, console=console), console.file.getvalue()


def test_each_example_s_answer_is_its_label_target_and_a_rerun_reuses_the_cache(tmp_path):
    result, log = _synth(tmp_path, task="setwise", toy_queries=6)
    task = get_task("setwise")
    assert len(result.rows) == 6 and "teacher: 6 requests this run" in log
    for row in result.rows:
        assert row["completion"] == task.target({**row, "completion": ""})
        assert task.parse(row, row["completion"]).value is not None
    _, log = _synth(tmp_path, task="setwise", toy_queries=6)
    assert "teacher: 0 requests this run" in log


def test_rows_with_the_same_prompt_keep_their_own_labels(tmp_path):
    from core.data import write_dataset

    row = {
        "query": "fleas",
        "candidates": [{"doc_id": "d1", "text": "fleas live"}, {"doc_id": "d2", "text": "cats purr"}],
    }
    rows = [
        {**row, "query_id": "q1", "labels": [{"doc_id": "d1", "relevance": 1}]},
        {**row, "query_id": "q2", "labels": [{"doc_id": "d2", "relevance": 1}]},
    ]
    write_dataset(rows, tmp_path / "rows.jsonl", kind="ranking")
    result, _ = _synth(tmp_path, task="listwise", dataset=str(tmp_path / "rows.jsonl"))
    orders = {row["query_id"]: list(row["teacher_order"]) for row in result.rows}  # listwise keeps the order
    assert orders == {"q1": ["d1", "d2"], "q2": ["d2", "d1"]}
