"""Evaluation of rerankers as the papers report it: ``rankrl eval`` and the strategies behind it.

- :mod:`~trainers.evaluation.backend`: the generation interface (:class:`HFBackend`; vLLM can plug in).
- :mod:`~trainers.evaluation.driver`: strategies as per-query coroutines, generation batched across queries.
- Strategies: :mod:`~trainers.evaluation.listwise` (sliding window), :mod:`~trainers.evaluation.setwise`
  (heapsort), :mod:`~trainers.evaluation.pointwise` (ERank, Retro*), :mod:`~trainers.evaluation.groupwise`
  (GroupRank), and :mod:`~trainers.evaluation.fusion` with first-stage scores.
- :mod:`~trainers.evaluation.runner`: inputs, cache, outputs, metrics, significance and manifest.
- Test-time scaling for reasoners (``rankrl tts``): rules and budget forcing in
  :mod:`~trainers.evaluation.tts`, scorers in :mod:`~trainers.evaluation.tts_score`, the sweep, table and
  plot in :mod:`~trainers.evaluation.tts_report`, config and command in :mod:`~trainers.evaluation.tts_run`.
"""

from trainers.evaluation.backend import Generation, GenerationBackend, HFBackend, Sampling
from trainers.evaluation.config import EvalConfig, build_strategy
from trainers.evaluation.driver import QueryResult, Ranked, Request, rerank_rows
from trainers.evaluation.runner import run_eval

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
