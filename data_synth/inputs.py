"""The rows a synthesis run starts from: read (and for BEIR, mined by BM25 or a dense model), trimmed and
decontaminated.

Each input kind goes through the project's readers (:mod:`core.sources`, :mod:`data_synth.mining`,
:func:`core.data.load_dataset_file`, :mod:`tasks.toy`), so bad input is the same one-line
:class:`core.data.DataError` everywhere. Besides the rows, :func:`load_rows` returns plain-text lines
describing the sources, for the dataset card.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.data import DataError, load_dataset_file
from core.sources import Corpus, read_beir, read_corpus, read_queries, read_rankllm_requests, read_trec
from data_synth.config import SynthConfig
from data_synth.filters import DecontaminationReport, decontaminate
from data_synth.mining import BM25Index, Retriever, mine_candidates
from tasks import Task


@dataclass
class Inputs:
    """Source rows, where they came from, and the decontamination report (None when not asked for)."""

    rows: list[dict]
    sources: list[str] = field(default_factory=list)
    decontamination: DecontaminationReport | None = None


def _retriever(config: SynthConfig, corpus: Corpus) -> tuple[Retriever, str]:
    """The index that mines the corpus, and its name and settings for the card."""
    if config.retriever == "bm25":
        return BM25Index(corpus), "BM25 (bm25s, k1=0.9, b=0.4)"
    from data_synth.dense import DenseConfig, DenseIndex  # torch and sentence-transformers: only when asked

    dense = DenseConfig(
        config.dense_model,
        config.dense_batch_size,
        config.query_prompt,
        config.passage_prompt,
        config.dense_local_only,
    )
    prompts = f"query prompt {config.query_prompt!r}, passage prompt {config.passage_prompt!r}"
    name = f"dense (sentence-transformers `{config.dense_model}`, cosine, {prompts})"
    return DenseIndex(corpus, dense), name


def _beir_rows(config: SynthConfig) -> tuple[list[dict], list[str]]:
    corpus, queries, qrels = read_beir(config.beir, config.beir_split)
    judged = [qid for qid in queries if qid in qrels][: config.max_queries]
    index, name = _retriever(config, corpus)
    rows = mine_candidates(
        corpus,
        {qid: queries[qid] for qid in judged},
        k=config.mine_k,
        qrels=qrels,
        positives=config.mine_positives,
        seed=config.seed,
        index=index,
    )
    mined = f"{name} top-{config.mine_k}, {config.mine_positives} positive(s) mixed in"
    return rows, [f"BEIR folder `{config.beir}` (split {config.beir_split}): {len(corpus)} passages", mined]


def _trec_rows(config: SynthConfig) -> tuple[list[dict], list[str]]:
    corpus = read_corpus(config.corpus) if config.corpus else None
    rows = read_trec(config.trec_topics, config.trec_qrels, config.trec_run, corpus, depth=config.mine_k)
    files = f"topics `{config.trec_topics}`, qrels `{config.trec_qrels}`, run `{config.trec_run}`"
    return rows, [f"TREC {files}, top {config.mine_k} per topic", f"corpus `{config.corpus}`"]


def _raw_rows(config: SynthConfig, task: Task) -> tuple[list[dict], list[str]]:
    kind = task.row_kind
    if kind == "reasoning" and not (config.dataset or config.toy_queries):
        raise DataError(
            f"task {task.name!r} reads reasoning problems from 'dataset' (a .jsonl with problem, answer)"
        )
    if config.beir:
        return _beir_rows(config)
    if config.trec_run:
        return _trec_rows(config)
    if config.rankllm:
        return read_rankllm_requests(config.rankllm), [f"rank_llm requests `{config.rankllm}`"]
    if config.dataset:
        rows = load_dataset_file(config.dataset, kind=kind, split=config.dataset_split).to_list()
        return rows, [f"{kind} dataset `{config.dataset}` (split {config.dataset_split})"]
    rows, _ = task.toy_splits(config.toy_queries, 0, seed=config.seed)
    return rows, [f"{config.toy_queries} toy {kind} rows of task {task.name} (seed {config.seed})"]


def load_rows(config: SynthConfig, task: Task) -> Inputs:
    """Read the recipe's input, keep the first ``max_queries`` rows and decontaminate if asked."""
    rows, sources = _raw_rows(config, task)
    rows = rows[: config.max_queries]
    if not rows:
        raise DataError("no input rows (empty source or max_queries: 0)")
    inputs = Inputs(rows, sources)
    if config.decontaminate_topics:
        text_field, id_field = ("problem", "id") if task.row_kind == "reasoning" else ("query", "query_id")
        topics = read_queries(config.decontaminate_topics)
        inputs.rows, inputs.decontamination = decontaminate(
            rows, topics, config.decontaminate_n, text_field, id_field
        )
        inputs.sources.append(
            f"decontaminated against `{config.decontaminate_topics}` ({len(topics)} topics)"
        )
    return inputs
