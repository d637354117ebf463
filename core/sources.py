"""Readers for retrieval inputs: BEIR folders, TREC topics / qrels / runs and rank_llm request JSON.

Everything comes back as plain Python structures: a corpus ``{doc_id: {"title", "text"}}``, queries
``{qid: text}``, qrels ``{qid: {doc_id: grade}}``, a run ``{qid: [doc_id, ...]}`` best first, and ranking rows
in the schema of :mod:`core.data` (``query_id``, ``query``, ``candidates``, ``labels`` for judged
candidates only, empty ``teacher_order`` and ``reasoning``).

The readers are hand-written rather than taken from ``beir`` / ``ir_datasets`` / ``pytrec_eval`` because
those accept bad input silently (a repeated judgement keeps the last grade, a run may name unknown documents)
and pull heavy dependencies; here every problem is a one-line :class:`core.data.DataError` naming the file
and its 1-based line. Run ordering reuses :func:`core.trec.rank_by_score`, so a run read here ranks
exactly as trec_eval ranks it. Files ending in ``.gz`` are read through gzip.

Accepted shapes: corpus ``.jsonl(.gz)`` with ``_id``/``title``/``text``; queries ``.jsonl(.gz)`` with
``_id``/``text`` or a ``qid<TAB>text`` TSV(.gz); qrels as BEIR TSV (header ``query-id corpus-id score``) or
TREC ``qid iter docid grade``; runs as TREC ``qid Q0 docid rank score tag``.

A run line is checked in this order, the first problem naming its kind (:data:`RUN_PROBLEMS`):

- ``malformed_lines``: not 6 fields; ``bad_scores``: a score that is not a finite number;
- ``docs_missing_from_corpus``, ``topics_missing_text`` (not among the queries) and
  ``topics_missing_from_qrels``: checked only when the corpus, queries or qrels are given;
- ``duplicate_lines``: a second line for the same (query, document); the first one is kept.

Each problem is a one-line error naming the file and line unless the caller passes a ``skipped`` counter
(``rankrl eval``'s ``skip_missing``): the line is then dropped and counted under its kind. An empty run, or
one left empty after skipping, is always an error.
"""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from core.data import DataError
from core.trec import rank_by_score

Corpus = dict[str, dict[str, str]]
Queries = dict[str, str]
Qrels = dict[str, dict[str, int]]
Run = dict[str, list[str]]
RunScores = dict[str, dict[str, float]]

RUN_PROBLEMS = (
    "malformed_lines",
    "bad_scores",
    "docs_missing_from_corpus",
    "topics_missing_text",
    "topics_missing_from_qrels",
    "duplicate_lines",
)


def _lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(1-based line number, stripped line)`` for every non-blank line of a text or ``.gz`` file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield number, line.rstrip("\n\r")


