"""The toy corpus's overlooking teacher: what it leaves out, what it keeps, and that the labels stay exact."""

from __future__ import annotations

import pytest

from core.data import labels_to_qrels
from tasks import get_task
from tasks.toy import make_toy_splits, overlooking_teacher

ROWS, _ = make_toy_splits(2000, 0, seed=3)


def _grades(row: dict) -> dict[str, int]:
    return labels_to_qrels(row["labels"])


def test_a_teacher_that_misses_nothing_orders_every_relevant_passage_by_grade():
    task = get_task("listwise", answer_mode="partial")
    for row in overlooking_teacher(ROWS[:200], miss_rate=0.0):
        taught = task.target(row)
        by_labels = task.target({**row, "teacher_order": []})
        assert taught == by_labels


def test_the_teacher_keeps_its_top_pick_and_every_full_match_and_never_touches_the_labels():
    for row, taught in zip(ROWS, overlooking_teacher(ROWS, miss_rate=1.0), strict=True):
        grades = _grades(row)
        best = max(grades.values())
        assert taught["labels"] == row["labels"]
        assert grades[taught["teacher_order"][0]] == best
        assert [doc for doc in taught["teacher_order"][1:] if grades[doc] < 2] == []
        assert {doc for doc, grade in grades.items() if grade == 2} <= set(taught["teacher_order"])


def test_the_teacher_leaves_out_about_its_miss_rate_of_the_partial_matches_it_may_drop():
    taught = overlooking_teacher(ROWS, miss_rate=0.5, seed=1)
    droppable = kept = 0
    for row, answer in zip(ROWS, taught, strict=True):
        grades, top = _grades(row), answer["teacher_order"][0]
        partial = [doc for doc, grade in grades.items() if grade == 1 and doc != top]
        droppable += len(partial)
        kept += sum(doc in answer["teacher_order"] for doc in partial)
    assert droppable > 500
    assert 0.45 < kept / droppable < 0.55
    assert overlooking_teacher(ROWS, miss_rate=0.5, seed=1) == taught  # deterministic for a seed


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_a_miss_rate_outside_0_1_is_refused(rate):
    with pytest.raises(ValueError, match="miss rate"):
        overlooking_teacher(ROWS[:1], miss_rate=rate)
