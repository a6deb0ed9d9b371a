"""AMD GPU energy through ``amdsmi`` (ROCm): the energy accumulator where it is valid, else power polling.

The accumulator (``amdsmi_get_energy_count``: a count times ``counter_resolution`` microjoules) is not trustworthy on
every board and firmware: some never move, some count in other units. So each GPU's counter is validated when it is
opened — two reads ``validate_s`` apart against the board's power — and a counter that disagrees by more than a
factor of two is dropped for power polling, flagged (``Method.SAMPLED``) with the reason in the notes. ``amdsmi`` is
imported only when a GPU is looked for; every function takes the module as a parameter, so tests pass
:class:`~lightning_greenai.sensors.fake.FakeAMDSMI` instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from lightning_greenai.sensors.base import DEFAULT_GPU_MAX_POWER_W, GPUDiscovery, SensorBase
from lightning_greenai.sensors.sampling import SampledPowerSensor
from lightning_greenai.spend import Method

__all__ = ["AMDEnergySensor", "counter_checks", "discover_amdsmi", "load_amdsmi", "visible_amd_devices"]

# The SMU firmware of Instinct MI200/MI300 updates the accumulator about every millisecond.
_COUNTER_PERIOD_S = 0.001
#: A counter whose power over the validation window is outside [1/x, x] of the board's power is not trusted.
AGREEMENT_FACTOR = 2.0


def load_amdsmi() -> Any | None:
    """Import and initialise ``amdsmi``; ``None`` when the module or ROCm's library is missing."""
    try:
        import amdsmi  # type: ignore[import-not-found]
    except (ImportError, OSError):  # the wheel is there but libamd_smi.so is not
        return None
    try:
        amdsmi.amdsmi_init()
    except Exception:
        return None
    return amdsmi


def _energy_uj(smi: Any, handle: Any) -> float:
    info = smi.amdsmi_get_energy_count(handle)
    count = info["energy_accumulator"] if "energy_accumulator" in info else info["power"]  # the key before ROCm 6.1
    return float(count) * float(info["counter_resolution"])


def _power_w(smi: Any, handle: Any) -> float | None:
    info = smi.amdsmi_get_power_info(handle)
    for key in ("current_socket_power", "average_socket_power"):  # "N/A" where the board does not report one
        value = info.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _board_power(smi: Any, handle: Any) -> Callable[[], float]:
    """The board's power in watts, as a function to poll (0 for a read that reports none)."""
    return lambda: _power_w(smi, handle) or 0.0


class AMDEnergySensor(SensorBase):
    """An AMD GPU's energy accumulator, in joules since the sensor was opened.

    amdsmi's power limit comes in units that changed between ROCm releases, so the most the board is taken to draw
    (a faster rise is a glitch) is :data:`~lightning_greenai.sensors.base.DEFAULT_GPU_MAX_POWER_W`.
    """

    max_power_w = DEFAULT_GPU_MAX_POWER_W

    def __init__(self, smi: Any, handle: Any, name: str, uid: str) -> None:
        super().__init__(name, uid, Method.COUNTER)
        self._smi, self._handle = smi, handle
        self._origin_uj = _energy_uj(smi, handle)
        self.update_period_s = _COUNTER_PERIOD_S
        self.resolution_j = float(smi.amdsmi_get_energy_count(handle)["counter_resolution"]) / 1e6

    def read_energy_j(self) -> float:
        """Return joules since construction."""
        return (_energy_uj(self._smi, self._handle) - self._origin_uj) / 1e6

    def read_power_w(self) -> float | None:
        """Return the board's power in watts (``None`` where it reports none)."""
        return _power_w(self._smi, self._handle)


_Reading = tuple[float, float, "float | None"]  # (counter in uJ, clock in s, board power in W)


def _read(smi: Any, handle: Any, clock: Callable[[], float]) -> _Reading | str:
    try:
        return _energy_uj(smi, handle), clock(), _power_w(smi, handle)
    except (smi.AmdSmiException, KeyError, TypeError, ValueError) as err:
        return f"the energy counter cannot be read ({type(err).__name__}: {err})"