def _json_object(line: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: not JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _id(value: Any, where: str, field: str) -> str:
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        return str(value)
    raise DataError(f"{where}: {field} is missing or empty")


def read_corpus(path: str | Path) -> Corpus:
    """Read a BEIR ``corpus.jsonl(.gz)`` into ``{doc_id: {"title": str, "text": str}}``."""
    corpus: Corpus = {}
    for number, line in _lines(path):
        where = f"{path}:{number}"
        row = _json_object(line, where)
        doc_id = _id(row.get("_id"), where, "_id")
        if doc_id in corpus:
            raise DataError(f"{where}: duplicate document id {doc_id!r}")
        title, text = row.get("title") or "", row.get("text") or ""
        if not isinstance(title, str) or not isinstance(text, str):
            raise DataError(f"{where}: title and text must be strings")
        corpus[doc_id] = {"title": title, "text": text}
    if not corpus:
        raise DataError(f"{path}: empty corpus")
    return corpus


def read_queries(path: str | Path) -> Queries:
    """Read queries from BEIR ``queries.jsonl(.gz)`` or a ``qid<TAB>text`` topics TSV(.gz)."""
    is_json = ".jsonl" in Path(path).suffixes or ".json" in Path(path).suffixes
    queries: Queries = {}
    for number, line in _lines(path):
        where = f"{path}:{number}"
        if is_json:
            row = _json_object(line, where)
            qid, text = _id(row.get("_id"), where, "_id"), row.get("text")
        else:
            qid, _, text = line.partition("\t")
            qid = _id(qid.strip(), where, "query id")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: query {qid!r} has no text")
        if qid in queries:
            raise DataError(f"{where}: duplicate query id {qid!r}")
        queries[qid] = text.strip()
    if not queries:
        raise DataError(f"{path}: no queries")
    return queries


def _grade(value: str, where: str) -> int:
    try:
        number = float(value)
    except ValueError:
        raise DataError(f"{where}: relevance {value!r} is not a number") from None
    if not number.is_integer():
        raise DataError(f"{where}: relevance {value!r} is not an integer")
    return int(number)


def _qrels_fields(line: str, number: int) -> list[str] | None:
    """``[qid, docid, grade]`` of one BEIR-TSV or TREC qrels line; ``None`` for a BEIR header line."""
    fields = line.split("\t") if "\t" in line else line.split()
    if number == 1 and fields[:2] == ["query-id", "corpus-id"]:
        return None
    if len(fields) == 4:
        return [fields[0], fields[2], fields[3]]
    return fields if len(fields) == 3 else []


def read_qrels_file(
    path: str | Path, corpus: Mapping[str, Any] | None = None, queries: Mapping[str, str] | None = None
) -> Qrels:
    """Read BEIR TSV or TREC qrels; with ``corpus`` / ``queries``, unknown ids are errors."""
    qrels: Qrels = {}
    for number, line in _lines(path):
        where = f"{path}:{number}"
        fields = _qrels_fields(line, number)
        if fields is None:
            continue
        if not fields:
            raise DataError(f"{where}: expected 'qid docid grade' (BEIR) or 'qid iter docid grade' (TREC)")
        qid, doc_id, grade = fields[0], fields[1], _grade(fields[2], where)
        if corpus is not None and doc_id not in corpus:
            raise DataError(f"{where}: document {doc_id!r} is not in the corpus")
        if queries is not None and qid not in queries:
            raise DataError(f"{where}: query {qid!r} is not among the queries")
        if doc_id in qrels.get(qid, {}):
            raise DataError(f"{where}: duplicate judgement of ({qid!r}, {doc_id!r})")
        qrels.setdefault(qid, {})[doc_id] = grade
    if not qrels:
        raise DataError(f"{path}: no judgements")
    return qrels


def read_run_scores(
    path: str | Path,
    corpus: Mapping[str, Any] | None = None,
    qrels: Mapping[str, Any] | None = None,
    queries: Mapping[str, str] | None = None,
    skipped: Counter | None = None,
) -> RunScores:
    """Read a TREC run into ``{qid: {doc_id: score}}``, checking every line (see the module docstring).

    With ``skipped``, a bad line is dropped and counted there under its kind instead of raising.
    """
    scores: RunScores = {}
    for number, line in _lines(path):
        fields = line.split()
        problem = _run_problem(fields, scores, corpus, qrels, queries)
        if problem is None:
            scores.setdefault(fields[0], {})[fields[2]] = float(fields[4])
        elif skipped is not None:
            skipped[problem[0]] += 1
        else:
            raise DataError(f"{path}:{number}: {problem[1]}")
    if not scores:
        raise DataError(f"{path}: empty run" + (" after skipping bad lines" if skipped else ""))
    return scores


def _run_problem(
    fields: list[str],
    scores: RunScores,
    corpus: Mapping[str, Any] | None,
    qrels: Mapping[str, Any] | None,
    queries: Mapping[str, str] | None,
) -> tuple[str, str] | None:
    """``(kind, message)`` of the first problem of one run line, or None for a good line."""
    if len(fields) != 6:
        return "malformed_lines", f"expected 6 fields 'qid Q0 docid rank score tag', got {len(fields)}"
    qid, _, doc_id, _, score, _ = fields
    try:
        if not math.isfinite(float(score)):
            return "bad_scores", f"score {score!r} is not a finite number"
    except ValueError:
        return "bad_scores", f"score {score!r} is not a number"
    if corpus is not None and doc_id not in corpus:
        return "docs_missing_from_corpus", f"document {doc_id!r} is not in the corpus"
    if queries is not None and qid not in queries:
        return "topics_missing_text", f"topic {qid!r} is not among the topics"
    if qrels is not None and qid not in qrels:
        return "topics_missing_from_qrels", f"topic {qid!r} is not in the qrels"
    if doc_id in scores.get(qid, {}):
        return "duplicate_lines", f"duplicate line for ({qid!r}, {doc_id!r})"
    return None


def read_run_file(
    path: str | Path,
    corpus: Mapping[str, Any] | None = None,
    qrels: Mapping[str, Any] | None = None,
    queries: Mapping[str, str] | None = None,
) -> Run:
    """Read a TREC run into ``{qid: [doc_id, ...]}`` in trec_eval order (score desc, then doc id desc)."""
    return {qid: rank_by_score(s) for qid, s in read_run_scores(path, corpus, qrels, queries).items()}


def doc_text(doc: Mapping[str, str]) -> str:
    """Title and text joined by a space, as BEIR and Anserini index a document."""
    return " ".join(part for part in (doc.get("title", ""), doc.get("text", "")) if part)


def ranking_row(qid: str, query: str, ranked: list[tuple[str, str]], qrels: Qrels | None) -> dict:
    """A ranking row from ``[(doc_id, text), ...]``; labels are the judged candidates only."""
    judged = (qrels or {}).get(qid, {})
    return {
        "query_id": qid,
        "query": query,
        "candidates": [{"doc_id": d, "text": t} for d, t in ranked],
        "labels": [{"doc_id": d, "relevance": judged[d]} for d, _ in ranked if d in judged],
        "teacher_order": [],
        "reasoning": "",
    }


def rows_from_run(
    run: Run, queries: Queries, corpus: Corpus | None = None, qrels: Qrels | None = None, depth: int = 100
) -> list[dict]:
    """Ranking rows for every run topic, top ``depth`` documents; text is empty without a corpus."""
    rows = []
    for qid, ranked in run.items():
        if qid not in queries:
            raise DataError(f"run topic {qid!r} is not among the queries")
        texts = [(d, doc_text(corpus[d]) if corpus else "") for d in ranked[:depth]]
        rows.append(ranking_row(qid, queries[qid], texts, qrels))
    return rows


def read_beir(folder: str | Path, split: str = "test") -> tuple[Corpus, Queries, Qrels]:
    """Read a BEIR-style folder: ``corpus.jsonl(.gz)``, queries and ``qrels/{split}.tsv`` or a TREC qrels.

    Queries come from ``queries.jsonl(.gz)`` or, failing that, a ``topics*.tsv(.gz)``; qrels from
    ``qrels/{split}.tsv`` or, failing that, a ``qrels*.txt``. Qrels naming unknown ids are errors.
    """
    folder = Path(folder)
    corpus = read_corpus(_find(folder, ["corpus.jsonl", "corpus.jsonl.gz"]))
    queries = read_queries(_find(folder, ["queries.jsonl", "queries.jsonl.gz", "topics*.tsv*"]))
    qrels = read_qrels_file(_find(folder, [f"qrels/{split}.tsv", "qrels*.txt"]), corpus, queries)
    return corpus, queries, qrels


def _find(folder: Path, patterns: list[str]) -> Path:
    for pattern in patterns:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    raise DataError(f"{folder}: none of {', '.join(patterns)} found")


def read_trec(
    topics: str | Path, qrels: str | Path, run: str | Path, corpus: Corpus | None = None, depth: int = 100
) -> list[dict]:
    """Ranking rows from TREC topics, qrels and a run (candidate text from ``corpus`` when given)."""
    queries = read_queries(topics)
    judged = read_qrels_file(qrels, queries=queries)
    return rows_from_run(read_run_file(run, corpus, judged, queries), queries, corpus, judged, depth)


def _hit(hit: Any, where: str) -> tuple[str, str, str]:
    """``(qid, docid, content)`` of one rank_llm hit, checking its fields."""
    if not isinstance(hit, dict):
        raise DataError(f"{where}: expected an object")
    for key in ("content", "qid", "docid"):
        if hit.get(key) is None:
            raise DataError(f"{where}: missing {key!r}")
    score = hit.get("score", 0.0)
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise DataError(f"{where}: score {score!r} is not a number")
    return str(hit["qid"]), str(hit["docid"]), str(hit["content"])


def _request_row(request: Any, where: str, qrels: Qrels | None) -> dict:
    if not isinstance(request, dict) or not isinstance(request.get("query"), str) or not request["query"]:
        raise DataError(f"{where}: expected an object with a non-empty 'query'")
    hits = request.get("hits")
    if not isinstance(hits, list) or not hits:
        raise DataError(f"{where}: 'hits' is missing or empty")
    parsed = [_hit(hit, f"{where}.hits[{i}]") for i, hit in enumerate(hits)]
    qid, seen = parsed[0][0], set()
    for i, (hit_qid, doc_id, _) in enumerate(parsed):
        if hit_qid != qid:
            raise DataError(f"{where}.hits[{i}]: qid {hit_qid!r} differs from the first hit's {qid!r}")
        if doc_id in seen:
            raise DataError(f"{where}.hits[{i}]: duplicate docid {doc_id!r}")
        seen.add(doc_id)
    if qrels is not None and qid not in qrels:
        raise DataError(f"{where}: topic {qid!r} is not in the qrels")
    return ranking_row(qid, request["query"], [(d, text) for _, d, text in parsed], qrels)


def read_rankllm_requests(path: str | Path, qrels: Qrels | None = None) -> list[dict]:
    """Ranking rows from a rank_llm JSON list of ``{"query", "hits": [{content, qid, docid, rank, score}]}``.

    Hits keep their order in the file (rank_llm writes them best first). Errors name the file and the
    0-based request / hit index, since a JSON array has no useful line numbers.
    """
    try:
        requests = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: cannot read JSON ({error})") from None
    if not isinstance(requests, list) or not requests:
        raise DataError(f"{path}: expected a non-empty JSON list of requests")
    rows = [_request_row(request, f"{path}: [{i}]", qrels) for i, request in enumerate(requests)]
    ids = [row["query_id"] for row in rows]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: a query id appears in more than one request")
    return rows
