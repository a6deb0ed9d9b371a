"""Apple Silicon energy from ``powermetrics``: CPU, GPU and Neural Engine power of the SoC, integrated.

macOS exposes no energy counter to an ordinary process: ``powermetrics`` reads the SoC's power but runs only as root
(``sudo``). Where it can run, one ``powermetrics --samplers cpu_power,gpu_power -i <ms>`` process streams samples
that a thread integrates (each sample's combined power times its own elapsed time); the domain is ``apple:soc``
(CPU + GPU + ANE; unified memory is not in it, and keeps its estimate). Where it cannot, discovery says so and the
host falls back to the flagged estimate, and the GPU (MPS) is not metered.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lightning_greenai.sensors.base import SensorBase
from lightning_greenai.spend import Method

__all__ = ["PowermetricsSample", "PowermetricsSensor", "parse_powermetrics", "powermetrics_command"]

_HEADER = re.compile(r"^\*\*\* Sampled system activity .*\((?P<ms>[\d.]+)\s*ms elapsed\)")
_POWER = re.compile(r"^(?P<what>CPU|GPU|ANE|Combined) Power[^:]*:\s*(?P<value>[\d.]+)\s*(?P<unit>mW|W)\s*$")


@dataclass(frozen=True)
class PowermetricsSample:
    """One sample of ``powermetrics``: its window and the SoC's mean power over it."""

    elapsed_s: float
    cpu_w: float
    gpu_w: float
    ane_w: float
    combined_w: float

    @property
    def energy_j(self) -> float:
        """The SoC's energy over the sample's window."""
        return self.combined_w * self.elapsed_s


def parse_powermetrics(lines: Iterable[str]) -> list[PowermetricsSample]:
    """Parse ``powermetrics``' text output into samples (complete ones: a header and its power lines).

    A sample opens with ``*** Sampled system activity (<date>) (<N>ms elapsed) ***``; within it the first ``CPU``,
    ``GPU`` and ``ANE Power`` lines count (the GPU section repeats ``GPU Power``), in mW or W. ``Combined Power`` is
    their sum where macOS prints it; older versions do not, and the parts are summed.
    """
    samples: list[PowermetricsSample] = []
    elapsed_s: float | None = None
    power: dict[str, float] = {}

    def close() -> None:
        if elapsed_s is not None and power:
            parts = sum(power.get(k, 0.0) for k in ("CPU", "GPU", "ANE"))
            combined = power.get("Combined", parts)
            samples.append(
                PowermetricsSample(
                    elapsed_s, power.get("CPU", 0.0), power.get("GPU", 0.0), power.get("ANE", 0.0), combined
                )
            )

    for raw in lines:
        line = raw.strip()
        header = _HEADER.match(line)
        if header:
            close()
            elapsed_s, power = float(header["ms"]) / 1e3, {}
            continue
        match = _POWER.match(line)
        if match and elapsed_s is not None and match["what"] not in power:
            value = float(match["value"])
            power[match["what"]] = value / 1e3 if match["unit"] == "mW" else value
    close()
    return samples


def powermetrics_command(interval_ms: int = 100) -> list[str]:
    """The command the sensor runs."""
    return ["powermetrics", "--samplers", "cpu_power,gpu_power", "-i", str(interval_ms)]


def powermetrics_unavailable() -> str | None:
    """Why ``powermetrics`` cannot be run by this process, or ``None`` when it can."""
    if shutil.which("powermetrics") is None:
        return "powermetrics is not on PATH"
    if os.geteuid() != 0:
        return "powermetrics needs root (run under sudo to measure the SoC)"
    return None


class PowermetricsSensor(SensorBase):
    """The SoC's energy (``apple:soc``), integrated from a ``powermetrics`` process that streams samples.

    A read counts the samples that have arrived: it lags by one sampling interval at most, and a window shorter
    than that is priced by the Meter as the last sample's power times its length (``update_period_s``).

    Args:
        command: The command (default :func:`powermetrics_command`; tests replay recorded output instead).
        interval_s: The sampling interval the command uses.
    """

    def __init__(self, command: Sequence[str] | None = None, *, interval_s: float = 0.1) -> None:
        super().__init__("apple:soc", f"{socket.gethostname()}:powermetrics", Method.SAMPLED)
        self._lock = threading.Lock()
        self._energy_j, self._power_w = 0.0, 0.0
        self._proc = subprocess.Popen(
            list(command or powermetrics_command()),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.update_period_s = interval_s
        self._thread = threading.Thread(target=self._read, name="greenai-powermetrics", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        block: list[str] = []
        for line in self._proc.stdout:
            if line.startswith("*** Sampled system activity") and block:
                self._add(parse_powermetrics(block))
                block = []
            block.append(line)
        self._add(parse_powermetrics(block))

    def _add(self, samples: list[PowermetricsSample]) -> None:
        with self._lock:
            for sample in samples:
                self._energy_j += sample.energy_j
                self._power_w = sample.combined_w

    def read_energy_j(self) -> float:
        """Joules in the samples so far."""
        with self._lock:
            return self._energy_j

    def read_power_w(self) -> float:
        """The SoC's power in the last sample."""
        with self._lock:
            return self._power_w

    def close(self) -> None:
        """Stop ``powermetrics``."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._thread.join(timeout=5)
