"""The ``rankrl eval`` configuration: one flat dataclass, read from YAML and ``key=value`` overrides the way
recipes are (:func:`core.recipe.build_configs`), and the strategy it describes.

The ranking is the recipe task's (``task``, ``task_args``: the same object, so the same prompt, as training
and synthesis build) with the strategy options of :class:`tasks.strategy.StrategyOptions`, which
:class:`EvalConfig` extends. Sampling fields left at None take the task's paper default (listwise: greedy,
1024 new tokens; setwise: greedy, 2048; pointwise ERank: greedy with log-probabilities, 4096; rubric
Retro*: temperature 0.6, top-k 40, 4096; groupwise: temperature 0.3, top-p 0.8, 8000).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.recipe import described
from evaluation.fusion import METHODS
from tasks import TASKS, Task, get_task
from tasks.strategy import Strategy, StrategyOptions

ENGINES = ("auto", "vllm", "hf")
DEFAULT_MEASURES = [
    "ndcg_cut_1", "ndcg_cut_5", "ndcg_cut_10", "recall_10", "recall_20", "recall_100", "recip_rank", "map",
]  # fmt: skip


@dataclass
class EvalConfig(StrategyOptions):
    """Everything one evaluation needs; every field is a YAML key and a ``key=value`` override."""

    model: str | None = described("Checkpoint folder or Hub id of the reranker (any rankrl output).")
    output_dir: str = described(
        "Where the run, results, metrics, manifest and cache are written.", "outputs/eval"
    )
    run: str | None = described(
        "First-stage TREC run 'qid Q0 docid rank score tag' (with topics and corpus)."
    )
    topics: str | None = described(
        "Topics: 'qid<TAB>text' TSV(.gz) or BEIR queries.jsonl; optional with a BEIR corpus folder."
    )
    corpus: str | None = described(
        "Corpus: a BEIR folder (corpus, queries, qrels) or a corpus .jsonl(.gz) with _id/title/text."
    )
    qrels: str | None = described("Qrels (TREC or BEIR TSV); without them no metrics are computed.")
    requests: str | None = described(
        "rank_llm JSON requests with passage text, instead of run + topics + corpus."
    )
    depth: int = described("Rerank the top DEPTH first-stage candidates of each query.", 100)
    keep_tail: bool = described(
        "Write the first-stage candidates below DEPTH after the reranked ones, in first-stage order, and "
        "score that run (false: only the reranked top DEPTH).",
        True,
    )
    task: str = described(
        f"Task whose strategy ranks (`rankrl tasks`): one of {', '.join(TASKS)}; the training recipe's.",
        "listwise",
    )
    task_args: dict[str, Any] = described(
        "Options of the task, the training recipe's task_args (e.g. {max_passage_words: 300}).",
        default_factory=dict,
    )
    fusion: str = described(f"Fuse with first-stage scores: one of {', '.join(METHODS)}.", "none")
    fusion_weight: float = described(
        "Weight of the first-stage score in the fusion (Rank-R1 0.1, ERank 0.2).", 0.1
    )
    batch_size: int = described("Prompts per generate call.", 64)
    queries_per_batch: int = described(
        "Queries reranked together; the cache is written after each such batch.", 256
    )
    relevance_threshold: int = described(
        "Grade counted relevant by binary measures (trec_eval -l; TREC DL: 2).", 1
    )
    measures: list[str] = described(
        "pytrec_eval measure names to report.", default_factory=lambda: list(DEFAULT_MEASURES)
    )
    robustness: list[str] = described(
        "Extra reruns from a 'shuffled' and/or 'reversed' first-stage order.", default_factory=list
    )
    compare_run: str | None = described(
        "A TREC run compared with the reranked run by paired tests (default: the first stage)."
    )
    permutations: int = described("Samples of the paired randomization test.", 10000)
    skip_missing: bool = described(
        "Skip bad run lines / topics and count them in the manifest instead of failing.", False
    )
    resume: bool = described("Reuse the per-query cache in output_dir from an interrupted run.", True)
    dtype: str = described("Model dtype: auto, bfloat16, float16 or float32.", "auto")
    engine: str = described(
        "Generation engine: auto (vLLM when installed and model is a full checkpoint, else "
        "transformers), vllm or hf.",
        "auto",
    )
    run_tag: str = described("Tag written in the last column of the TREC run.", "rankrl")

    def __post_init__(self) -> None:
        if self.fusion not in METHODS:
            raise ValueError(f"fusion {self.fusion!r}; expected one of {', '.join(METHODS)}")
        if bad := [name for name in self.robustness if name not in ("shuffled", "reversed")]:
            raise ValueError(f"robustness {bad[0]!r}; expected 'shuffled' or 'reversed'")
        if self.task_object().strategy(self) is None:
            raise ValueError(f"task {self.task!r} ranks nothing: evaluate it with `rankrl tts`")

    def task_object(self) -> Task:
        """The task built from ``task`` and ``task_args`` (one-line ValueError on unknown ones)."""
        return get_task(self.task, **self.task_args)


def build_strategy(config: EvalConfig) -> Strategy:
    """The strategy of ``config``'s task with ``config``'s options and the task's sampling defaults."""
    return config.task_object().strategy(config)
