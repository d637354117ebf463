"""Data model and loaders for ranking and reasoning examples.

A ranking example is one query with its first-stage candidates (``RANKING_FEATURES``):

- ``query_id`` (str), ``query`` (str): both non-empty.
- ``candidates``: list of ``{"doc_id": str, "text": str}`` in first-stage order; at least one, unique doc ids.
- ``labels``: list of ``{"doc_id": str, "relevance": int}``, graded relevance of judged candidates; every
  doc id must be a candidate, each at most once; candidates without a label count as relevance 0.
- ``teacher_order`` (optional): candidate doc ids, best first, possibly partial; empty means no teacher.
- ``reasoning`` (optional): teacher reasoning text for SFT; may be empty.
- ``teacher_scores`` (optional): a teacher's score of every candidate, aligned with ``candidates``.
- ``task``, ``example_id``, ``completion`` (optional): set on a task's examples (:mod:`tasks.base`): the
  task's name, the example's unique id and the teacher's whole answer (the SFT target when present).

One row of a ranking ``.jsonl`` file::

    {"query_id": "q1", "query": "how long do fleas live", "candidates": [{"doc_id": "d1", "text": "A flea
    can live up to a year."}, {"doc_id": "d2", "text": "Fleas are wingless insects."}], "labels": [{"doc_id":
    "d1", "relevance": 3}], "teacher_order": ["d1", "d2"], "reasoning": "d1 answers the question directly."}

A reasoning example (``REASONING_FEATURES``) has ``problem`` and ``answer`` (reference answer, both non-empty
strings) and optional ``solution`` (worked solution), ``id``, ``task``, ``example_id`` and ``completion``
strings.

``load_dataset_file`` reads a ``.jsonl`` / ``.json`` file (one object per line, or one JSON array), a
``.parquet`` file, a ``save_to_disk`` folder (``Dataset`` or ``DatasetDict``, picking ``split``), a folder of
parquet files, or a Hugging Face Hub dataset id. Every row is checked; a problem raises ``DataError`` with one
line naming the source, the 0-based row and the field. Valid rows are cast to the features: absent optional
fields become empty, integral float relevance becomes int, unknown columns are dropped with a logged warning,
and extra keys inside candidate and label objects are ignored.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict, Features, List, Value

logger = logging.getLogger(__name__)

RANKING_FEATURES = Features(
    {
        "query_id": Value("string"),
        "query": Value("string"),
        "candidates": List({"doc_id": Value("string"), "text": Value("string")}),
        "labels": List({"doc_id": Value("string"), "relevance": Value("int32")}),
        "teacher_order": List(Value("string")),
        "reasoning": Value("string"),
        "teacher_scores": List(Value("float64")),
        "task": Value("string"),
        "example_id": Value("string"),
        "completion": Value("string"),
    }
)
REASONING_FEATURES = Features(
    {
        name: Value("string")
        for name in ("problem", "answer", "solution", "id", "task", "example_id", "completion")
    }
)


class DataError(ValueError):
    """A dataset does not match its schema; the message is one line naming source, row and field."""


class _RowProblem(Exception):
    """``(field, problem)`` in one row; ``_normalize`` adds the source and row number."""


def _fail(field: str, value: Any, expected: str) -> NoReturn:
    shown = "missing" if value is None else f"{_short(value)} of type {type(value).__name__}"
    raise _RowProblem(field, f"is {shown} (expected {expected})")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _string(value: Any, field: str, empty_ok: bool = False) -> str:
    if isinstance(value, str) and (empty_ok or value):
        return value
    _fail(field, value, "a string" if empty_ok else "a non-empty string")


def _optional_string(value: Any, field: str) -> str:
    return "" if value is None else _string(value, field, empty_ok=True)


def _integer(value: Any, field: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31:
        return value
    _fail(field, value, "an integer")


def _number(value: Any, field: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    _fail(field, value, "a finite number")


def _list(value: Any, field: str, optional: bool = False) -> list:
    if value is None and optional:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    _fail(field, value, "a list")


def _records(value: Any, field: str, keys: dict[str, Callable[[Any, str], Any]]) -> list[dict]:
    """Check a list of objects, keeping only ``keys``, each checked by its function."""
    records = []
    for i, item in enumerate(_list(value, field)):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            _fail(where, item, f"an object with keys {', '.join(keys)}")
        records.append({key: check(item.get(key), f"{where}.{key}") for key, check in keys.items()})
    return records


def _unique_ids(field: str, doc_ids: Iterable[str], known: set[str] | None = None) -> set[str]:
    seen: set[str] = set()
    for doc_id in doc_ids:
        if doc_id in seen:
            raise _RowProblem(field, f"repeats doc id {_short(doc_id)}")
        if known is not None and doc_id not in known:
            raise _RowProblem(field, f"names doc id {_short(doc_id)} that is not among the candidates")
        seen.add(doc_id)
    return seen


_EXAMPLE_FIELDS = ("task", "example_id", "completion")
_CANDIDATE = {"doc_id": _string, "text": partial(_string, empty_ok=True)}
_LABEL = {"doc_id": _string, "relevance": _integer}


def _ranking_row(row: dict) -> dict:
    query_id = _string(row.get("query_id"), "query_id")
    query = _string(row.get("query"), "query")
    candidates = _records(row.get("candidates"), "candidates", _CANDIDATE)
    if not candidates:
        raise _RowProblem("candidates", "is empty (expected at least one passage)")
    known = _unique_ids("candidates", (c["doc_id"] for c in candidates))
    labels = _records(row.get("labels"), "labels", _LABEL)
    _unique_ids("labels", (label["doc_id"] for label in labels), known)
    order = _list(row.get("teacher_order"), "teacher_order", optional=True)
    teacher_order = [_string(doc_id, f"teacher_order[{i}]") for i, doc_id in enumerate(order)]
    _unique_ids("teacher_order", teacher_order, known)
    scores = _list(row.get("teacher_scores"), "teacher_scores", optional=True)
    if scores and len(scores) != len(candidates):
        raise _RowProblem("teacher_scores", f"has {len(scores)} scores for {len(candidates)} candidates")
    return {
        "query_id": query_id,
        "query": query,
        "candidates": candidates,
        "labels": labels,
        "teacher_order": teacher_order,
        "reasoning": _optional_string(row.get("reasoning"), "reasoning"),
        "teacher_scores": [_number(score, f"teacher_scores[{i}]") for i, score in enumerate(scores)],
        **{name: _optional_string(row.get(name), name) for name in _EXAMPLE_FIELDS},
    }


def _reasoning_row(row: dict) -> dict:
    optional = ("solution", "id", "task", "example_id", "completion")
    return {
        "problem": _string(row.get("problem"), "problem"),
        "answer": _string(row.get("answer"), "answer"),
        **{name: _optional_string(row.get(name), name) for name in optional},
    }


class _Kind(NamedTuple):
    features: Features
    required: tuple[str, ...]
    check_row: Callable[[dict], dict]


_KINDS = {
    "ranking": _Kind(RANKING_FEATURES, ("query_id", "query", "candidates", "labels"), _ranking_row),
    "reasoning": _Kind(REASONING_FEATURES, ("problem", "answer"), _reasoning_row),
}


def features_of(kind: str) -> Features:
    """The ``datasets`` features of the ``kind`` ("ranking" or "reasoning") schema."""
    return _kind(kind).features


def _kind(kind: str) -> _Kind:
    if kind not in _KINDS:
        raise ValueError(f"unknown dataset kind {kind!r} (expected one of: {', '.join(_KINDS)})")
    return _KINDS[kind]


def _normalize(rows: list, source: str, kind: _Kind) -> list[dict]:
    """Check every row and return the rows in the schema's shape, or raise a one-line ``DataError``."""
    if not rows:
        raise DataError(f"{source}: no rows (expected at least one example)")
    columns = dict.fromkeys(key for row in rows if isinstance(row, dict) for key in row)
    missing = [name for name in kind.required if name not in columns]
    if missing:
        expected = ", ".join(kind.required)
        raise DataError(f"{source}: missing column {missing[0]!r} (expected columns: {expected})")
    unknown = [name for name in columns if name not in kind.features]
    if unknown:
        logger.warning(
            "%s: ignoring unknown columns %s (known columns: %s)",
            source,
            ", ".join(unknown),
            ", ".join(kind.features),
        )
    clean = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{source} row {i}: is {_short(row)} (expected an object of fields)")
        try:
            clean.append(kind.check_row(row))
        except _RowProblem as problem:
            field, what = problem.args
            raise DataError(f"{source} row {i}: field {field!r} {what}") from None
    return clean


