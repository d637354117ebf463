"""An append-only JSONL cache of teacher responses, written before a response is used, safe against kill -9.

Every response is one JSON line keyed by ``(example id, teacher id, prompt hash, sample index)``; it is
appended by :func:`core.jsonl_log.append_records` (written, flushed and ``fsync``-ed) before the pipeline
looks at the response, so nothing paid for is lost. On open, :func:`core.jsonl_log.load_log` reads the lines
back: a write cut short by a crash is cut off and its request simply made again; any other bad line is a
one-line :class:`core.data.DataError`. A lock (``fcntl.flock``) keeps two runs from appending to one cache at
once.

Hand-written: ``diskcache`` / ``sqlite3`` would also survive crashes, but a JSONL file is what a user can
read, grep, copy between machines and append to from anywhere, and the guarantees needed here are small.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from core.data import DataError
from core.jsonl_log import append_records, load_log

RECORD_FIELDS = ("key", "example_id", "teacher_id", "prompt_hash", "sample_index", "text")


def prompt_hash(messages: list[dict[str, str]]) -> str:
    """A short, stable hash of chat messages (role and content, in order)."""
    canonical = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def cache_key(example_id: str, teacher_id: str, prompt_digest: str, sample_index: int) -> str:
    """The cache key of one response: all four parts, joined so that none can be confused with another."""
    return json.dumps([example_id, teacher_id, prompt_digest, sample_index], ensure_ascii=False)


class ResponseCache:
    """Read existing responses from ``path`` and append new ones durably; use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = {}
        self.torn_lines = 0
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a+b")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise DataError(f"{self.path}: another synth run is using this cache") from None
        self._load()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def append(self, record: dict[str, Any]) -> None:
        """Write one response durably (flush + fsync) and remember it; a repeated key is ignored.

        Thread-safe: teachers call this from worker threads."""
        with self._lock:
            if record["key"] in self.records:
                return
            append_records(self._file, [record])
            self.records[record["key"]] = record

    def _load(self) -> None:
        records, torn = load_log(self.path, lambda record: all(f in record for f in RECORD_FIELDS))
        for record in records:
            self.records.setdefault(record["key"], record)
        self.torn_lines = int(torn)
