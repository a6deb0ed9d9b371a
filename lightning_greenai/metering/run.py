"""RunTotals: a run's spend across its entry points, its projection and its logged metrics, without a Trainer.

A run (a fit, then a test ...) meters each entry point with its own :class:`~lightning_greenai.Meter`; RunTotals
keeps what they add up to (a resumed checkpoint's spend + the entry points done + the running one), every rank's
latest records, the forecast of the whole fit, and turns a spend into the ``greenai/*`` metrics. The Lightning
callback (:class:`~lightning_greenai.EnergyMonitor`) owns one and feeds it the Trainer's figures; a plain loop can
use it the same way.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Hashable
from typing import Any

from lightning_greenai.errors import GreenAIWarning
from lightning_greenai.grid import Grid
from lightning_greenai.grid.timeline import ElectricityMaps
from lightning_greenai.metering.distributed import gather_records, merge_records, refresh_own
from lightning_greenai.metering.meter import Meter, TrialAccount
from lightning_greenai.spend import Spend
from lightning_greenai.units import g_to_kg, j_to_kwh

__all__ = ["RunTotals"]

#: Points kept in the energy timeline before it is thinned (every other point): bounded memory on long runs.
MAX_TIMELINE_POINTS = 2000


def metric_key(domain: str) -> str:
    """A device name as a metric key: some trackers (MLflow) reject ':' in metric names."""
    return domain.replace(":", "_").replace("@", "_at_")


class RunTotals:
    """The spend of a run across its entry points (resumed + done + current), priced on ``grid``.

    Args:
        grid: The grid that prices the run; the owner may replace it (a sweep's grid, an hourly timeline).
        per_device: Include each device's energy in :meth:`metrics`.
        electricity_maps: Hourly intensities to add to ``grid`` for the hours the run spent (opt-in).
    """

    def __init__(self, grid: Grid, *, per_device: bool = True, electricity_maps: ElectricityMaps | None = None) -> None:
        self.grid = grid
        self.per_device = per_device
        self.electricity_maps = electricity_maps
        self.resumed = Spend()  # the spend of the run a resumed fit continues (not metered in this process)
        self.done = Spend()  # what earlier entry points metered (fit, then test ...), all ranks
        self.current = Spend()  # what the running entry point metered so far, all ranks
        self.latest = Spend()  # the run's total so far: resumed + done + current (with FLOPs)
        self.stage_start = Spend()  # the running total when the current entry point began
        self.projected: Spend | None = None  # the forecast of the whole fit, once enough of it ran
        self.records: list[dict[str, Any]] = []  # every rank's reading at the last gather
        self.uids: dict[str, str] = {}  # domain name -> physical counter, for the trial's account
        self.nodes: dict[str, str] = {}  # domain name -> its node, in a run on several nodes
        self.node_rank = 0
        self.notes: list[str] = []  # for the price tag: how far to trust its figures
        self.timeline: list[tuple[float, float]] = []  # (duration_s, energy_j) at each log, for power plots
        self.account_key: Hashable = object()  # this run's key in a trial's account
        self._last_log: tuple[float, float] | None = None  # (duration_s, energy_j) at the previous metrics
        self._timeline_warned = False

    # -- the totals ---------------------------------------------------------------------------------------------

    def begin(self, restored: Spend | None = None) -> None:
        """An entry point starts: ``restored`` (a resumed fit's checkpoint) is the spend the run continues."""
        if restored is not None:
            self.resumed = restored
        self.stage_start = self.resumed + self.done
        self._last_log = None

    def gather(self, meter: Meter) -> Spend:
        """Every rank's reading of ``meter`` merged, each counter once. A collective under ``torch.distributed``."""
        self.records = gather_records(meter, node=self.node_rank)
        return merge_records(self.records, self.uids, self.nodes)

    def local(self, meter: Meter) -> Spend:
        """Like :meth:`gather` without a collective: this rank read now, the others as at the last gather."""
        return merge_records(refresh_own(self.records, meter, node=self.node_rank), self.uids, self.nodes)

    def refresh(self, current: Spend, flops: float | None = None) -> Spend:
        """Take a new all-rank reading of the running entry point; ``flops``: the run's training FLOPs, if counted."""
        self.current = current
        self.latest = self.total(current, flops)
        return self.latest

    def total(self, current: Spend, flops: float | None = None) -> Spend:
        """The run's total with ``current`` as the running entry point's spend (``flops`` replacing its FLOPs)."""
        total = self.resumed + self.done + current
        return total if flops is None else dataclasses.replace(total, flops=flops)

    @property
    def metered(self) -> Spend:
        """What was metered in this process's entry points, without FLOPs (a FlopMonitor bills those itself)."""
        return dataclasses.replace(self.done + self.current, flops=0.0)

    @property
    def stage_spend(self) -> Spend | None:
        """The running entry point's own spend, or None when it is the whole run (nothing came before it)."""
        if not (self.stage_start.total_energy_j or self.stage_start.duration_s):
            return None
        return self.latest.since(self.stage_start)

    def close(self) -> None:
        """The entry point ended: fold its spend into what is done."""
        self.done = self.done + self.current
        self.current = Spend()

    def note(self, note: str | None) -> None:
        """Keep a caveat for the price tag (once)."""
        if note is not None and note not in self.notes:
            self.notes.append(note)

    # -- the trial's account -------------------------------------------------------------------------------------

    def claim(self, account: TrialAccount | None, meter: Meter) -> None:
        """Take ``meter``'s counters in a trial's account now, before a meter started later does."""
        if account is None:
            return
        local = meter.domain_uids()
        self.uids.update({name: uid for name, uid in local.items() if name not in self.uids})
        zeros = Spend(energy_j=dict.fromkeys(local, 0.0))
        account.contribute(self.account_key, dataclasses.replace(zeros + self.done, flops=0.0), uids=self.uids)

    def report(self, account: TrialAccount | None, *, release: bool = False) -> None:
        """Add what was metered in this process to a trial's account; ``release`` when metering ends.

        FLOPs are left to the FlopMonitor's own contribution, and a resumed checkpoint's spend to the earlier attempt's
        record: the account bills each once.
        """
        if account is None:
            return
        account.contribute(self.account_key, self.metered, uids=self.uids, force=release)
        if release:
            account.release(self.account_key)

    # -- the forecast, the hours and the metrics ----------------------------------------------------------------

    def project(self, *, total_steps: float, steps_done: int, epoch: int) -> Spend | None:
        """Forecast the whole fit from :attr:`latest`, once the first epoch (or 5 % of the steps) is done."""
        if not (steps_done > 0 and 0 < total_steps < float("inf")):
            return self.projected
        if epoch < 1 and steps_done < 0.05 * total_steps:
            return self.projected
        self.projected = self.latest.scaled(total_steps / steps_done)
        return self.projected

    def resolve_timeline(self) -> None:
        """Add the hours :attr:`latest` was spent in to the grid's timeline, from Electricity Maps where opted in."""
        provider = self.electricity_maps
        if provider is None or not self.latest.hourly_energy_j:
            return
        try:
            found = provider.intensities(self.latest.hourly_energy_j)
        except OSError as err:
            if not self._timeline_warned:
                self._timeline_warned = True
                warnings.warn(
                    f"{err}; the hours it could not give are priced at {self.grid.intensity_source}",
                    GreenAIWarning,
                    stacklevel=2,
                )
            found = {}
        self.grid = self.grid.with_timeline(found, provider.source)

    def record(self, spend: Spend) -> None:
        """Add ``spend``'s energy to the timeline of the run's power."""
        if spend.total_energy_j is None:
            return
        self.timeline.append((spend.duration_s, spend.total_energy_j))
        if len(self.timeline) > MAX_TIMELINE_POINTS:
            self.timeline = self.timeline[::2]

    def metrics(self, spend: Spend) -> dict[str, float]:
        """The ``greenai/*`` metrics of ``spend`` (and of the forecast); power since the previous call."""
        metrics: dict[str, float] = {"greenai/is_estimate": float(spend.is_estimate)}
        metrics.update(self._energy_metrics(spend))
        co2e_g = self.grid.co2e_g(spend)
        if co2e_g is not None:
            metrics["greenai/co2e_kg"] = g_to_kg(co2e_g)
            for side in ("low", "high"):
                metrics[f"greenai/co2e_kg_{side}"] = g_to_kg(self.grid.co2e_g(spend.bound(side)) or 0.0)
        hosts = max(len(set(self.nodes.values())), 1)
        metrics["greenai/embodied_co2e_kg"] = g_to_kg(sum(self.grid.embodied_co2e_g(spend, hosts).values()))
        water = self.grid.water_l(spend)
        if water is not None:
            metrics["greenai/water_l"] = sum(water.values())
        cost = self.grid.money(spend)
        if cost is not None:
            metrics["greenai/cost"] = cost
        if self.per_device:
            for name, value in spend.energy_j.items():
                # not under greenai/energy_kwh/: no key may be a path prefix of another (MLflow's file store)
                metrics[f"greenai/device_energy_kwh/{metric_key(name)}"] = j_to_kwh(value)
        metrics.update(self._projected_metrics())
        return metrics

    def _energy_metrics(self, spend: Spend) -> dict[str, float]:
        """Energy, its bounds and the mean power since the previous call."""
        energy_j = spend.total_energy_j
        if energy_j is None:
            return {}
        low_j, high_j = spend.total_energy_bounds_j or (energy_j, energy_j)
        metrics = {
            "greenai/energy_kwh": j_to_kwh(energy_j),
            "greenai/energy_kwh_low": j_to_kwh(low_j),
            "greenai/energy_kwh_high": j_to_kwh(high_j),
        }
        if self._last_log is not None and spend.duration_s > self._last_log[0]:
            metrics["greenai/power_w"] = (energy_j - self._last_log[1]) / (spend.duration_s - self._last_log[0])
        self._last_log = (spend.duration_s, energy_j)
        return metrics

    def _projected_metrics(self) -> dict[str, float]:
        """The forecast's energy (at the facility), CO2e and cost, where known."""
        if self.projected is None:
            return {}
        metrics: dict[str, float] = {}
        energy_kwh = self.projected.energy_kwh
        if energy_kwh is not None:
            metrics["greenai/projected_energy_kwh"] = self.grid.pue * energy_kwh
        co2e_g = self.grid.co2e_g(self.projected)
        if co2e_g is not None:
            metrics["greenai/projected_co2e_kg"] = g_to_kg(co2e_g)
        cost = self.grid.money(self.projected)
        if cost is not None:
            metrics["greenai/projected_cost"] = cost
        return metrics
