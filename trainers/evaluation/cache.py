"""Per-query cache of an evaluation: an append-only JSONL file, so a killed evaluation resumes.

Line 1 is ``{"fingerprint": ...}``, a hash of everything that determines a query's ranking (model, strategy
and its parameters, sampling, depth, input checksums, seed); every further line is one finished query
(:class:`trainers.evaluation.driver.QueryResult` as JSON), appended and flushed as soon as the query is done.
On resume, finished queries are taken from the cache and only the others are reranked, so greedy decoding
gives the same run file as an uninterrupted evaluation. A last line cut short by a kill is ignored; a cache
written under another fingerprint is an error (use a new ``output_dir`` or ``resume=false``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from trainers.data import DataError
from trainers.evaluation.driver import QueryResult


def fingerprint(parts: dict[str, Any]) -> str:
    """Stable hash of a JSON-serialisable description."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class QueryCache:
    """Finished queries of one evaluation (module docstring); ``done`` maps query id to its result."""

    def __init__(self, path: str | Path, key: str, resume: bool = True) -> None:
        self.path, self.key = Path(path), key
        self.done: dict[str, QueryResult] = {}
        if resume and self.path.is_file() and self.path.stat().st_size:
            self._load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"fingerprint": key}) + "\n", encoding="utf-8")

    def _load(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        header = _json_line(lines[0]) or {}
        if header.get("fingerprint") != self.key:
            raise DataError(
                f"{self.path}: cache of a different evaluation (model, strategy or inputs changed); "
                "use another output_dir or resume=false"
            )
        kept = lines[:1]
        for number, line in enumerate(lines[1:], start=2):
            record = _json_line(line)
            if record is None:
                if number == len(lines):
                    break  # the write a kill interrupted
                raise DataError(f"{self.path}:{number}: not a JSON cache record")
            self.done[record["query_id"]] = QueryResult(**record)
            kept.append(line)
        if len(kept) < len(lines) or not self.path.read_bytes().endswith(b"\n"):
            self.path.write_text("\n".join(kept) + "\n", encoding="utf-8")

    def append(self, result: QueryResult) -> None:
        """Record a finished query (flushed at once, so it survives a kill of this process)."""
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(result.to_json()) + "\n")
            handle.flush()
        self.done[result.query_id] = result


def _json_line(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