def validate_ranking_dataset(ds: Dataset, source: str) -> None:
    """Raise a one-line ``DataError`` naming source, row and field unless every row is a ranking example."""
    _normalize(ds.to_list(), source, _KINDS["ranking"])


def validate_reasoning_dataset(ds: Dataset, source: str) -> None:
    """Raise a one-line ``DataError`` naming source, row and field unless every row is a reasoning example."""
    _normalize(ds.to_list(), source, _KINDS["reasoning"])


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: invalid JSON ({err})") from None


def _read_json(path: Path) -> list:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return _parse_json(text, str(path))
    rows: list = []
    # Split on "\n" only: JSON escapes it inside strings, but not other line breaks such as U+2028.
    for line_number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            rows.append(_parse_json(line, f"{path} row {len(rows)} (line {line_number})"))
    return rows


_FILE_READERS: dict[str, Callable[[Path], list]] = {
    ".jsonl": _read_json,
    ".json": _read_json,
    ".parquet": lambda path: pq.read_table(path).to_pylist(),
}


def _file_reader(path: Path) -> Callable[[Path], list]:
    reader = _FILE_READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r} (expected .jsonl, .json or .parquet)")
    return reader


def _read_folder(folder: Path, split: str) -> list[tuple[str, list]]:
    """Rows of a ``save_to_disk`` folder or of the parquet files in ``folder``, with their source names."""
    saved_markers = (datasets.config.DATASETDICT_JSON_FILENAME, datasets.config.DATASET_STATE_JSON_FILENAME)
    if any((folder / marker).exists() for marker in saved_markers):
        saved = datasets.load_from_disk(str(folder))
        if not isinstance(saved, DatasetDict):
            return [(str(folder), saved.to_list())]
        if split not in saved:
            raise DataError(f"{folder}: no split {split!r} (available splits: {', '.join(saved)})")
        return [(str(folder / split), saved[split].to_list())]
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{folder}: folder holds neither a saved dataset nor .parquet files")
    in_split = [file for file in files if file.name.startswith(f"{split}-") or file.stem == split]
    return [(str(file), _file_reader(file)(file)) for file in in_split or files]


