"""Dense candidate mining: exact cosine top-k over a sentence-transformers model's normalized embeddings.

:class:`DenseIndex` has :class:`data_synth.mining.BM25Index`'s ``search``, so
:func:`data_synth.mining.mine_candidates` mines with either. The model is a local folder or a Hub id already
in the Hugging Face cache (nothing is downloaded unless ``local_files_only=False``); sentence-transformers is
the optional extra ``rankrl[dense]``. Passages (``title + " " + text``) and queries are encoded in batches
with optional prompts (E5 wants ``"query: "`` / ``"passage: "``), and L2-normalized, so a dot product is the
cosine.

The search is exact (an ANN index such as faiss is approximate, and one more dependency): a chunk of
queries times the passage matrix with numpy. It is hand-written rather than sentence-transformers'
``util.semantic_search`` because that picks with ``torch.topk``, which, like ``np.argpartition``, orders
ties arbitrarily: here passages are held in doc-id order and equal scores rank by doc id, so a mined
dataset depends neither on the corpus file's order nor on the chunking.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.data import DataError
from core.models import ModelLoadError
from core.sources import Corpus, doc_text

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

SCORE_CHUNK = 1 << 25  # query x passage scores held at once (128 MiB of float32)
INSTALL_HINT = "dense mining needs sentence-transformers: pip install 'rankrl[dense]'"
NOT_FOUND = "no such folder, nor a Hub id in the Hugging Face cache (dense_local_only: false downloads it)"


@dataclass(frozen=True)
class DenseConfig:
    """The encoder and how texts go into it."""

    model: str
    batch_size: int = 64
    query_prompt: str = ""
    passage_prompt: str = ""
    local_files_only: bool = True


def load_encoder(model: str, local_files_only: bool = True) -> SentenceTransformer:
    """The sentence-transformers model at ``model``; a one-line :class:`ModelLoadError` if it cannot load."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ModelLoadError(INSTALL_HINT) from None
    try:
        return SentenceTransformer(model, local_files_only=local_files_only)
    except (OSError, ValueError) as error:
        if local_files_only and not Path(model).expanduser().exists():
            reason = NOT_FOUND
        else:
            reason = str(error).splitlines()[0]
        raise ModelLoadError(f"dense_model {model!r}: {reason}") from None


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest ``scores``, best first; equal scores in index order."""
    if k < len(scores):
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        candidates = np.flatnonzero(scores >= kth)  # every tie of the k-th score, not an arbitrary one
    else:
        candidates = np.arange(len(scores))
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order[:k]]


class DenseIndex:
    """Normalized passage embeddings in doc-id order; :meth:`search` returns ``{qid: [(doc_id, score)]}``."""

    def __init__(self, corpus: Corpus, config: DenseConfig) -> None:
        if not corpus:
            raise DataError("cannot index an empty corpus")
        self.config = config
        self.encoder = load_encoder(config.model, config.local_files_only)
        self.doc_ids = sorted(corpus)
        self.embeddings = self._encode([doc_text(corpus[d]) for d in self.doc_ids], config.passage_prompt)

    def _encode(self, texts: list[str], prompt: str) -> np.ndarray:
        vectors = self.encoder.encode(
            texts,
            prompt=prompt or None,
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.astype(np.float32, copy=False)

    def search(self, queries: Mapping[str, str], k: int = 100) -> dict[str, list[tuple[str, float]]]:
        """Top ``min(k, corpus size)`` documents per query by cosine, ties by doc id."""
        qids = list(queries)
        if not qids:
            return {}
        k = min(k, len(self.doc_ids))
        vectors = self._encode([queries[q] for q in qids], self.config.query_prompt)
        rows = max(1, SCORE_CHUNK // len(self.doc_ids))
        hits = {}
        for start in range(0, len(qids), rows):
            scores = vectors[start : start + rows] @ self.embeddings.T
            for qid, row in zip(qids[start : start + rows], scores, strict=True):
                hits[qid] = [(self.doc_ids[i], float(row[i])) for i in top_k(row, k)]
        return hits
