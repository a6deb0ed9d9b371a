"""How far to trust one device's energy over one window: the interval ``(low, high)`` in joules, by how it was read.

The rules, applied by the :class:`~lightning_greenai.Meter` to every domain of every window, in one place:

- **Calibration**: a hardware sensor is taken to be accurate to ``accuracy`` of its reading (default ±5 %, the figure
  NVIDIA documents for NVML power readings; AMD, Intel and the Jetson rails publish none, and get the same).
- **Counter**: the counter moves in steps of ``resolution_j`` and is refreshed every ``update_period_s``, so each end
  of the window may miss up to one period of power: ± ``resolution_j + 2 x update_period_s x power``. A window shorter
  than one period is flagged by the Meter as an estimate (the counter may not have ticked).
- **Polled power**: between two samples the power is taken to lie between them, so the left and right Riemann sums
  bracket the trapezoid the sensor integrates (``|p1 - p0| x dt / 2`` per interval, accumulated by the sensor as
  :meth:`~lightning_greenai.sensors.sampling.SampledPowerSensor.read_energy_bounds_j`). Spikes shorter than the polling
  period are not bounded: prefer a counter (Yang et al. 2023 find NVML power sees 25 % of an A100's runtime).
- **Estimate** (a power limit or TDP times utilisation, DRAM by GB, a failed sensor extrapolated): a factor of
  ``ESTIMATE_FACTOR`` either way, ``[E / 2, 2 E]`` — CodeCarbon's TDP model and RAPL disagree by about 2x
  (codecarbon #788).
- **Glitch** (a cumulative counter read below its last good reading, or above it by more than ``GLITCH_MARGIN`` x
  its maximum power x the elapsed time plus the counter's two edges, :func:`counter_allowance_j`): the reading is
  skipped and the last good one stays the base, so the next good reading bills the whole interval exactly. While the
  latest reading is a glitch, the time since the last good one is unread: up to the device's maximum power over it
  is added to the high end (``unread_high_j``).
- **A share of a measured device** (a shared GPU, see :mod:`lightning_greenai.sensors.shared`): the sensor's own
  bounds (its share of the active energy, up to all of it), widened by the calibration and counter rules above.

Bounds add linearly across domains, windows, ranks and trials: a worst case, since a sensor's calibration error has
the same sign in every window. CO2e, water and money are priced at both ends.
"""

from __future__ import annotations

import math

from lightning_greenai.spend import Bounds, Method

__all__ = ["DEFAULT_ACCURACY", "ESTIMATE_FACTOR", "GLITCH_MARGIN", "counter_allowance_j", "window_bounds"]

#: Relative accuracy of a hardware energy or power sensor (NVML documents ±5 % for its power readings).
DEFAULT_ACCURACY = 0.05
#: An estimate is trusted to within this factor either way.
ESTIMATE_FACTOR = 2.0
#: A counter is taken to glitch when it rises faster than this many times its device's maximum power.
GLITCH_MARGIN = 1.5


def counter_allowance_j(
    max_power_w: float | None, elapsed_s: float, *, update_period_s: float = 0.0, resolution_j: float = 0.0
) -> float:
    """The most a cumulative counter can rise over ``elapsed_s`` seconds; more is a glitch (``inf``: power unknown).

    The device draws at most ``max_power_w`` (with ``GLITCH_MARGIN`` for excursions above it), and each end of the
    interval may hold up to one refresh period of it plus one step, as in the counter rule of :func:`window_bounds`.
    """
    if max_power_w is None:
        return math.inf
    return GLITCH_MARGIN * max_power_w * (max(elapsed_s, 0.0) + 2.0 * update_period_s) + resolution_j


def window_bounds(
    method: Method,
    energy_j: float,
    duration_s: float,
    *,
    sensor_bounds: Bounds | None = None,
    accuracy: float = DEFAULT_ACCURACY,
    resolution_j: float = 0.0,
    update_period_s: float = 0.0,
    power_w: float | None = None,
    unread_high_j: float = 0.0,
) -> Bounds:
    """Return the interval of ``energy_j`` read over ``duration_s`` seconds by a sensor of kind ``method``.

    Args:
        method: How the energy was obtained.
        energy_j: The figure, in joules.
        duration_s: The window's length, in seconds.
        sensor_bounds: The sensor's own interval for the window (polled power's bracket, a shared GPU's share), if
            it keeps one; without it an estimate gets the ``ESTIMATE_FACTOR`` band.
        accuracy: The sensor's relative calibration accuracy.
        resolution_j: The counter's step, in joules.
        update_period_s: How often the counter is refreshed, in seconds.
        power_w: The device's power, for the counter's edges (default: the window's mean power).
        unread_high_j: What the device may have used since its last good reading when the latest was a glitch.
    """
    if energy_j <= 0 and not sensor_bounds:
        return 0.0, unread_high_j
    if method is Method.ESTIMATE and sensor_bounds is None:
        return energy_j / ESTIMATE_FACTOR, energy_j * ESTIMATE_FACTOR + unread_high_j
    low, high = sensor_bounds if sensor_bounds is not None else (energy_j, energy_j)
    low, high = min(low, energy_j), max(high, energy_j)
    if power_w is None:
        power_w = energy_j / duration_s if duration_s > 0 else 0.0
    edges_j = resolution_j + 2.0 * update_period_s * max(power_w, 0.0) if update_period_s or resolution_j else 0.0
    return max(low * (1.0 - accuracy) - edges_j, 0.0), high * (1.0 + accuracy) + edges_j + unread_high_j
