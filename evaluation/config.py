"""The ``rankrl eval`` configuration: one flat dataclass, read from YAML and ``key=value`` overrides the way
recipes are (:func:`core.recipe.build_configs`), and the strategy it describes.

Sampling fields left at None take the strategy's paper default (listwise: greedy, 1024 new tokens; setwise:
greedy, 2048; pointwise ERank: greedy with log-probabilities, 4096; Retro*: temperature 0.6, top-k 40, 4096;
groupwise: temperature 0.3, top-p 0.8, 8000).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from core.recipe import described
from evaluation.fusion import METHODS
from tasks.group_scoring import Groupwise
from tasks.heapsort import SetwiseHeapsort
from tasks.listwise import ListwiseTask
from tasks.pointwise_scoring import Pointwise, parse_stages
from tasks.sliding_window import SlidingWindow
from tasks.strategy import Strategy

STRATEGIES = ("listwise", "setwise", "pointwise", "groupwise")
ENGINES = ("auto", "vllm", "hf")
DEFAULT_MEASURES = [
    "ndcg_cut_1", "ndcg_cut_5", "ndcg_cut_10", "recall_10", "recall_20", "recall_100", "recip_rank", "map",
]  # fmt: skip


@dataclass
class EvalConfig:
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
    strategy: str = described(f"Ranking strategy: one of {', '.join(STRATEGIES)}.", "listwise")
    window: int = described("Listwise: passages per window.", 20)
    step: int = described("Listwise: ranks the window moves up between prompts.", 10)
    passes: int = described("Listwise: back-to-front sweeps.", 1)
    parse: str = described(
        "Listwise: 'lenient' repairs an answer, 'strict' keeps the window order on a bad one.", "lenient"
    )
    num_child: int = described("Setwise: children per heap node (documents per prompt = num_child + 1).", 19)
    top_k: int = described("Setwise: documents extracted by heapsort before stopping.", 10)
    scorer: str = described(
        "Pointwise: 'erank' (s * p(s), 0-10) or 'retro' (mean of sampled 0-100 scores).", "erank"
    )
    stages: str = described(
        "Pointwise: depth@samples stages, e.g. '100@1,30@16' (Retro* multi-pass).", "100@1"
    )
    instruction: str = described(
        "Pointwise: relevance definition in the prompt ('' = the paper's default).", ""
    )
    group_size: int = described("Groupwise: documents per prompt.", 20)
    repeats: int = described("Groupwise: reshuffled repeats whose scores are averaged.", 1)
    shuffle_groups: bool = described(
        "Groupwise: random grouping (GroupRank) instead of first-stage order.", True
    )
    max_passage_words: int = described("Passages are cut to this many words in every prompt.", 300)
    max_new_tokens: int | None = described("Generation budget per completion (None: the strategy's default).")
    temperature: float | None = described("Sampling temperature, 0 = greedy (None: the strategy's default).")
    top_p: float | None = described("Nucleus sampling p (None: the strategy's default).")
    sample_top_k: int | None = described("Top-k sampling filter, 0 = off (None: the strategy's default).")
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
    seed: int = described("Seed of sampling, group shuffles and the randomization test.", 0)
    dtype: str = described("Model dtype: auto, bfloat16, float16 or float32.", "auto")
    engine: str = described(
        "Generation engine: auto (vLLM when installed, else transformers), vllm or hf.", "auto"
    )
    run_tag: str = described("Tag written in the last column of the TREC run.", "rankrl")

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy {self.strategy!r}; expected one of {', '.join(STRATEGIES)}")
        if self.fusion not in METHODS:
            raise ValueError(f"fusion {self.fusion!r}; expected one of {', '.join(METHODS)}")
        if bad := [name for name in self.robustness if name not in ("shuffled", "reversed")]:
            raise ValueError(f"robustness {bad[0]!r}; expected 'shuffled' or 'reversed'")
        parse_stages(self.stages)

    def sampling_overrides(self) -> dict[str, Any]:
        """The sampling fields set explicitly, under :class:`Sampling`'s names."""
        given = {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.sample_top_k,
        }
        return {name: value for name, value in given.items() if value is not None}


def build_strategy(config: EvalConfig) -> Strategy:
    """The strategy ``config`` describes, with its paper's sampling defaults unless overridden."""
    words = config.max_passage_words
    if config.strategy == "listwise":
        task = ListwiseTask(max_passage_words=words)
        strategy: Any = SlidingWindow(config.window, config.step, config.passes, config.parse, task=task)
    elif config.strategy == "setwise":
        strategy = SetwiseHeapsort(config.num_child, config.top_k, words)
    elif config.strategy == "pointwise":
        stages = tuple(parse_stages(config.stages))
        strategy = Pointwise.paper_defaults(
            config.scorer, stages=stages, instruction=config.instruction, max_passage_words=words
        )
    else:
        strategy = Groupwise(config.group_size, config.repeats, config.shuffle_groups, config.seed, words)
    return replace(strategy, sampling=replace(strategy.sampling, **config.sampling_overrides()))


def load_strategy(path: str) -> Strategy:
    """The strategy of the ``rankrl eval`` config file at ``path`` (its other keys are ignored here)."""
    from core.recipe import build_configs, read_yaml

    (config,) = build_configs(read_yaml(path), (EvalConfig,), path)
    return build_strategy(config)
