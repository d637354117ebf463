"""Append-only JSONL logs that a kill may cut short: the one write and read rule every rankrl cache follows.

Writing (:func:`append_records`, :func:`create_log`): each record is one JSON object and its newline; a batch
of records is written, flushed and ``os.fsync``-ed before the call returns, so a record the caller has been
told is written survives a kill of the process or a crash of the machine, and a kill can leave at most the
last line incomplete.

Reading (:func:`read_log`, :func:`load_log`): the records and the byte length of the intact part. A last line
without its newline, or one that is not a valid record, is the write a kill interrupted and lies outside that
length; :func:`load_log` cuts it off (durably), so the caller computes that record again and the next append
starts on a fresh line. An invalid line anywhere else means the file was edited or written by something else
and is a one-line :class:`core.data.DataError`.

Used by :class:`data_synth.cache.ResponseCache` and :class:`evaluation.cache.RecordCache`, which each keep
their own keying and header on top.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

from core.data import DataError

IsRecord = Callable[[dict[str, Any]], bool]


def append_records(handle: BinaryIO, records: Iterable[dict[str, Any]]) -> None:
    """Append ``records`` to the log open (binary, append mode) in ``handle``: write, flush, ``fsync``."""
    handle.write(b"".join(_line(record) for record in records))
    handle.flush()
    os.fsync(handle.fileno())


def create_log(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Start the log at ``path`` afresh (creating its folder) with ``records``, written durably."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        append_records(handle, records)


def load_log(path: str | Path, is_record: IsRecord) -> tuple[list[dict[str, Any]], bool]:
    """The records of the log at ``path`` and whether a torn last line was cut off (module docstring)."""
    path = Path(path)
    data = path.read_bytes()
    records, size = read_log(data, path, is_record)
    if size < len(data):
        with path.open("r+b") as handle:
            handle.truncate(size)
            handle.flush()
            os.fsync(handle.fileno())
    return records, size < len(data)


def read_log(data: bytes, path: str | Path, is_record: IsRecord) -> tuple[list[dict[str, Any]], int]:
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


def _line(record: dict[str, Any]) -> bytes:
    """One record as a UTF-8 JSON line with sorted keys (the same record always gives the same bytes)."""
    return (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def _record(raw: bytes, is_record: IsRecord) -> dict[str, Any] | None:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) and is_record(value) else None
