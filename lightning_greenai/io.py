"""The files lightning-greenai writes and reads back: atomic writes, and the one JSON reader (with a depth limit).

Price tags, a sweep's ledger, its messages and caches are written with :func:`replace_text` (readers see the old file
or the new one, never half, on a shared filesystem too) and read with :func:`read_json` / :func:`parse_json`.

Nesting is limited to :data:`MAX_JSON_DEPTH` levels, checked before parsing: Python's parser recurses once per
level, and a deeply nested file (damaged, or not ours) would raise ``RecursionError``, which no reader expects.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from itertools import accumulate
from pathlib import Path
from typing import Any

from lightning_greenai.errors import StateWriteError

__all__ = ["MAX_JSON_DEPTH", "JSONDepthError", "parse_json", "read_json", "replace_text", "write_json_atomic"]

#: The deepest nesting read; every file of ours is under 10 levels.
MAX_JSON_DEPTH = 64
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class JSONDepthError(ValueError):
    """A JSON text nests arrays and objects deeper than :data:`MAX_JSON_DEPTH` levels."""


def _depth(text: str) -> int:
    """How deep ``text`` nests arrays and objects (brackets inside strings do not count)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(1 if c in "[{" else -1 for c in brackets), default=0)


def parse_json(text: str | bytes) -> Any:
    """Parse a JSON text.

    Raises:
        JSONDepthError: it nests deeper than :data:`MAX_JSON_DEPTH` levels.
        ValueError: it is not JSON (``json.JSONDecodeError``), or not UTF-8 (``UnicodeDecodeError``).
    """
    if isinstance(text, bytes):
        text = text.decode()
    opened = text.count("[") + text.count("{")  # an upper bound of the depth: most texts need no scan
    if opened > MAX_JSON_DEPTH and (depth := _depth(text)) > MAX_JSON_DEPTH:
        raise JSONDepthError(f"nested {depth} levels deep, more than the {MAX_JSON_DEPTH} levels JSON is read to")
    return json.loads(text)


def read_json(path: Path) -> Any | None:
    """Return the JSON in ``path``, or ``None`` if it is missing or unreadable (a writer may be mid-replace)."""
    try:
        return parse_json(path.read_bytes())
    except (OSError, ValueError):
        return None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically: readers see the old file or the new one, never half.

    Raises:
        StateWriteError: the file cannot be written (read-only or full disk); the old file, if any, is intact.
    """
    replace_text(path, json.dumps(data, allow_nan=False))  # NaN is not JSON: never written, whatever a caller passes


def replace_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary name in the same folder, fsync, ``os.replace``).

    Raises:
        StateWriteError: the file cannot be written (read-only or full disk); the old file, if any, is intact.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StateWriteError(
            f"Cannot write {path}: {err.strerror or err}. Make the folder writable (or free disk space); what was "
            "written before is unchanged."
        ) from err
