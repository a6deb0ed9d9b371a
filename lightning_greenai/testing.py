"""Read what W&B wrote offline, from its ``.wandb`` run file, so tests can check what reached the tracker.

A ``.wandb`` file is W&B's transaction log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks
of records in the LevelDB log layout (4-byte checksum, 2-byte length, 1-byte type: full/first/middle/last), each
payload a ``wandb_internal_pb2.Record`` protobuf. Tested with wandb 0.31 (see the ``wandb`` pin of the test extra).
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["WandbRun", "read_wandb_run"]

_HEADER = b":W&B"
_BLOCK = 32768
_RECORD_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class WandbRun:
    """What a ``.wandb`` file holds: history rows, summary, config, and metric definitions (``step_metric``)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    complete: bool = False  # the writer wrote the run's closing ``exit`` record: nothing more will come

    def column(self, key: str) -> list[Any]:
        """Every logged value of ``key``, in order."""
        return [row[key] for row in self.history if key in row]


def _payloads(data: bytes) -> list[bytes]:
    if data[:4] != _HEADER:
        raise ValueError("not a .wandb file: missing the ':W&B' header")
    offset, out, pending = 7, [], b""
    while offset + _RECORD_HEADER <= len(data):
        left_in_block = _BLOCK - offset % _BLOCK
        if left_in_block < _RECORD_HEADER:  # block tail padding
            offset += left_in_block
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[offset : offset + _RECORD_HEADER])
        offset += _RECORD_HEADER
        if offset + length > len(data):  # the writer is still writing this record
            break
        chunk = data[offset : offset + length]
        offset += length
        if kind == _FULL:
            out.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            out.append(pending + chunk)
            pending = b""
        elif length == 0 and kind == 0:  # zero padding to the end of the file
            break
    return out


def read_wandb_run(path: str | Path, *, timeout_s: float = 60.0) -> WandbRun:
    """Parse a ``run-*.wandb`` file, or the newest one under a folder (e.g. the ``wandb/`` save dir).

    W&B's writer runs in its own service process and may still be flushing after ``run.finish()`` returns: the file
    is read again until it holds the run's closing ``exit`` record, so a test never sees half a run.

    Raises:
        TimeoutError: no ``exit`` record after ``timeout_s`` seconds (the run was not finished).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        run = _read_once(Path(path))
        if run.complete:
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: the W&B run file has no exit record after {timeout_s:g} s: was it finished?")
        time.sleep(0.05)


def _read_once(path: Path) -> WandbRun:
    from wandb.proto import wandb_internal_pb2 as pb

    if path.is_dir():
        files = sorted(path.rglob("*.wandb"), key=lambda p: p.stat().st_mtime)
        if not files:
            raise FileNotFoundError(f"No .wandb file under {path}.")
        path = files[-1]
    run = WandbRun()
    for payload in _payloads(path.read_bytes()):
        record = pb.Record()  # type: ignore[attr-defined]
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            run.history.append(
                {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            )
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run.config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "metric":
            metric = record.metric
            run.metrics[metric.name or metric.glob_name] = {"step_metric": metric.step_metric}
        elif kind == "exit":
            run.complete = True
    return run
