"""``rankrl eval``: rerank a first-stage run with a strategy and write run, results, metrics and manifest.

Steps: read and check the inputs (:mod:`~evaluation.inputs`); rerank the queries
``queries_per_batch`` at a time with generation batched across them (:mod:`~tasks.strategy`),
appending each finished query to the cache (:mod:`~evaluation.cache`); fuse with first-stage scores
if asked and, with ``keep_tail``, append the first-stage candidates below ``depth`` in their first-stage order
(:mod:`~evaluation.fusion`; the cache holds only the reranked part, so ``keep_tail`` can change on
resume); write the outputs (:mod:`~evaluation.outputs`); score the written run, the first stage and
an optional comparison run over every qrels query; test the written run against the comparison with paired
tests; rerun from shuffled / reversed initial orders when asked; and write ``manifest.json`` with what is
needed to reproduce and judge the numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from core.generation import GenerationBackend, HFBackend
from core.sources import read_run_file
from evaluation.cache import QueryCache, fingerprint
from evaluation.config import ENGINES, EvalConfig, build_strategy
from evaluation.fusion import append_tail, fuse
from evaluation.inputs import EvalInputs, load_inputs
from evaluation.outputs import (
    format_table,
    mean_metrics,
    per_query_metrics,
    write_per_query_csv,
    write_rankllm_json,
    write_trec_run,
)
from evaluation.significance import paired_tests, spread
from tasks.strategy import QueryResult, Strategy, rerank_rows

logger = logging.getLogger("rankrl")

PACKAGES = ("rankrl", "torch", "transformers", "trl", "numpy", "scipy", "vllm")
ORDERS: dict[str, Callable[[list, random.Random], list]] = {
    "shuffled": lambda candidates, rng: rng.sample(candidates, len(candidates)),
    "reversed": lambda candidates, rng: candidates[::-1],
}


def load_backend(
    model: str | None, *, dtype: str = "auto", batch_size: int = 64, seed: int = 0, engine: str = "auto"
) -> GenerationBackend:
    """A generation backend on the checkpoint ``model``: vLLM for ``engine`` ``vllm``, or ``auto`` when vLLM
    is installed and ``model`` is a full checkpoint; else transformers (on the GPU when there is one), which
    merges an adapter folder onto its base as it loads. vLLM takes full checkpoints only: ``engine: vllm`` on
    an adapter folder is a one-line error pointing to ``rankrl export``."""
    import importlib.util

    import torch
    from trl import ModelConfig

    from core.models import is_adapter, load_model, load_tokenizer, resolve_model_path

    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    has_vllm = importlib.util.find_spec("vllm") is not None
    if engine == "vllm" and not has_vllm:
        raise ValueError(
            "engine 'vllm' needs vllm installed (pip install 'rankrl[vllm]'); 'auto' falls back to HF"
        )
    path = resolve_model_path(model)
    if engine == "vllm" and is_adapter(path):
        raise ValueError(
            f"engine 'vllm': {path} is a LoRA adapter folder and vLLM loads full checkpoints; merge it with "
            f"`rankrl export {path} MERGED_DIR` and evaluate MERGED_DIR, or use engine=hf"
        )
    if has_vllm and engine == "auto" and is_adapter(path):
        logger.warning(
            "%s is an adapter folder: evaluating with transformers (`rankrl export` it for vLLM)", path
        )
    elif has_vllm and engine != "hf":
        from evaluation.vllm_backend import VLLMBackend

        return VLLMBackend(path, dtype=dtype, seed=seed)
    model_args = ModelConfig(model_name_or_path=model, dtype=dtype)
    hf_model, tokenizer = load_model(model_args), load_tokenizer(model_args)
    if torch.cuda.is_available():
        hf_model.to("cuda")
    return HFBackend(hf_model, tokenizer, batch_size, seed)


def rerank_cached(
    rows: Sequence[Mapping[str, Any]],
    strategy: Strategy,
    backend: GenerationBackend,
    cache: QueryCache,
    size: int,
) -> list[QueryResult]:
    """Rerank the rows the cache lacks, ``size`` queries at a time; results in row order."""
    todo = [row for row in rows if row["query_id"] not in cache.done]
    for start in range(0, len(todo), max(size, 1)):
        rerank_rows(todo[start : start + size], strategy, backend, on_result=cache.append)
    return [cache.done[row["query_id"]] for row in rows]


def _engine(config: EvalConfig) -> str:
    """``config.engine``, with ``auto`` meaning transformers for a strategy that scores answer tokens (one
    forward pass, which the vLLM backend does not offer)."""
    if config.engine == "auto" and build_strategy(config).sampling.score_tokens:
        return "hf"
    return config.engine


def run_eval(config: EvalConfig, backend: GenerationBackend | None = None) -> dict[str, Any]:
    """Run one evaluation end to end; returns the manifest (also written to ``output_dir``)."""
    inputs = load_inputs(config)
    strategy = build_strategy(config)
    backend = backend or load_backend(
        config.model,
        dtype=config.dtype,
        batch_size=config.batch_size,
        seed=config.seed,
        engine=_engine(config),
    )
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = _rerank_variant("original", inputs, strategy, backend, config)
    wall = time.perf_counter() - start
    rankings, scores = _final(results, inputs, config)
    write_trec_run(out / "run.trec", rankings, config.run_tag)
    write_rankllm_json(out / "results.json", inputs.full_rows(), rankings, scores)
    manifest = _manifest(config, inputs, strategy, backend, results, wall)
    if inputs.qrels:
        manifest.update(_score(config, inputs, results, rankings, strategy, backend))
    Path(out / "manifest.json").write_text(_json(manifest), encoding="utf-8")
    table = _table(manifest)
    (out / "metrics.txt").write_text(table + "\n", encoding="utf-8")
    print(table)
    return manifest


def _rerank_variant(
    variant: str, inputs: EvalInputs, strategy: Strategy, backend: GenerationBackend, config: EvalConfig
) -> list[QueryResult]:
    rows = inputs.rows
    if variant != "original":
        rng = random.Random(config.seed)
        rows = [{**row, "candidates": ORDERS[variant](list(row["candidates"]), rng)} for row in rows]
    key = fingerprint(
        {
            "model": config.model,
            "strategy": strategy.describe(),
            "sampling": asdict(strategy.sampling),
            "depth": config.depth,
            "checksums": inputs.checksums,
            "skipped": dict(inputs.skipped),
            "seed": config.seed,
            "variant": variant,
        }
    )
    name = "cache.jsonl" if variant == "original" else f"cache-{variant}.jsonl"
    cache = QueryCache(Path(config.output_dir) / name, key, config.resume)
    return rerank_cached(rows, strategy, backend, cache, config.queries_per_batch)


def _final(
    results: Sequence[QueryResult], inputs: EvalInputs, config: EvalConfig
) -> tuple[dict[str, list[str]], dict[str, list[float] | None]]:
    """Each query's final ranking and scores: fused with the first stage when ``config.fusion`` says so, then
    followed by its first-stage tail when ``config.keep_tail`` does."""
    rankings, scores = {}, {}
    for result in results:
        doc_ids, doc_scores = result.doc_ids, result.scores
        if config.fusion != "none":
            first = inputs.first_stage.get(result.query_id, {})
            doc_ids, doc_scores = fuse(doc_ids, doc_scores, first, config.fusion, config.fusion_weight)
        if config.keep_tail:
            tail = [candidate["doc_id"] for candidate in inputs.tails.get(result.query_id, [])]
            doc_ids, doc_scores = append_tail(doc_ids, doc_scores, tail)
        rankings[result.query_id], scores[result.query_id] = doc_ids, doc_scores
    return rankings, scores


def _score(
    config: EvalConfig,
    inputs: EvalInputs,
    results: Sequence[QueryResult],
    rankings: Mapping[str, Sequence[str]],
    strategy: Strategy,
    backend: GenerationBackend,
) -> dict[str, Any]:
    """Metrics of the reranked run and its baselines, paired tests and robustness reruns."""
    qrels, measures, threshold = inputs.qrels, config.measures, config.relevance_threshold
    first_stage = {row["query_id"]: [c["doc_id"] for c in row["candidates"]] for row in inputs.full_rows()}
    runs = {"first_stage": first_stage, "reranked": rankings}
    if config.compare_run:
        runs["compare"] = read_run_file(config.compare_run)
    per_query = {name: per_query_metrics(run, qrels, measures, threshold) for name, run in runs.items()}
    cost = {result.query_id: result.to_json() for result in results}
    write_per_query_csv(Path(config.output_dir) / "per_query.csv", per_query["reranked"], cost)
    main = "ndcg_cut_10" if "ndcg_cut_10" in measures else measures[0]
    baseline = "compare" if config.compare_run else "first_stage"
    significance = paired_tests(
        [v[main] for v in per_query[baseline].values()],
        [v[main] for v in per_query["reranked"].values()],
        config.permutations,
        config.seed,
    )
    report = {
        "metrics": {name: mean_metrics(values, measures) for name, values in per_query.items()},
        "significance": {"measure": main, "a": baseline, "b": "reranked", **significance},
    }
    if config.robustness:
        report["robustness"] = _robustness(config, inputs, strategy, backend, main, report["metrics"])
    return report


def _robustness(
    config: EvalConfig,
    inputs: EvalInputs,
    strategy: Strategy,
    backend: GenerationBackend,
    measure: str,
    metrics: Mapping[str, Mapping[str, float]],
) -> dict[str, Any]:
    """``measure`` of reruns from other initial orders, each run file written as ``run-{order}.trec``."""
    values = {"original": metrics["reranked"][measure]}
    for variant in config.robustness:
        rankings, _ = _final(_rerank_variant(variant, inputs, strategy, backend, config), inputs, config)
        write_trec_run(Path(config.output_dir) / f"run-{variant}.trec", rankings, config.run_tag)
        per_query = per_query_metrics(rankings, inputs.qrels, [measure], config.relevance_threshold)
        values[variant] = mean_metrics(per_query, [measure])[measure]
    return {"measure": measure, "runs": values, **spread(values)}


def _manifest(
    config: EvalConfig,
    inputs: EvalInputs,
    strategy: Strategy,
    backend: GenerationBackend,
    results: Sequence[QueryResult],
    wall: float,
) -> dict[str, Any]:
    n = max(len(results), 1)
    generation_s = sum(r.latency_s for r in results)
    tokens = sum(r.generated_tokens for r in results)
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": config.model,
        "backend": backend.name,
        "strategy": strategy.describe(),
        "sampling": asdict(strategy.sampling),
        "config": asdict(config),
        "inputs": {
            "first_stage": config.requests or config.run,
            "checksums": inputs.checksums,
            "queries": len(inputs.rows),
            "qrels_queries": len(inputs.qrels or {}),
        },
        "ranking": {
            "depth": config.depth,
            "keep_tail": config.keep_tail,
            "tail_documents": sum(len(tail) for tail in inputs.tails.values()) if config.keep_tail else 0,
        },
        "skipped": dict(inputs.skipped),
        "parse": {
            "fallbacks": sum(r.fallbacks for r in results),
            "repairs": sum(r.repairs for r in results),
            "queries_with_fallbacks": sum(r.fallbacks > 0 for r in results),
        },
        "cost": {
            "prompts": sum(r.prompts for r in results),
            "generated_tokens": tokens,
            "generated_tokens_per_query": tokens / n,
            "latency_s_per_query": generation_s / n,
            "queries_per_s": len(results) / generation_s if generation_s > 0 else None,
            "wall_s_this_session": wall,
        },
        "versions": package_versions(),
    }


def package_versions() -> dict[str, str]:
    """Python and the versions of the packages that decide a run's numbers, for manifests."""
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _table(manifest: Mapping[str, Any]) -> str:
    cost, parse = manifest["cost"], manifest["parse"]
    qps = cost["queries_per_s"]
    extra = {
        "queries": str(manifest["inputs"]["queries"]),
        "depth": _depth_line(manifest["ranking"]),
        "tokens/query": f"{cost['generated_tokens_per_query']:.1f}",
        "latency/query": f"{cost['latency_s_per_query']:.3f} s",
        "queries/s": f"{qps:.2f}" if qps else "-",
        "fallbacks": f"{parse['fallbacks']} (repairs {parse['repairs']})",
        "skipped": ", ".join(f"{k} {v}" for k, v in manifest["skipped"].items()) or "0",
    }
    if "significance" in manifest:
        sig = manifest["significance"]
        p_values = f"p_t {sig['p_ttest']:.3g}, p_rand {sig['p_randomization']:.3g}"
        extra["vs " + sig["a"]] = f"Δ{sig['measure']} {sig['delta']:+.4f}, {p_values}"
    if "robustness" in manifest:
        rob = manifest["robustness"]
        extra["robustness"] = (
            f"{rob['measure']} mean {rob['mean']:.4f} ± {rob['std']:.4f} over {list(rob['runs'])}"
        )
    return format_table(manifest.get("metrics", {}), extra)


def _depth_line(ranking: Mapping[str, Any]) -> str:
    depth, tail = ranking["depth"], ranking["tail_documents"]
    if ranking["keep_tail"]:
        return f"top {depth} reranked, then the first-stage tail ({tail} documents)"
    return f"top {depth} reranked, no first-stage tail (keep_tail false)"


def _json(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)


def eval_command(args: argparse.Namespace) -> None:
    """``rankrl eval [CONFIG.yaml] [key=value ...] [--skip-missing]``."""
    from core.recipe import apply_overrides, build_configs, read_yaml

    items = list(args.overrides)
    source = items.pop(0) if items and "=" not in items[0] else None
    config = apply_overrides(read_yaml(source) if source else {}, items)
    if args.skip_missing:
        config["skip_missing"] = True
    (eval_config,) = build_configs(config, (EvalConfig,), source or "rankrl eval")
    run_eval(eval_config)
