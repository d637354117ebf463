"""Evaluation of rerankers as the papers report it: ``rankrl eval`` and the strategies behind it.

- :mod:`~core.generation`: the generation interface (:class:`HFBackend`; vLLM can plug in).
- :mod:`~tasks.strategy`: strategies as per-query coroutines, generation batched across queries.
- Strategies: :mod:`~tasks.sliding_window` (sliding window), :mod:`~tasks.heapsort`
  (heapsort), :mod:`~tasks.pointwise_scoring` (ERank, Retro*), :mod:`~tasks.group_scoring`
  (GroupRank), and :mod:`~evaluation.fusion` with first-stage scores.
- :mod:`~evaluation.runner`: inputs, cache, outputs, metrics, significance and manifest.
- Test-time scaling for reasoners (``rankrl tts``): rules and budget forcing in
  :mod:`~evaluation.tts`, scorers in :mod:`~evaluation.tts_score`, the sweep, table and
  plot in :mod:`~evaluation.tts_report`, the config in :mod:`~evaluation.tts_config` and the
  command in :mod:`~evaluation.tts_run`.
"""

from core.generation import Generation, GenerationBackend, HFBackend, Sampling
from evaluation.config import EvalConfig, build_strategy
from evaluation.runner import run_eval
from tasks.strategy import QueryResult, Ranked, Request, rerank_rows

__all__ = [
    "EvalConfig",
    "Generation",
    "GenerationBackend",
    "HFBackend",
    "QueryResult",
    "Ranked",
    "Request",
    "Sampling",
    "build_strategy",
    "rerank_rows",
    "run_eval",
]
