"""The sweep's append-only ledger: one JSON line per event, fsync'd, so a killed sweeper loses nothing.

Events: ``header`` (first line: config fingerprint, budget, grid), ``launched``, ``finished`` (status, objective,
spend), ``stopped`` (reason). Reading tolerates a truncated last line (the sweeper died mid-write) and reports it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["Ledger"]


class Ledger:
    """Append and read events of ``<sweep.dir>/.greenai/ledger.jsonl``.

    Reading is incremental: :meth:`events` keeps its offset, so each call reads only lines appended since the last
    one and a long sweep never re-parses its history.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._events: list[dict[str, Any]] = []
        self._offset = 0
        self.corrupt_lines: list[int] = []
        self.truncated_tail = False

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event (with a timestamp) and fsync it."""
        record = {"event": event, "time": time.time(), **fields}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return record

    def _repair(self) -> None:
        """End a line left unfinished by a killed writer, so the next event starts on a line of its own."""
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb+") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")

    def events(self) -> list[dict[str, Any]]:
        """Return every readable event so far, reading only what was appended since the last call."""
        if not self.path.exists():
            return self._events
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n")
        self.truncated_tail = end + 1 < len(data)  # a writer died mid-line: left unread until completed
        if end < 0:
            return self._events
        for line in data[:end].split(b"\n"):
            if not line.strip():
                continue
            try:
                self._events.append(json.loads(line))
            except ValueError:
                self.corrupt_lines.append(len(self._events) + len(self.corrupt_lines) + 1)
        self._offset += end + 1
        return self._events

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.events())

    def header(self) -> dict[str, Any] | None:
        """The first event if it is a header."""
        events = self.events()
        return events[0] if events and events[0].get("event") == "header" else None
