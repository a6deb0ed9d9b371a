"""Fake energy counters kept in files, which several processes (DDP ranks, nodes) add to under a lock."""

import fcntl
from collections.abc import Callable
from pathlib import Path


def bump(path: Path, amount: int) -> None:
    """Add ``amount`` to the counter in ``path`` (an integer on one line), atomically across processes."""
    with open(path, "r+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        value = int(fh.read().strip() or 0) + amount
        fh.seek(0)
        fh.truncate()
        fh.write(f"{value}\n")
        fh.flush()
        fcntl.flock(fh, fcntl.LOCK_UN)


def counter(path: Path) -> Callable[[], int]:
    """A reader of the counter in ``path``, for a fake sensor."""
    return lambda: int(path.read_text().strip() or 0)
