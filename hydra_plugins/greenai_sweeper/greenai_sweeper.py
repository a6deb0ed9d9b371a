"""The thin Hydra ``Sweeper`` for ``hydra/sweeper=greenai``.

The work is in ``lightning_greenai.sweep.engine``; what a stopped sweep writes, prints and publishes for people is in
``lightning_greenai.reporting.sweep_files``, whose :class:`ReportedSweep` is the engine with its report wired in.
"""

import sys
from typing import Any, List, Sequence  # noqa: UP035

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.greenai_sweeper import config as _config  # noqa: F401 (registers hydra/sweeper=greenai)


class GreenAISweeper(Sweeper):
    """Run a hyperparameter search until a compute budget (kWh, FLOPs, CO2e, money, GPU-hours, wall time) is spent."""

    def __init__(self, **kwargs: Any) -> None:
        # imported here: Hydra imports this module at every start-up, and the implementation need not load then
        from lightning_greenai.reporting.sweep_files import ReportedSweep

        self._impl = ReportedSweep(**kwargs)
        self._impl.validate_batch = self.validate_batch_is_legal

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Instantiate the launcher."""
        self.hydra_context, self.config = hydra_context, config
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher = self._impl.launcher

    def sweep(self, arguments: List[str]) -> List[Sequence[Any]]:  # noqa: UP006
        """Run the budget-limited sweep; return the batches of JobReturns.

        A sweep that ends in one of our errors (too many failed trials, a missing package, a budget nothing measures,
        a locked sweep dir) has already written its ledger and report: the error is one line, not a traceback.
        """
        from lightning_greenai.errors import (
            BudgetConfigError,
            MissingDependencyError,
            SweepFailedError,
            SweepLockedError,
        )

        try:
            return self._impl.sweep(arguments)
        except (SweepFailedError, MissingDependencyError, BudgetConfigError, SweepLockedError) as err:
            print(f"[greenai] error: {err}", file=sys.stderr)
            raise SystemExit(1) from None
