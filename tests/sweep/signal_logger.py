"""A tracker its user interrupts while a sweep's curves are sent to it: a real Lightning ``Logger`` whose
``log_metrics`` sends its own process a signal (``times`` times at most, one per call), as Ctrl-C or a scheduler's
SIGTERM does while a slow tracker uploads. Used as ``+logger._target_=signal_logger.SignalLogger``."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from lightning.pytorch.loggers import Logger


class SignalLogger(Logger):
    """Logs nothing; each of its first ``times`` calls to ``log_metrics`` sends this process ``signal_name``."""

    def __init__(self, signal_name: str = "SIGINT", times: int = 1, name: str = "signal") -> None:
        super().__init__()
        self._signal, self._times, self._name, self.sent = signal.Signals[signal_name], times, name, 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Nothing to keep."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.sent < self._times:
            self.sent += 1
            os.kill(os.getpid(), self._signal)
            time.sleep(0.5)  # the signal is handled here, inside the upload
