"""A toy ranking corpus with graded relevance, for the demo, tests and ``--smoke`` runs.

Queries are 1–2 made-up words; each candidate passage is 1–2 words; a passage's relevance is the number of
query words it contains (0, 1 or 2). The words are pseudo-words built from syllables so a tokenizer trained
on them gives each its own token. Held-out queries are word sets never used for training, so evaluation
measures whether the model learnt to match query words to passage words rather than memorising queries.

:func:`overlooking_teacher` gives rows the answer of an imperfect teacher (``teacher_order``, the SFT
target) that leaves out partial matches, while the graded labels stay exact: SFT then learns the teacher's
gaps, and RL on a reward computed from the labels has something to learn beyond it.
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


def overlooking_teacher(rows: list[dict], miss_rate: float, seed: int = 0) -> list[dict]:
    """``rows`` with the ``teacher_order`` of a teacher that overlooks partial matches.

    The teacher ranks the relevant passages by grade (prompt order within a grade) and leaves out each
    grade-1 passage with probability ``miss_rate``, never its top pick, the way an LLM teacher misses passages
    that match only part of the query. Labels are unchanged, so a reward computed from them still credits
    every relevant passage.
    """
    if not 0.0 <= miss_rate <= 1.0:
        raise ValueError(f"teacher miss rate is {miss_rate}; expected a probability in [0, 1]")
    rng = random.Random(seed + 100)
    taught = []
    for row in rows:
        position = {candidate["doc_id"]: i for i, candidate in enumerate(row["candidates"])}
        ranked = sorted(row["labels"], key=lambda label: (-label["relevance"], position[label["doc_id"]]))
        kept = ranked[:1] + [
            label for label in ranked[1:] if label["relevance"] > 1 or rng.random() >= miss_rate
        ]
        taught.append({**row, "teacher_order": [label["doc_id"] for label in kept]})
    return taught


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
