"""The synthesis recipe: one flat YAML mapping onto :class:`SynthConfig`, every field with its ``help``.

Recipes are read with the training recipes' helpers (:mod:`trainers.configs`): YAML 1.2 booleans,
``key=value`` overrides, and a one-line :class:`trainers.configs.RecipeError` for an unknown key (with a
"did you mean") or a value of the wrong type, before any data is read or teacher called.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from data_synth.tasks import TASKS, TaskOptions
from trainers.configs import apply_overrides, build_configs, read_yaml

TEACHERS = ("openai", "hf")
INPUTS = ("beir", "trec_run", "rankllm", "dataset", "toy_queries")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class SynthConfig:
    """Inputs, task, teacher, filters and outputs of one synthesis run."""

    task: str = field(default="listwise", metadata=_help(f"Synthesis task: one of {', '.join(TASKS)}."))
    output_dir: str = field(
        default="outputs/synth", metadata=_help("Folder for sft/, rl/ (Parquet + card) and the cache.")
    )
    cache_path: str | None = field(
        default=None, metadata=_help("Append-only response cache (default: OUTPUT_DIR/cache.jsonl).")
    )
    beir: str | None = field(default=None, metadata=_help("BEIR folder (corpus, queries, qrels) to mine."))
    beir_split: str = field(default="train", metadata=_help("qrels split of the BEIR folder."))
    trec_topics: str | None = field(default=None, metadata=_help("TREC topics file (with trec_run)."))
    trec_qrels: str | None = field(default=None, metadata=_help("TREC qrels file (with trec_run)."))
    trec_run: str | None = field(default=None, metadata=_help("TREC run giving the candidates per topic."))
    corpus: str | None = field(default=None, metadata=_help("Corpus .jsonl for trec_run passage text."))
    rankllm: str | None = field(default=None, metadata=_help("rank_llm request JSON with candidates."))
    dataset: str | None = field(
        default=None,
        metadata=_help("Ranking (or, for math, reasoning) .jsonl/.parquet file, saved folder or Hub id."),
    )
    dataset_split: str = field(default="train", metadata=_help("Split of a dataset folder or Hub id."))
    toy_queries: int = field(default=0, metadata=_help("Generate N toy ranking queries (offline demo)."))
    max_queries: int | None = field(default=None, metadata=_help("Use only the first N queries / problems."))
    mine_k: int = field(default=20, metadata=_help("BM25 candidates per query when mining a BEIR folder."))
    mine_positives: int = field(
        default=1, metadata=_help("Labelled positives mixed into each mined candidate list (0: plain BM25).")
    )
    decontaminate_topics: str | None = field(
        default=None,
        metadata=_help("Evaluation topics (queries file); training queries sharing n-grams drop."),
    )
    decontaminate_n: int = field(default=13, metadata=_help("n of the decontamination word n-grams."))
    list_size: int = field(default=20, metadata=_help("Passages per listwise prompt / groupwise pool."))
    group_size: int = field(default=10, metadata=_help("Passages per groupwise prompt."))
    positives_per_query: int = field(default=1, metadata=_help("Positives per query (setwise, pointwise)."))
    negatives_per_query: int = field(
        default=19, metadata=_help("Hardest unlabelled candidates per query (setwise, pointwise).")
    )
    consistency_alpha: float = field(
        default=0.4, metadata=_help("Listwise: keep a query if nDCG@10 of teacher order vs labels >= alpha.")
    )
    max_completion_tokens: int | None = field(
        default=None, metadata=_help("Samples longer than this many tokens count as invalid (ERank: 2048).")
    )
    use_system_prompt: bool = field(
        default=True, metadata=_help("Listwise: send ReasonRank's system prompt.")
    )
    relevance_definition: str | None = field(
        default=None,
        metadata=_help("Pointwise instruction / rubric relevance definition (default: paper's)."),
    )
    query_type: str = field(default="query", metadata=_help("Rubric prompt: what a query is."))
    doc_type: str = field(default="document", metadata=_help("Rubric prompt: what a document is."))
    teacher_suffix: str = field(
        default="", metadata=_help("Text appended to the teacher's last user turn only, not to the dataset.")
    )
    teacher: str = field(
        default="openai", metadata=_help("Teacher kind: 'openai' (endpoint) or 'hf' (local).")
    )
    model: str = field(
        default="", metadata=_help("Endpoint model name, or a local model folder ('tiny': build one) for hf.")
    )
    base_url: str | None = field(default=None, metadata=_help("OpenAI-compatible base URL, e.g. .../v1."))
    api_key_env: str | None = field(
        default="OPENAI_API_KEY", metadata=_help("Environment variable holding the API key (null: none).")
    )
    samples: int = field(default=1, metadata=_help("Teacher samples per prompt (ERank 3, Retro* 8)."))
    temperature: float = field(default=0.6, metadata=_help("Sampling temperature (0: greedy)."))
    top_p: float = field(default=0.95, metadata=_help("Nucleus sampling top_p."))
    max_tokens: int = field(default=4096, metadata=_help("Most tokens a teacher answer may have."))
    seed: int = field(default=0, metadata=_help("Seed of shuffles and of sample i's request (seed + i)."))
    concurrency: int = field(default=32, metadata=_help("Requests in flight at once (openai teacher)."))
    timeout_s: float = field(default=300.0, metadata=_help("Per-request timeout in seconds."))
    max_retries: int = field(
        default=6, metadata=_help("Retries of a request on 429 / 5xx / timeout / bad JSON.")
    )
    backoff_base_s: float = field(default=1.0, metadata=_help("First retry delay; doubles per retry."))
    backoff_max_s: float = field(default=60.0, metadata=_help("Longest retry delay."))
    token_budget: int = field(
        default=0, metadata=_help("Stop issuing requests after N tokens (0: no limit).")
    )
    batch_size: int = field(default=8, metadata=_help("Prompts per generate() call (hf teacher)."))
    price_prompt_per_1m: float = field(
        default=0.0, metadata=_help("Price per 1M prompt tokens (cost estimate).")
    )
    price_completion_per_1m: float = field(
        default=0.0, metadata=_help("Price per 1M completion tokens (cost estimate).")
    )
    show_prompts: int = field(default=2, metadata=_help("--dry-run prints this many rendered prompts."))

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"key 'task' is {self.task!r}; expected one of {', '.join(TASKS)}")
        if self.teacher not in TEACHERS:
            raise ValueError(f"key 'teacher' is {self.teacher!r}; expected one of {', '.join(TEACHERS)}")
        given = [name for name in INPUTS if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(
                f"set exactly one input of {', '.join(INPUTS)} (got {', '.join(given) or 'none'})"
            )
        if self.trec_run and not (self.trec_topics and self.trec_qrels):
            raise ValueError("key 'trec_run' needs 'trec_topics' and 'trec_qrels'")
        for name in ("samples", "concurrency", "max_tokens", "list_size", "group_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"key {name!r} must be >= 1, got {getattr(self, name)}")
        if not self.model:
            raise ValueError("key 'model' is not set (endpoint model name or local model folder)")

    @property
    def cache_file(self) -> Path:
        return Path(self.cache_path) if self.cache_path else Path(self.output_dir) / "cache.jsonl"

    def task_options(self) -> TaskOptions:
        """The fields the synthesis task reads."""
        names = TaskOptions.__dataclass_fields__
        return TaskOptions(**{name: getattr(self, name) for name in names})


def load_config(recipe: str | Path, overrides: Sequence[str] = ()) -> SynthConfig:
    """Read a synthesis recipe and ``key=value`` overrides; one-line RecipeError on any problem."""
    config = apply_overrides(read_yaml(recipe), overrides)
    (synth,) = build_configs(config, (SynthConfig,), str(recipe))
    return synth
