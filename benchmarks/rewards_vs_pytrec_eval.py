"""Benchmark: rankrl's nDCG@10 + Recall@10 against pytrec_eval on the same inputs, values and speed.

What it measures, on ``--queries`` queries (default 10,000) x ``--candidates`` candidates (default 100)
with random scores (distinct within a query) and random graded labels 0-3 (some candidates unjudged, some
judged documents outside the candidate list, so the ideal DCG and the recall denominator need all
judgements):

1. pytrec_eval: ``RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10"})`` construction, then
   ``evaluate(run)`` on the ``{qid: {docid: score}}`` run dict; each timed on its own line.
2. rankrl, dict form, from the same run and qrels dicts: :func:`core.trec.rank_runs` (trec_eval's
   order, top 10) then :func:`rewards.metrics.evaluate_batch` for both measures (one grade lookup), and,
   on a second line, then :func:`rewards.metrics.ndcg_at_k_batch` + :func:`rewards.metrics.recall_at_k_batch`.
3. rankrl, array form, as a trainer calls it: :func:`rewards.metrics_array.ndcg_from_grades` and
   :func:`rewards.metrics_array.recall_from_grades` on a ``(queries, candidates)`` matrix of grades in
   predicted order plus each query's ideal grades and relevant count (built once, outside the timing).

Each timing is the best of 3 ``time.perf_counter`` runs. The values of both rankrl forms must equal
pytrec_eval's to 1e-9 (the script asserts it and prints the largest difference). Printed ratios are
pytrec_eval ``evaluate`` time / rankrl time (the dict form also against construction + evaluate), so > 1
means rankrl is faster; the issue's targets are >= 1 for the dict form and >= 20 for the array form.

4. The share of a GRPO step spent computing rewards: ``--grpo-steps`` steps (default 8; 0 skips) of the demo
   GRPO recipe (``ranking_metric`` nDCG@10 + ``listwise_monitor``, G = 8) on the tiny model, read from the
   ``throughput_summary/reward_share`` that :class:`trainers.throughput.ThroughputCallback` measures (time in
   ``_calculate_rewards`` over the step time, same run). Target <= 2% for the metric rewards.

Run: ``python benchmarks/rewards_vs_pytrec_eval.py [--queries N] [--grpo-steps N]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytrec_eval

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.trec import rank_runs  # noqa: E402
from rewards.metrics import (  # noqa: E402
    evaluate_batch,
    grade_matrix,
    ideal_grade_matrix,
    ndcg_at_k_batch,
    recall_at_k_batch,
    relevant_counts,
)
from rewards.metrics_array import ndcg_from_grades, recall_from_grades  # noqa: E402

K = 10
MEASURES = {f"ndcg_cut.{K}", f"recall.{K}"}
Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]


def make_data(queries: int, candidates: int, seed: int = 0) -> tuple[Run, Qrels]:
    """Random run and qrels dicts: 80% of candidates judged 0-3, plus 5 judged docs outside the run."""
    rng = np.random.default_rng(seed)
    run: Run = {}
    qrels: Qrels = {}
    for q in range(queries):
        docs = [f"{q}-{i}" for i in range(candidates + 5)]
        grades = rng.integers(0, 4, len(docs)).tolist()
        judged = rng.random(len(docs)) < 0.8
        judged[candidates:] = True
        run[f"q{q}"] = dict(zip(docs[:candidates], rng.random(candidates).tolist(), strict=True))
        qrels[f"q{q}"] = {d: g for d, g, j in zip(docs, grades, judged, strict=True) if j}
    return run, qrels


def best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The smallest wall time of ``repeats`` calls of fn, and fn's last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def rankrl_dicts(run: Run, qrels: Qrels) -> tuple[np.ndarray, np.ndarray]:
    """nDCG@10 and Recall@10 per qrels query straight from the dicts, in one evaluate_batch call."""
    qids = list(qrels)
    rankings = rank_runs([run.get(q, {}) for q in qids], depth=K)
    values = evaluate_batch(rankings, [qrels[q] for q in qids], [f"ndcg_cut_{K}", f"recall_{K}"])
    return values[f"ndcg_cut_{K}"], values[f"recall_{K}"]


def rankrl_dicts_two_calls(run: Run, qrels: Qrels) -> tuple[np.ndarray, np.ndarray]:
    """The same with the single-metric functions, each of which looks the grades up again."""
    qids = list(qrels)
    rankings = rank_runs([run.get(q, {}) for q in qids], depth=K)
    labels = [qrels[q] for q in qids]
    return ndcg_at_k_batch(rankings, labels, K), recall_at_k_batch(rankings, labels, K)


def array_inputs(run: Run, qrels: Qrels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a trainer holds: grades in predicted order (full depth), ideal grades, relevant counts."""
    qids = list(qrels)
    labels = [qrels[q] for q in qids]
    grades = grade_matrix(rank_runs([run[q] for q in qids]), labels)
    return grades, ideal_grade_matrix(labels, K), relevant_counts(labels)


