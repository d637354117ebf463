"""The synthesis recipe: one flat YAML mapping onto :class:`SynthConfig`, every field with its ``help``.

Recipes are read with the training recipes' helpers (:mod:`core.recipe`): YAML 1.2 booleans,
``key=value`` overrides, and a one-line :class:`core.recipe.RecipeError` for an unknown key (with a
"did you mean") or a value of the wrong type, before any data is read or teacher called. The recipe's
``task`` and ``task_args`` build the same task object training and evaluation build (:func:`tasks.get_task`):
its options (list and group sizes, positives and negatives per query, prompt options) are ``task_args``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.recipe import apply_overrides, build_configs, described, read_yaml
from tasks import TASKS, Task, get_task

TEACHERS = ("openai", "hf", "labels")
INPUTS = ("beir", "trec_run", "rankllm", "dataset", "toy_queries")
RETRIEVERS = ("bm25", "dense")
AT_LEAST_ONE = (
    "samples",
    "concurrency",
    "max_tokens",
    "batch_size",
    "dense_batch_size",
)


@dataclass
class SynthConfig:
    """Inputs, task, teacher, filters and outputs of one synthesis run."""

    task: str = described(f"Task (`rankrl tasks`): one of {', '.join(TASKS)}.", "listwise")
    task_args: dict[str, Any] = described(
        "Options of the task, e.g. {list_size: 20} (listwise) or {negatives_per_query: 19} (setwise); the "
        "same task_args as the training recipe's, so the teacher sees the student's prompt.",
        default_factory=dict,
    )
    output_dir: str = described(
        "Folder for train.parquet (the task's examples), its README.md card and the cache.", "outputs/synth"
    )
    cache_path: str | None = described("Append-only response cache (default: OUTPUT_DIR/cache.jsonl).")
    beir: str | None = described("BEIR folder (corpus, queries, qrels) to mine.")
    beir_split: str = described("qrels split of the BEIR folder.", "train")
    trec_topics: str | None = described("TREC topics file (with trec_run).")
    trec_qrels: str | None = described("TREC qrels file (with trec_run).")
    trec_run: str | None = described("TREC run giving the candidates per topic.")
    corpus: str | None = described("Corpus .jsonl for trec_run passage text.")
    rankllm: str | None = described("rank_llm request JSON with candidates.")
    dataset: str | None = described(
        "Ranking (or, for math, reasoning) .jsonl/.parquet file, saved folder or Hub id."
    )
    dataset_split: str = described("Split of a dataset folder or Hub id.", "train")
    toy_queries: int = described("Generate N toy rows of the task: queries or problems (offline demo).", 0)
    max_queries: int | None = described("Use only the first N queries / problems.")
    mine_k: int = described("Candidates per query when mining a BEIR folder (or read from trec_run).", 20)
    mine_positives: int = described(
        "Labelled positives mixed into each mined candidate list (0: the retriever's list as is).", 1
    )
    retriever: str = described("Mining retriever: 'bm25' (bm25s) or 'dense' (dense_model).", "bm25")
    dense_model: str | None = described(
        "sentence-transformers model folder or Hub id for retriever: dense (pip install 'rankrl[dense]')."
    )
    dense_local_only: bool = described(
        "Load dense_model from disk or the Hugging Face cache only (false: may download it).", True
    )
    dense_batch_size: int = described("Texts per encode batch of the dense retriever.", 64)
    query_prompt: str = described("Text put before each query for the dense model (E5: 'query: ').", "")
    passage_prompt: str = described("Text put before each passage for the dense model (E5: 'passage: ').", "")
    decontaminate_topics: str | None = described(
        "Evaluation topics (queries file); training queries sharing n-grams drop."
    )
    decontaminate_n: int = described("n of the decontamination word n-grams.", 13)
    consistency_alpha: float = described(
        "Listwise: keep a query if nDCG@10 of teacher order vs labels >= alpha.", 0.4
    )
    max_completion_tokens: int | None = described(
        "Samples longer than this many tokens count as invalid (ERank: 2048)."
    )
    teacher_suffix: str = described(
        "Text appended to the teacher's last user turn only, not to the dataset.", ""
    )
    teacher: str = described(
        "Teacher kind: 'openai' (endpoint), 'hf' (local model) or 'labels' (the task's label-derived "
        "target, no model: label-only data and --smoke runs).",
        "openai",
    )
    model: str = described("Endpoint model name, or a local model folder ('tiny': build one) for hf.", "")
    base_url: str | None = described("OpenAI-compatible base URL, e.g. .../v1.")
    api_key_env: str | None = described(
        "Environment variable holding the API key (null: none).", "OPENAI_API_KEY"
    )
    samples: int = described("Teacher samples per prompt (ERank 3, Retro* 8).", 1)
    temperature: float = described("Sampling temperature (0: greedy).", 0.6)
    top_p: float = described("Nucleus sampling top_p.", 0.95)
    max_tokens: int = described("Most tokens a teacher answer may have.", 4096)
    seed: int = described("Seed of shuffles and of sample i's request (seed + i).", 0)
    concurrency: int = described("Requests in flight at once (openai teacher).", 32)
    timeout_s: float = described("Per-request timeout in seconds.", 300.0)
    max_retries: int = described("Retries of a request on 429 / 5xx / timeout / bad JSON.", 6)
    backoff_base_s: float = described("First retry delay; doubles per retry.", 1.0)
    backoff_max_s: float = described("Longest retry delay.", 60.0)
    token_budget: int = described("Stop issuing requests after N tokens (0: no limit).", 0)
    batch_size: int = described("Prompts per generate() call (hf teacher).", 8)
    price_prompt_per_1m: float = described("Price per 1M prompt tokens (cost estimate).", 0.0)
    price_completion_per_1m: float = described("Price per 1M completion tokens (cost estimate).", 0.0)
    show_prompts: int = described("--dry-run prints this many rendered prompts.", 2)

    def __post_init__(self) -> None:
        self.task_object()  # an unknown task or task option is a one-line error before any work
        if self.teacher not in TEACHERS:
            raise ValueError(f"key 'teacher' is {self.teacher!r}; expected one of {', '.join(TEACHERS)}")
        given = [name for name in INPUTS if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(
                f"set exactly one input of {', '.join(INPUTS)} (got {', '.join(given) or 'none'})"
            )
        if self.trec_run and not (self.trec_topics and self.trec_qrels):
            raise ValueError("key 'trec_run' needs 'trec_topics' and 'trec_qrels'")
        self._check_retriever()
        for name in AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise ValueError(f"key {name!r} must be >= 1, got {getattr(self, name)}")
        if not self.model and self.teacher != "labels":
            raise ValueError("key 'model' is not set (endpoint model name or local model folder)")

    def _check_retriever(self) -> None:
        if self.retriever not in RETRIEVERS:
            raise ValueError(
                f"key 'retriever' is {self.retriever!r}; expected one of {', '.join(RETRIEVERS)}"
            )
        if self.retriever == "dense" and not self.dense_model:
            raise ValueError("key 'retriever: dense' needs 'dense_model' (a sentence-transformers model)")
        if self.retriever == "dense" and not self.beir:
            raise ValueError("key 'retriever: dense' mines a BEIR folder: set 'beir'")

    @property
    def cache_file(self) -> Path:
        return Path(self.cache_path) if self.cache_path else Path(self.output_dir) / "cache.jsonl"

    def task_object(self) -> Task:
        """The recipe's task built from ``task`` and ``task_args``."""
        return get_task(self.task, **self.task_args)


def load_config(recipe: str | Path, overrides: Sequence[str] = ()) -> SynthConfig:
    """Read a synthesis recipe and ``key=value`` overrides; one-line RecipeError on any problem."""
    config = apply_overrides(read_yaml(recipe), overrides)
    (synth,) = build_configs(config, (SynthConfig,), str(recipe))
    return synth
