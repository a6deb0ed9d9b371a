"""The files a budget sweep shares between its jobs and the sweeper, under ``<sweep.dir>/.greenai/``.

``trials/<job>.json`` (one writer: the job; atomic replace), ``trials/<job>.allowance.json`` (written by the sweeper
before launch), ``STOP`` (written by the sweeper's watchdog), ``ledger.jsonl`` (append-only, the sweeper). Every
file works on a shared filesystem (NFS, Lustre): writes go to a temporary name in the same folder, then
``os.replace``; the ledger is appended with ``fsync``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_greenai.spend import Spend

__all__ = ["STATE_DIR", "TrialRecord", "read_json", "state_dir", "write_json_atomic"]

STATE_DIR = ".greenai"


def state_dir(sweep_dir: str | os.PathLike[str]) -> Path:
    """Return ``<sweep_dir>/.greenai``."""
    return Path(sweep_dir) / STATE_DIR


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically: readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any | None:
    """Return the JSON in ``path``, or ``None`` if it is missing or unreadable (a writer may be mid-replace)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass
class TrialRecord:
    """A trial's heartbeat: its cumulative spend, a sequence number, and its status as the job sees it."""

    job_num: int
    seq: int = 0
    status: str = "running"  # running | completed | budget_stopped | failed
    spend: Spend = field(default_factory=Spend)
    objective: float | None = None
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    updated_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "job_num": self.job_num,
            "seq": self.seq,
            "status": self.status,
            "spend": self.spend.to_dict(),
            "objective": self.objective,
            "pid": self.pid,
            "host": self.host,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRecord:
        """Rebuild from :meth:`to_dict`."""
        return cls(
            job_num=int(data["job_num"]),
            seq=int(data.get("seq", 0)),
            status=str(data.get("status", "running")),
            spend=Spend.from_dict(data.get("spend", {})),
            objective=data.get("objective"),
            pid=int(data.get("pid", 0)),
            host=str(data.get("host", "")),
            updated_at=float(data.get("updated_at", 0.0)),
        )

    @staticmethod
    def path(sweep_dir: str | os.PathLike[str], job_num: int) -> Path:
        """Where job ``job_num`` writes its heartbeat."""
        return state_dir(sweep_dir) / "trials" / f"{job_num}.json"

    @classmethod
    def load(cls, sweep_dir: str | os.PathLike[str], job_num: int) -> TrialRecord | None:
        """Read job ``job_num``'s latest heartbeat, or ``None`` if it never wrote one."""
        data = read_json(cls.path(sweep_dir, job_num))
        return None if data is None else cls.from_dict(data)
