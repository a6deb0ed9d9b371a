"""The one reader of the JSON lightning-greenai reads back: price tags, a sweep's ledger and messages, caches.

Nesting is limited to :data:`MAX_JSON_DEPTH` levels, checked before parsing: Python's parser recurses once per
level, and a deeply nested file (damaged, or not ours) would raise ``RecursionError``, which no reader expects.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from pathlib import Path
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "JSONDepthError", "parse_json", "read_json"]

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
