"""The ``rankrl eval`` configuration: one flat dataclass, read from YAML and ``key=value`` overrides the way
recipes are (:func:`trainers.configs.build_configs`), and the strategy it describes.

Sampling fields left at None take the strategy's paper default (listwise: greedy, 1024 new tokens; setwise:
greedy, 2048; pointwise ERank: greedy with log-probabilities, 4096; Retro*: temperature 0.6, top-k 40, 4096;
groupwise: temperature 0.3, top-p 0.8, 8000).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from trainers.evaluation.driver import Strategy
from trainers.evaluation.fusion import METHODS
from trainers.evaluation.groupwise import Groupwise
from trainers.evaluation.listwise import SlidingWindow
from trainers.evaluation.pointwise import Pointwise, parse_stages
from trainers.evaluation.setwise import SetwiseHeapsort
from trainers.tasks.listwise import ListwiseTask

STRATEGIES = ("listwise", "setwise", "pointwise", "groupwise")
DEFAULT_MEASURES = [
    "ndcg_cut_1", "ndcg_cut_5", "ndcg_cut_10", "recall_10", "recall_20", "recall_100", "recip_rank", "map",
]  # fmt: skip


def _help(text: str, default: Any = None, **kwargs: Any) -> Any:
    if "default_factory" in kwargs:
        return field(metadata={"help": text}, **kwargs)
    return field(default=default, metadata={"help": text})


@dataclass
class EvalConfig:
    """Everything one evaluation needs; every field is a YAML key and a ``key=value`` override."""

    model: str | None = _help("Checkpoint folder or Hub id of the reranker (any rankrl output).")
    output_dir: str = _help(
        "Where the run, results, metrics, manifest and cache are written.", "outputs/eval"
    )
    run: str | None = _help("First-stage TREC run 'qid Q0 docid rank score tag' (with topics and corpus).")
    topics: str | None = _help(
        "Topics: 'qid<TAB>text' TSV(.gz) or BEIR queries.jsonl; optional with a BEIR corpus folder."
    )
    corpus: str | None = _help(
        "Corpus: a BEIR folder (corpus, queries, qrels) or a corpus .jsonl(.gz) with _id/title/text."
    )
    qrels: str | None = _help("Qrels (TREC or BEIR TSV); without them no metrics are computed.")
    requests: str | None = _help(
        "rank_llm JSON requests with passage text, instead of run + topics + corpus."
    )
    depth: int = _help("Rerank the top DEPTH first-stage candidates of each query.", 100)
    strategy: str = _help(f"Ranking strategy: one of {', '.join(STRATEGIES)}.", "listwise")
    window: int = _help("Listwise: passages per window.", 20)
    step: int = _help("Listwise: ranks the window moves up between prompts.", 10)
    passes: int = _help("Listwise: back-to-front sweeps.", 1)
    parse: str = _help(
        "Listwise: 'lenient' repairs an answer, 'strict' keeps the window order on a bad one.", "lenient"
    )
    num_child: int = _help("Setwise: children per heap node (documents per prompt = num_child + 1).", 19)
    top_k: int = _help("Setwise: documents extracted by heapsort before stopping.", 10)
    scorer: str = _help(
        "Pointwise: 'erank' (s * p(s), 0-10) or 'retro' (mean of sampled 0-100 scores).", "erank"
    )
    stages: str = _help("Pointwise: depth@samples stages, e.g. '100@1,30@16' (Retro* multi-pass).", "100@1")
    instruction: str = _help("Pointwise: relevance definition in the prompt ('' = the paper's default).", "")
    group_size: int = _help("Groupwise: documents per prompt.", 20)
    repeats: int = _help("Groupwise: reshuffled repeats whose scores are averaged.", 1)
    shuffle_groups: bool = _help("Groupwise: random grouping (GroupRank) instead of first-stage order.", True)
    max_passage_words: int = _help("Passages are cut to this many words in every prompt.", 300)
    max_new_tokens: int | None = _help("Generation budget per completion (None: the strategy's default).")
    temperature: float | None = _help("Sampling temperature, 0 = greedy (None: the strategy's default).")
    top_p: float | None = _help("Nucleus sampling p (None: the strategy's default).")
    sample_top_k: int | None = _help("Top-k sampling filter, 0 = off (None: the strategy's default).")
    fusion: str = _help(f"Fuse with first-stage scores: one of {', '.join(METHODS)}.", "none")
    fusion_weight: float = _help(
        "Weight of the first-stage score in the fusion (Rank-R1 0.1, ERank 0.2).", 0.1
    )
    batch_size: int = _help("Prompts per generate call.", 64)
    queries_per_batch: int = _help(
        "Queries reranked together; the cache is written after each such batch.", 256
    )
    relevance_threshold: int = _help(
        "Grade counted relevant by binary measures (trec_eval -l; TREC DL: 2).", 1
    )
    measures: list[str] = _help(
        "pytrec_eval measure names to report.", default_factory=lambda: list(DEFAULT_MEASURES)
    )
    robustness: list[str] = _help(
        "Extra reruns from a 'shuffled' and/or 'reversed' first-stage order.", default_factory=list
    )
    compare_run: str | None = _help(
        "A TREC run compared with the reranked run by paired tests (default: the first stage)."
    )
    permutations: int = _help("Samples of the paired randomization test.", 10000)
    skip_missing: bool = _help(
        "Skip bad run lines / topics and count them in the manifest instead of failing.", False
    )
    resume: bool = _help("Reuse the per-query cache in output_dir from an interrupted run.", True)
    seed: int = _help("Seed of sampling, group shuffles and the randomization test.", 0)
    dtype: str = _help("Model dtype: auto, bfloat16, float16 or float32.", "auto")
    run_tag: str = _help("Tag written in the last column of the TREC run.", "rankrl")

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