def max_diff(expected: dict[str, dict[str, float]], qids: list[str], values: tuple[np.ndarray, ...]) -> float:
    """Largest |rankrl - pytrec_eval| over all queries of (nDCG@10, Recall@10)."""
    names = (f"ndcg_cut_{K}", f"recall_{K}")
    diffs = [
        np.abs(ours - [expected[q][name] for q in qids]) for ours, name in zip(values, names, strict=True)
    ]
    return float(max(diff.max(initial=0.0) for diff in diffs))


def report(label: str, seconds: float, diff: float | None = None) -> None:
    """One timing line, with the largest difference from pytrec_eval when given."""
    suffix = "" if diff is None else f"   max |diff| {diff:.2e}"
    print(f"  {label:<50} {seconds * 1e3:9.2f} ms{suffix}")


def grpo_reward_share(steps: int, workdir: Path) -> dict[str, float]:
    """Run ``steps`` steps of the demo GRPO recipe on the tiny model; the throughput summary."""
    from core.recipe import apply_overrides, read_yaml
    from rankrl.smoke import prepare_toy_workspace, smoke_overrides
    from tasks import get_task
    from trainers import grpo
    from trainers.configs import build_stage_configs

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "demo" / "grpo.yaml"
    config = read_yaml(recipe)
    task = get_task(config["task"], **config.get("task_args", {}))
    workspace = prepare_toy_workspace(workdir / "toy", task, num_train=128, num_heldout=8)
    overrides = {
        **smoke_overrides("grpo", workspace, workdir / "grpo"),
        "max_steps": steps,
        "eval_dataset": None,
    }
    overrides.update(num_generations=8, per_device_train_batch_size=16, max_completion_length=64)
    overrides.update(rich_progress=False, report_to="none")
    trainer = grpo.main(*build_stage_configs(apply_overrides({**config, **overrides}, []), "grpo"))
    callback = next(cb for cb in trainer.callback_handler.callbacks if hasattr(cb, "summary"))
    return callback.summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--grpo-steps", type=int, default=8)
    args = parser.parse_args(argv)

    run, qrels = make_data(args.queries, args.candidates)
    qids = list(qrels)
    t_build, evaluator = best_of(args.repeats, lambda: pytrec_eval.RelevanceEvaluator(qrels, MEASURES))
    t_pytrec, expected = best_of(args.repeats, lambda: evaluator.evaluate(run))
    t_dict, dict_values = best_of(args.repeats, lambda: rankrl_dicts(run, qrels))
    t_two, two_values = best_of(args.repeats, lambda: rankrl_dicts_two_calls(run, qrels))
    grades, ideal, n_relevant = array_inputs(run, qrels)
    t_array, array_values = best_of(
        args.repeats,
        lambda: (ndcg_from_grades(grades, ideal, K), recall_from_grades(grades, n_relevant, K)),
    )

    diffs = [max_diff(expected, qids, values) for values in (dict_values, two_values, array_values)]
    size = f"{args.queries} queries x {args.candidates} candidates"
    print(f"{size}, nDCG@{K} + Recall@{K}, best of {args.repeats}")
    report("pytrec_eval RelevanceEvaluator(...)", t_build)
    report("pytrec_eval evaluate(run)", t_pytrec)
    report("rankrl dicts: rank_runs + evaluate_batch", t_dict, diffs[0])
    report("rankrl dicts: rank_runs + ndcg_/recall_at_k_batch", t_two, diffs[1])
    report("rankrl arrays: ndcg_/recall_from_grades", t_array, diffs[2])
    print(f"dict form:  {t_pytrec / t_dict:7.2f}x pytrec_eval evaluate (target >= 1x); ", end="")
    print(f"{(t_build + t_pytrec) / t_dict:.2f}x construction + evaluate; ", end="")
    print(f"{t_pytrec / t_two:.2f}x with the two single-metric calls")
    print(f"array form: {t_pytrec / t_array:7.2f}x pytrec_eval evaluate (target >= 20x)")
    assert max(diffs) < 1e-9, "rankrl differs from pytrec_eval"
    if args.grpo_steps:
        with tempfile.TemporaryDirectory() as workdir:
            summary = grpo_reward_share(args.grpo_steps, Path(workdir))
        share = summary["throughput_summary/reward_share"]
        step = summary["throughput_summary/total_step_time_s"] / args.grpo_steps
        print(f"GRPO step (tiny model, G = 8): {step:.2f} s, reward share {share:.2%} (target <= 2%)")


if __name__ == "__main__":
    main()