def _judge(start: _Reading | str, end: _Reading | str) -> str | None:
    """Why a counter read at ``start`` and ``end`` cannot be trusted, or ``None``."""
    if isinstance(start, str):
        return start
    if isinstance(end, str):
        return end
    (start_uj, start_s, power_before), (end_uj, end_s, power_after) = start, end
    if end_uj < start_uj:
        return "the energy counter ran backwards"
    powers = [p for p in (power_before, power_after) if p is not None]
    if not powers or end_s <= start_s:
        return None  # nothing to check it against: trusted, as on boards with no power reading
    board_w = sum(powers) / len(powers)
    counter_w = (end_uj - start_uj) / 1e6 / (end_s - start_s)
    if board_w >= 1.0 and counter_w == 0.0:
        return f"the energy counter did not move in {end_s - start_s:.2f} s while the board drew {board_w:.0f} W"
    if board_w >= 1.0 and not 1 / AGREEMENT_FACTOR <= counter_w / board_w <= AGREEMENT_FACTOR:
        return f"the energy counter says {counter_w:.0f} W while the board reports {board_w:.0f} W"
    return None


def counter_checks(
    smi: Any,
    handles: Sequence[Any],
    *,
    validate_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str | None]:
    """Why each GPU's energy counter cannot be trusted, or ``None`` where it agrees with the board's power.

    Every counter is read, then read again ``validate_s`` later (one wait for all GPUs): it must not run backwards,
    must move while the board draws power, and its mean power must be within :data:`AGREEMENT_FACTOR` of the power
    the board reports.
    """
    if not handles:
        return []
    starts = [_read(smi, h, clock) for h in handles]
    sleep(validate_s)
    return [_judge(start, _read(smi, h, clock)) for start, h in zip(starts, handles, strict=True)]


def visible_amd_devices(environ: dict[str, str] | None = None) -> list[int] | None:
    """The AMD GPUs this process sees, as amdsmi indices (``HIP_VISIBLE_DEVICES``, then ``ROCR_VISIBLE_DEVICES``).

    ``None`` when neither is set (every GPU is visible). UUIDs are not mapped here: entries that are not indices
    end the list, as HIP stops at the first entry it cannot use.
    """
    env = os.environ if environ is None else environ
    for key in ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
        value = env.get(key)
        if value is None:
            continue
        out: list[int] = []
        for entry in (e.strip() for e in value.split(",") if e.strip()):
            if not entry.isdigit():
                break
            out.append(int(entry))
        return out
    return None


def discover_amdsmi(
    smi: Any | None,
    devices: Sequence[int] | None = None,
    *,
    visible: Sequence[int] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll_interval_s: float = 0.1,
    validate_s: float = 0.5,
) -> GPUDiscovery:
    """Open the best energy source for each AMD GPU this process uses (see the module's docstring).

    Args:
        smi: An initialised ``amdsmi`` module or fake (``None``: no AMD GPU is metered).
        devices: Indices into the visible GPUs to meter (``None``: every visible GPU).
        visible: The visible GPUs as amdsmi indices (default: :func:`visible_amd_devices`; all when unset).
        clock: Monotonic clock (power integration and the counter's validation).
        sleep: How the validation waits between its two reads.
        poll_interval_s: Power polling period where the counter is not used.
        validate_s: Seconds between the validation's two reads (the GPUs are validated together).
    """
    found = GPUDiscovery()
    if smi is None:
        return found
    try:
        handles = list(smi.amdsmi_get_processor_handles())
    except smi.AmdSmiException as err:
        found.notes.append(f"amdsmi: cannot list GPUs ({err})")
        return found
    order = list(visible) if visible is not None else visible_amd_devices()
    entries = list(range(len(handles))) if order is None else order
    if not handles or not entries:
        return found
    chosen: list[tuple[str, Any, str]] = []
    for index in range(len(entries)) if devices is None else devices:
        name = f"gpu:{index}"
        if not 0 <= index < len(entries) or not 0 <= entries[index] < len(handles):
            found.unavailable.append(name)
            found.notes.append(f"amdsmi: {name} is not among the {len(handles)} GPUs")
            continue
        handle = handles[entries[index]]
        chosen.append((name, handle, str(smi.amdsmi_get_gpu_device_uuid(handle))))
    doubts = counter_checks(smi, [h for _, h, _ in chosen], validate_s=validate_s, clock=clock, sleep=sleep)
    for (name, handle, uid), doubt in zip(chosen, doubts, strict=True):
        if doubt is None:
            found.sensors.append(AMDEnergySensor(smi, handle, name, uid))
            found.notes.append(f"amdsmi: {name} via energy counter (checked against power)")
            continue
        if _power_w(smi, handle) is not None:
            power = _board_power(smi, handle)
            found.sensors.append(SampledPowerSensor(name, uid, power, clock=clock, interval_s=poll_interval_s))
            found.notes.append(f"amdsmi: {name} via power polling: {doubt}")
            continue
        found.unavailable.append(name)
        found.notes.append(f"amdsmi: {name} reports no usable energy or power: {doubt}")
    return found
