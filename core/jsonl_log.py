"""Reading an append-only JSONL log that a kill may have cut short: the one rule every rankrl cache follows.

A writer appends one JSON object and its newline per line and flushes it, so a kill can leave at most the last
line incomplete. :func:`read_log` returns the records and the byte length of the intact part: a last line
without its newline, or one that is not a valid record, is the write a kill interrupted and lies outside that
length, so the caller truncates it and computes that record again; an invalid line anywhere else means the
file was edited or written by something else and is a one-line :class:`core.data.DataError`. Used by
:class:`data_synth.cache.ResponseCache` and :class:`evaluation.cache.RecordCache`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.data import DataError


def read_log(
    data: bytes, path: str | Path, is_record: Callable[[dict[str, Any]], bool]
) -> tuple[list[dict[str, Any]], int]:
    """The records in ``data`` (the file at ``path``) and the length of its intact part, in bytes."""
    records: list[dict[str, Any]] = []
    lines = data.split(b"\n")[:-1]  # complete lines; what follows the last newline is a torn write
    size = 0
    for number, raw in enumerate(lines, start=1):
        record = _record(raw, is_record)
        if record is None and number == len(lines):
            break
        if record is None:
            raise DataError(f"{path}:{number}: not a cache record (edited or corrupted file)")
        records.append(record)
        size += len(raw) + 1
    return records, size


def _record(raw: bytes, is_record: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) and is_record(value) else None
