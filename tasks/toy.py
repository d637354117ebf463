"""A toy ranking corpus with graded relevance, for the demo, tests and ``--smoke`` runs.

Queries are 1–2 made-up words; each candidate passage is 1–2 words; a passage's relevance is the number of
query words it contains (0, 1 or 2). The words are pseudo-words built from syllables so a tokenizer trained
on them gives each its own token. Held-out queries are word sets never used for training, so evaluation
measures whether the model learnt to match query words to passage words rather than memorising queries.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"]
_VOWELS = ["a", "e", "i", "o", "u"]


@dataclass(frozen=True)
class ToySpec:
    """Size and shape of the toy corpus."""

    num_words: int = 48
    min_candidates: int = 5
    max_candidates: int = 8
    max_relevant: int = 3
    heldout_fraction: float = 0.25


def toy_vocabulary(num_words: int, seed: int = 0) -> list[str]:
    """``num_words`` distinct two-syllable pseudo-words, deterministic for a seed."""
    syllables = [onset + vowel for onset, vowel in itertools.product(_ONSETS, _VOWELS)]
    words = [a + b for a, b in itertools.product(syllables, syllables) if a != b]
    return random.Random(seed).sample(words, num_words)


def split_queries(spec: ToySpec, seed: int = 0) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """All 1- and 2-word queries over the vocabulary, split into train and held-out query sets."""
    words = toy_vocabulary(spec.num_words, seed)
    queries = [(w,) for w in words] + list(itertools.combinations(words, 2))
    random.Random(seed + 1).shuffle(queries)
    num_heldout = int(len(queries) * spec.heldout_fraction)
    return queries[num_heldout:], queries[:num_heldout]


def _passage(rng: random.Random, query: tuple[str, ...], others: list[str], grade: int) -> list[str]:
    if grade == 2:
        words = list(query)
    elif grade == 1:
        words = [rng.choice(query)] + rng.sample(others, rng.randint(0, 1))
    else:
        words = rng.sample(others, rng.randint(1, 2))
    rng.shuffle(words)
    return words


def toy_example(
    rng: random.Random, query: tuple[str, ...], words: list[str], spec: ToySpec, qid: str
) -> dict:
    """One ranking row: 5–8 candidates of which 1–3 contain query words, in random order."""
    others = [w for w in words if w not in query]
    num_candidates = rng.randint(spec.min_candidates, spec.max_candidates)
    num_relevant = rng.randint(1, spec.max_relevant)
    top_grade = len(query)
    grades = [rng.randint(1, top_grade) for _ in range(num_relevant)]
    grades += [0] * (num_candidates - num_relevant)
    rng.shuffle(grades)
    candidates, labels = [], []
    for i, grade in enumerate(grades):
        doc_id = f"{qid}-d{i}"
        candidates.append({"doc_id": doc_id, "text": " ".join(_passage(rng, query, others, grade))})
        if grade:
            labels.append({"doc_id": doc_id, "relevance": grade})
    return {"query_id": qid, "query": " ".join(query), "candidates": candidates, "labels": labels}


def make_toy_splits(
    num_train: int, num_heldout: int, spec: ToySpec | None = None, seed: int = 0
) -> tuple[list[dict], list[dict]]:
    """Train rows over training queries and held-out rows over queries never seen in training."""
    spec = spec or ToySpec()
    words = toy_vocabulary(spec.num_words, seed)
    train_queries, heldout_queries = split_queries(spec, seed)
    rng = random.Random(seed + 2)

    def rows(queries: list[tuple[str, ...]], count: int, prefix: str) -> list[dict]:
        picks = [queries[i % len(queries)] for i in range(count)]
        rng.shuffle(picks)
        return [toy_example(rng, q, words, spec, f"{prefix}{i}") for i, q in enumerate(picks)]

    return rows(train_queries, num_train, "train-q"), rows(heldout_queries, num_heldout, "heldout-q")
