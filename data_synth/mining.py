"""Candidate mining: BM25 top-k with ``bm25s`` (optionally with labelled positives mixed in), or a run file.

BM25 settings follow Anserini's BEIR "flat" baseline: ``k1=0.9, b=0.4`` (Lucene's BM25 variant, bm25s'
``method="lucene"``), a document is ``title + " " + text``, text is lower-cased, split on ``\\w+`` (single
characters kept, as Lucene's StandardTokenizer keeps them) and Lucene's 33 English stopwords (bm25s ``"en"``)
are removed. Stemming: Porter via PyStemmer when that package is installed (what Anserini does), otherwise
:func:`s_stem`, Harman's (1991) S-stemmer, hand-written here because bm25s ships no stemmer and the project
does not depend on PyStemmer. On BEIR SciFact Porter gives nDCG@10 0.677 / R@100 0.929 and the S-stemmer
0.667 / 0.903, against Anserini's 0.6789 / 0.9253 (Lucene's tokenizer differs in the details).

For training data, ``positives=n`` makes sure up to ``n`` labelled positives of each query are among its
``k`` candidates: those the retriever missed replace the lowest-ranked unlabelled candidates at random
positions (seeded per query), so the rest of the list are hard negatives and a positive is not always last.
:func:`mine_candidates` takes any :class:`Retriever` (BM25 by default; the dense one is
:class:`data_synth.dense.DenseIndex`).
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import bm25s

from core.data import DataError
from core.sources import Corpus, Qrels, Queries, doc_text, ranking_row

TOKEN_PATTERN = r"(?u)\b\w+\b"
Stemmer = Callable[[list[str]], list[str]]


@dataclass(frozen=True)
class BM25Config:
    """BM25 parameters and tokenizer; the defaults are Anserini's BEIR flat baseline (k1=0.9, b=0.4)."""

    k1: float = 0.9
    b: float = 0.4
    stopwords: str | list[str] = "en"
    stemmer: str = "auto"  # "auto" (Porter if PyStemmer is installed, else "s"), "porter", "s" or "none"
    token_pattern: str = TOKEN_PATTERN


def s_stem(word: str) -> str:
    """Harman's S-stemmer: strip English plural endings (``-ies`` -> ``-y``, ``-es`` -> ``-e``, ``-s``)."""
    if len(word) > 3 and word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if len(word) > 2 and word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


def make_stemmer(name: str) -> tuple[str, Stemmer | None]:
    """``(resolved name, function over a word list)`` for a :class:`BM25Config` stemmer name."""
    if name == "auto":
        name = "porter" if importlib.util.find_spec("Stemmer") else "s"
    if name == "porter":
        import Stemmer  # PyStemmer, optional

        return name, Stemmer.Stemmer("porter").stemWords
    if name == "s":
        return name, lambda words: [s_stem(w) for w in words]
    if name == "none":
        return name, None
    raise ValueError(f"unknown stemmer {name!r}; expected auto, porter, s or none")


class Retriever(Protocol):
    """What :func:`mine_candidates` needs: the top ``k`` ``(doc_id, score)`` per query, best first."""

    def search(self, queries: Mapping[str, str], k: int = 100) -> dict[str, list[tuple[str, float]]]: ...


class BM25Index:
    """A bm25s index over a corpus; :meth:`search` returns ``{qid: [(doc_id, score), ...]}`` best first."""

    def __init__(self, corpus: Corpus, config: BM25Config | None = None) -> None:
        if not corpus:
            raise DataError("cannot index an empty corpus")
        self.config = config or BM25Config()
        self.stemmer_name, self._stemmer = make_stemmer(self.config.stemmer)
        self.doc_ids = list(corpus)
        self.model = bm25s.BM25(k1=self.config.k1, b=self.config.b, method="lucene")
        self.model.index(self._tokenize([doc_text(corpus[d]) for d in self.doc_ids]), show_progress=False)

    def _tokenize(self, texts: list[str]) -> bm25s.tokenization.Tokenized:
        return bm25s.tokenize(
            texts,
            lower=True,
            token_pattern=self.config.token_pattern,
            stopwords=self.config.stopwords,
            stemmer=self._stemmer,
            show_progress=False,
        )

    def search(self, queries: Mapping[str, str], k: int = 100) -> dict[str, list[tuple[str, float]]]:
        """Top ``min(k, corpus size)`` documents per query (queries with no known term score 0)."""
        qids = list(queries)
        if not qids:
            return {}
        k = min(k, len(self.doc_ids))
        tokens = self._tokenize([queries[q] for q in qids])
        indices, scores = self.model.retrieve(tokens, k=k, show_progress=False, n_threads=0)
        return {
            qid: [(self.doc_ids[i], float(s)) for i, s in zip(row, row_scores, strict=True)]
            for qid, row, row_scores in zip(qids, indices.tolist(), scores.tolist(), strict=True)
        }


def mix_positives(
    ranked: list[str], judged: Mapping[str, int], positives: int, rng: random.Random
) -> list[str]:
    """Make sure up to ``positives`` labelled positives are in ``ranked``, keeping its length."""
    relevant = sorted(d for d, grade in judged.items() if grade > 0)
    missing = [d for d in relevant if d not in ranked]
    wanted = max(0, min(positives, len(relevant)) - (len(relevant) - len(missing)))
    if not wanted:
        return list(ranked)
    added = rng.sample(missing, wanted)
    result = list(ranked)
    removable = [i for i, d in enumerate(result) if d not in judged]
    for doc_id in added:
        if removable:
            result.pop(removable.pop())
        result.insert(rng.randrange(len(result) + 1), doc_id)
        removable = [i for i, d in enumerate(result) if d not in judged]
    return result


def mine_candidates(
    corpus: Corpus,
    queries: Queries,
    k: int = 100,
    qrels: Qrels | None = None,
    positives: int = 0,
    seed: int = 0,
    index: Retriever | None = None,
    config: BM25Config | None = None,
) -> list[dict]:
    """Top-``k`` ranking rows per query from ``index``, labels from ``qrels`` for the candidates it contains.

    ``index`` defaults to a :class:`BM25Index` over ``corpus`` with ``config``; pass a prebuilt one (BM25 or
    dense) to mine several query sets over one corpus. ``positives=n`` (needs ``qrels``) mixes in up to ``n``
    labelled positives the retriever missed (see the module docstring); ``positives=0`` gives its plain
    candidates, as for evaluation.
    """
    if positives and qrels is None:
        raise ValueError("positives > 0 needs qrels")
    index = index or BM25Index(corpus, config)
    rows = []
    for qid, hits in index.search(queries, k).items():
        ranked = [d for d, _ in hits]
        if positives:
            ranked = mix_positives(ranked, qrels.get(qid, {}), positives, random.Random(f"{seed}:{qid}"))
        rows.append(ranking_row(qid, queries[qid], [(d, doc_text(corpus[d])) for d in ranked], qrels))
    return rows