def _read_sources(path: str | Path, split: str) -> list[tuple[str, list]]:
    local = Path(path).expanduser()
    if local.is_file():
        return [(str(path), _file_reader(local)(local))]
    if local.is_dir():
        return _read_folder(local, split)
    name = str(path)
    if isinstance(path, Path) or name.startswith((".", "/", "~")) or local.suffix:
        raise FileNotFoundError(
            f"{name}: no such dataset file or folder (expected .jsonl, .parquet or a saved dataset folder)"
        )
    return [(name, datasets.load_dataset(name, split=split).to_list())]


def load_dataset_file(
    path: str | Path, kind: str = "ranking", split: str = "train", columns: Mapping[str, str] | None = None
) -> Dataset:
    """Load, check and cast a ranking or reasoning dataset from a local file, folder or Hub dataset id.

    A folder of parquet files uses the files named ``<split>-*.parquet`` or ``<split>.parquet`` when there are
    any, otherwise all of them, in name order. ``columns`` renames source columns to the schema's before the
    check (GSM8K: ``{"question": "problem"}``). Errors are ``DataError`` / ``FileNotFoundError``, one line.
    """
    spec, names = _kind(kind), dict(columns or {})
    renamed = [
        (source, [{names.get(k, k): v for k, v in r.items()} if isinstance(r, dict) else r for r in raw])
        for source, raw in _read_sources(path, split)
    ]
    rows = [row for source, raw in renamed for row in _normalize(raw, source, spec)]
    return Dataset.from_list(rows, features=spec.features)


def write_dataset(rows: list[dict], path: Path, kind: str = "ranking") -> None:
    """Check ``rows`` and write them as JSONL (``.jsonl`` / ``.json``) or Parquet (``.parquet``) by suffix."""
    spec = _kind(kind)
    path = Path(path)
    _file_reader(path)  # refuse an unsupported suffix before any work
    clean = _normalize(rows, str(path), spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        pq.write_table(pa.Table.from_pylist(clean, schema=spec.features.arrow_schema), path)
    else:
        lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in clean]
        path.write_text("".join(lines), encoding="utf-8")


def labels_to_qrels(labels: list[dict]) -> dict[str, int]:
    """Map each judged doc id to its relevance grade (unjudged candidates are 0 by convention)."""
    return {label["doc_id"]: int(label["relevance"]) for label in labels}
