"""Per-item cache of a long evaluation: an append-only JSONL file, so a killed run resumes.

Line 1 is ``{"fingerprint": ...}``, a hash of everything that determines the results (model, strategy or
sampling settings, input checksums, seed); every further line is one finished item, appended durably
(flushed and ``fsync``-ed, :func:`core.jsonl_log.append_records`) as soon as it is done. On resume, finished
items are taken from the cache and only the others are computed, so a resumed run writes what an
uninterrupted one writes. A last line cut short by a kill is dropped (:func:`core.jsonl_log.load_log`); a
cache written under another fingerprint is an error (use a new ``output_dir`` or ``resume=false``).

:class:`RecordCache` keeps plain JSON records keyed by their ``"key"`` (``rankrl tts``'s samples per problem);
:class:`QueryCache` keeps ``rankrl eval``'s finished queries (:class:`tasks.strategy.QueryResult`,
keyed by ``query_id``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from core.data import DataError
from core.jsonl_log import append_records, create_log, load_log
from tasks.strategy import QueryResult


def fingerprint(parts: Any) -> str:
    """Stable hash of a JSON-serialisable description."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class RecordCache:
    """Finished items of one run (module docstring); ``done`` maps an item's ``id_field`` to the item."""

    id_field = "key"

    def __init__(self, path: str | Path, key: str, resume: bool = True) -> None:
        self.path, self.key = Path(path), key
        self.done: dict[str, Any] = {}
        if resume and self.path.is_file() and self.path.stat().st_size:
            self._load()
        else:
            create_log(self.path, [{"fingerprint": key}])

    def decode(self, record: dict[str, Any]) -> Any:
        """The item a cached JSON record stands for."""
        return record

    def encode(self, item: Any) -> dict[str, Any]:
        """The JSON record of an item."""
        return item

    def _load(self) -> None:
        records, _ = load_log(self.path, lambda record: True)
        if not records or records[0].get("fingerprint") != self.key:
            raise DataError(
                f"{self.path}: cache of a different evaluation (model, settings or inputs changed); "
                "use another output_dir or resume=false"
            )
        self.done = {record[self.id_field]: self.decode(record) for record in records[1:]}

    def append(self, item: Any) -> None:
        """Record a finished item durably (flushed and ``fsync``-ed, so it survives a kill or a crash)."""
        record = self.encode(item)
        with self.path.open("ab") as handle:
            append_records(handle, [record])
        self.done[record[self.id_field]] = item


class QueryCache(RecordCache):
    """Finished queries of one ``rankrl eval`` run; ``done`` maps query id to its :class:`QueryResult`."""

    id_field = "query_id"

    def decode(self, record: dict[str, Any]) -> QueryResult:
        return QueryResult(**record)

    def encode(self, item: QueryResult) -> dict[str, Any]:
        return item.to_json()
