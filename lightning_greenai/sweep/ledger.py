"""The sweep's append-only ledger: one JSON line per event, fsync'd, so a killed sweeper loses nothing.

Events: ``header`` (first line: config fingerprint, budget, grid), ``launched``, ``finished`` (status, objective,
spend, the reports of the monitored score), ``rung`` (a decision at a rung: the job, its score, promoted or pruned,
and why), ``stopped`` (reason), ``resumed``. Reading is streamed, a line at a time. It tolerates a truncated last line
(the sweeper died mid-write) and damaged lines (not JSON, nested too deep, longer than :data:`MAX_LINE_BYTES`, the
wrong shape, a NaN): each is skipped and described in :attr:`Ledger.notes`, and every readable event is kept.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from lightning_greenai.errors import StateWriteError
from lightning_greenai.io import JSONDepthError, parse_json
from lightning_greenai.spend import Spend
from lightning_greenai.trial.record import TrialStatus, read_reports

__all__ = ["MAX_LINE_BYTES", "Ledger", "check_event"]

#: A longer line is damaged (a year's hourly energy in a finished event, or a header's timeline, is about 1 MB).
MAX_LINE_BYTES = 16 * 2**20
_CHUNK_BYTES = 2**20


def check_event(event: Any) -> str | None:
    """Return what is wrong with a ledger event, or ``None`` if it is well formed."""
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return "not a ledger event"
    kind = event["event"]
    when = event.get("time", 0.0)
    if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
        return f"{kind} event with time {when!r}, not a finite number"
    if kind in ("launched", "finished") and (
        isinstance(event.get("job"), bool) or not isinstance(event.get("job"), int)
    ):
        return f"{kind} event without an integer job number"
    if kind == "launched" and not (
        isinstance(event.get("overrides"), list) and all(isinstance(o, str) for o in event["overrides"])
    ):
        return "launched event without a list of overrides"
    if kind == "launched":
        for key in ("rerun_of", "strategy_id"):
            value = event.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                return f"launched event with {key} {value!r}, not an integer"
    if kind == "finished":
        if TrialStatus.parse(event.get("status")) is None:
            return f"finished event with unknown status {event.get('status')!r}"
        objective = event.get("objective")
        if objective is not None and (
            isinstance(objective, bool) or not isinstance(objective, int | float) or not math.isfinite(objective)
        ):
            return f"finished event with objective {objective!r}, not a finite number"
        try:
            Spend.from_dict(event.get("spend", {}))
        except ValueError as err:
            return f"finished event with a damaged spend ({err})"
        try:
            read_reports(event.get("reports", []))
        except ValueError as err:
            return f"finished event with damaged reports ({err})"
    if kind == "rung":
        return _check_rung(event)
    if kind == "header" and not isinstance(event.get("search", {}), dict):
        return "header without a search description"
    return None


def _check_rung(event: dict[str, Any]) -> str | None:
    """What is wrong with a ``rung`` event (a decision at a rung), or ``None``."""
    if isinstance(event.get("job"), bool) or not isinstance(event.get("job"), int):
        return "rung event without an integer job number"
    if event.get("decision") not in ("promoted", "pruned", "continued"):
        return f"rung event with decision {event.get('decision')!r}, not promoted, pruned or continued"
    for key in ("score", "resource"):
        value = event.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"rung event with {key} {value!r}, not a finite number"
    for key in ("rung", "bracket"):
        value = event.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            return f"rung event with {key} {value!r}, not an integer"
    return None


class Ledger:
    """Append and read events of ``<sweep.dir>/.greenai/ledger.jsonl``.

    Reading is incremental and streamed: iterating keeps the offset, so each pass reads only lines appended since the
    last one, one line at a time, and a long sweep never re-parses its history.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._offset = 0
        self._lines = 0
        self.corrupt_lines: list[int] = []
        self.notes: list[str] = []
        self.truncated_tail = False

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event (with a timestamp) and fsync it.

        Raises:
            StateWriteError: the ledger cannot be written (read-only or full disk); earlier lines are intact.
            ValueError: the event holds a NaN or infinity (never written: it is not JSON).
        """
        record = {"event": event, "time": time.time(), **fields}
        line = json.dumps(record, allow_nan=False) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:  # the watchdog's thread records rung decisions while the engine may record a job
                self._repair()
                with open(self.path, "a") as fh:
                    fh.write(line)
                    fh.flush()
                    os.fsync(fh.fileno())
        except OSError as err:
            raise StateWriteError(
                f"Cannot append to the sweep's ledger {self.path}: {err.strerror or err}. Every event written before "
                "is intact; make the folder writable (or free disk space) and resume with hydra.sweeper.resume=true."
            ) from err
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
        for _ in self:
            pass
        return self._events

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every readable event: those read before, then the file's new lines, one line at a time as asked for.

        A ledger of any size is streamed: at most one line (:data:`MAX_LINE_BYTES`) is held at a time, and a reader
        that stops early (:meth:`header`) reads no further.
        """
        index = 0
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 (closed below, also when the caller stops early)
        except FileNotFoundError:
            fh = None
        try:
            while True:
                if index < len(self._events):
                    index += 1
                    yield self._events[index - 1]
                elif fh is None or not self._read_line(fh):
                    return
        finally:
            if fh is not None:
                fh.close()

    def _read_line(self, fh: BinaryIO) -> bool:
        """Read the line at the offset, keeping its event if it is readable; ``False`` when no complete line is left."""
        if fh.tell() != self._offset:
            fh.seek(self._offset)
        chunks: list[bytes] = []
        size = 0
        while not (chunks and chunks[-1].endswith(b"\n")):
            chunk = fh.readline(_CHUNK_BYTES)
            if not chunk:  # a writer died mid-line (or is writing it): left unread until completed
                self.truncated_tail = size > 0
                return False
            size += len(chunk)
            chunks = [chunk] if size > MAX_LINE_BYTES else [*chunks, chunk]  # too long: only its end is kept
        self.truncated_tail = False
        self._offset += size
        self._lines += 1
        if size > MAX_LINE_BYTES:
            problem: str | None = f"longer than {MAX_LINE_BYTES // 2**20} MiB ({size} bytes)"
        else:
            line = b"".join(chunks)
            if not line.strip():
                return True
            try:
                event = parse_json(line)
                problem = check_event(event)
            except JSONDepthError as err:
                problem = f"not valid JSON ({err})"
            except ValueError:
                problem = "not valid JSON"
        if problem is None:
            self._events.append(event)
        else:
            self.corrupt_lines.append(self._lines)
            self.notes.append(f"ledger line {self._lines} skipped: {problem}")
        return True

    def header(self) -> dict[str, Any] | None:
        """The sweep's header: the first ``header`` event (a damaged first line leaves a later, repaired one)."""
        return next((e for e in self if e.get("event") == "header"), None)
