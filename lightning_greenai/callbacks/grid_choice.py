"""Which grid prices a monitor: its own, or in a greenai sweep's trial the sweep's (one grid, not two)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning_greenai.errors import GridConfigError
from lightning_greenai.grid import Grid
from lightning_greenai.grid.grid import GRID_OPTIONS
from lightning_greenai.grid.timeline import ElectricityMaps
from lightning_greenai.trial.account import sweep_grid

__all__ = ["own_grid", "trial_grid"]


def own_grid(grid: Grid | Mapping[str, Any] | None) -> tuple[dict[str, Any], Grid]:
    """The grid options a monitor set itself (what its checkpoint key and a sweep's check see), and its grid.

    Raises:
        GridConfigError: ``grid`` is neither a Grid nor a mapping, or :meth:`Grid.from_config` refuses it.
    """
    if isinstance(grid, Grid):
        return {k: getattr(grid, k) for k in GRID_OPTIONS if hasattr(grid, k)}, grid
    if grid is not None and not isinstance(grid, Mapping):
        raise GridConfigError(
            f"`grid` must be a Grid, a mapping of Grid.from_location's options ({', '.join(GRID_OPTIONS)}) or None, "
            f"got {grid!r}."
        )
    given = {str(k): v for k, v in dict(grid or {}).items() if v is not None}
    return given, Grid.from_config(given)


def trial_grid(given: Mapping[str, Any], grid: Grid, electricity_maps: ElectricityMaps | None) -> Grid | None:
    """The sweep's grid, which a monitor in a greenai sweep's trial prices with; ``None`` outside a sweep.

    A monitor that sets no grid (``given`` empty) takes the sweep's; one that sets a grid pricing differently is
    refused, naming both, since its price tag and the sweep's books would disagree.

    Raises:
        GridConfigError: the monitor's grid prices differently from the sweep's, or it asks Electricity Maps.
    """
    sweep = sweep_grid()
    if sweep is None:
        return None
    own = "{" + ", ".join(f"{k!r}: {v!r}" for k, v in given.items()) + "}"
    if electricity_maps is not None:
        raise GridConfigError(
            "EnergyMonitor(electricity_maps=...) runs in a greenai sweep, which holds its budget at "
            f"hydra.sweeper.grid ({sweep.describe()}), not at Electricity Maps' hours. Give the sweep the hourly "
            "figures instead: hydra.sweeper.grid.intensity_csv=<a CSV exported from Electricity Maps>."
        )
    if given and grid.differences(sweep):
        raise GridConfigError(
            f"EnergyMonitor(grid={own}) prices this trial at {grid.describe()}, but its greenai sweep holds "
            f"the budget at hydra.sweeper.grid: {sweep.describe()} ({'; '.join(grid.differences(sweep))}; the "
            "monitor's vs the sweep's). Set the grid once, in hydra.sweeper.grid (e.g. "
            f"hydra.sweeper.grid.{next(iter(given))}=...), and remove it from the monitor: a trial's "
            "EnergyMonitor that sets no grid prices with the sweep's."
        )
    return sweep
