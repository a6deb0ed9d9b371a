"""One live sweeper per sweep dir: an OS file lock, released by the kernel when its holder dies."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

from lightning_greenai.errors import SweepLockedError
from lightning_greenai.io import read_json, write_json_atomic

__all__ = ["SweepLock"]


class SweepLock:
    """Hold ``<state dir>/sweep.lock`` for as long as a sweeper works on the sweep dir.

    A second sweeper (a resume started while the first still runs) is refused at once with who holds the lock; a
    crashed sweeper's lock is released with its process (``fcntl``/``LockFileEx`` locks), so a resume after a crash
    never waits. On a network filesystem the lock needs working POSIX locks (NFSv4, Lustre with ``flock``).

    Raises:
        SweepLockedError: another live process holds the lock.
    """

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "sweep.lock"
        self.owner_path = folder / "sweep.lock.owner"
        self._lock = FileLock(str(self.path))

    def __enter__(self) -> SweepLock:
        try:
            self._lock.acquire(timeout=0)
        except Timeout as err:
            owner = read_json(self.owner_path) or {}
            who = (
                f"pid {owner.get('pid')} on {owner.get('host')}, since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(float(owner.get('since', 0))))}"
                if owner
                else "another process"
            )
            raise SweepLockedError(
                f"Another sweeper ({who}) is running on {self.path.parent.parent}. Wait for it to stop, or stop it, "
                "before resuming; or choose another hydra.sweep.dir."
            ) from err
        write_json_atomic(self.owner_path, {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._lock.release()
