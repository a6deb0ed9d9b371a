"""NVIDIA GPU energy through NVML: the total-energy counter (Volta and later), else power polling, else an estimate.

``pynvml`` (the ``nvidia-ml-py`` distribution) is imported only when a GPU is looked for, so importing
lightning-greenai works on machines without a GPU or without the NVML library. Every function here takes the NVML
module as a parameter, so tests pass :class:`~lightning_greenai.sensors.fake.FakeNVML` instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from lightning_greenai.sensors.base import DEFAULT_GPU_MAX_POWER_W, GPUDiscovery, SensorBase
from lightning_greenai.sensors.sampling import SampledPowerSensor
from lightning_greenai.sensors.shared import SharedGPUSensor, running_pids
from lightning_greenai.spend import Method

__all__ = [
    "SUPERCHIPS",
    "NVMLEnergySensor",
    "discover_nvml",
    "is_superchip",
    "load_nvml",
    "mig_fraction",
    "visible_devices",
]

# NVML refreshes the energy counter about every 100 ms on current data-centre GPUs.
_COUNTER_PERIOD_S = 0.1


def load_nvml() -> Any | None:
    """Import and initialise ``pynvml``; return ``None`` when the module or the driver library is missing."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    return pynvml


class NVMLEnergySensor(SensorBase):
    """A GPU's NVML total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, millijoules since driver load).

    Its ``max_power_w`` is the highest power limit the board accepts (else its enforced limit, else
    :data:`~lightning_greenai.sensors.base.DEFAULT_GPU_MAX_POWER_W`), so that
    a reading that rises faster is taken for a glitch.

    Args:
        nvml: The NVML module (``pynvml`` or a fake with the same functions).
        handle: The device handle.
        name: Domain name, e.g. ``"gpu:0"``.
        uid: The GPU's UUID.
    """

    def __init__(self, nvml: Any, handle: Any, name: str, uid: str) -> None:
        super().__init__(name, uid, Method.COUNTER)
        self._nvml, self._handle = nvml, handle
        self._origin_mj = int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        self.update_period_s = _COUNTER_PERIOD_S
        self.resolution_j = 1e-3  # the counter is in millijoules
        self.max_power_w = _max_power_w(nvml, handle)

    def read_energy_j(self) -> float:
        """Return joules since construction."""
        return (int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)) - self._origin_mj) / 1e3

    def read_power_w(self) -> float:
        """Return the current board power in watts."""
        return float(self._nvml.nvmlDeviceGetPowerUsage(self._handle)) / 1e3


def _max_power_w(nvml: Any, handle: Any) -> float:
    """The most the board can draw: its highest settable power limit, else its enforced one, else a default."""
    readers: tuple[Callable[[], Any], ...] = (
        lambda: nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)[1],
        lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle),
    )
    for read in readers:
        try:
            limit_w = float(read()) / 1e3
        except (nvml.NVMLError, AttributeError, TypeError, ValueError, IndexError):
            continue
        if limit_w > 0:
            return limit_w
    return DEFAULT_GPU_MAX_POWER_W


#: Product names of superchips whose NVML energy counter is the whole module's (Grace CPU, GPU, LPDDR and HBM).
SUPERCHIPS = ("GH200", "GB200", "GB300", "Grace")


def is_superchip(product: str) -> bool:
    """Whether an NVML product name is a Grace superchip (one energy counter for CPU, GPU and memory)."""
    return any(tag.lower() in product.lower() for tag in SUPERCHIPS)


def visible_devices(env: str | None = None) -> list[str] | None:
    """Parse ``CUDA_VISIBLE_DEVICES`` into a list of NVML indices or ``GPU-``/``MIG-`` UUIDs; ``None`` if unset."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES") if env is None else env
    if value is None:
        return None
    entries = [e.strip() for e in value.split(",") if e.strip()]
    out: list[str] = []
    for entry in entries:
        if entry.startswith("-"):  # CUDA stops at the first invalid entry
            break
        out.append(entry)
    return out


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _handle_for(nvml: Any, entry: str) -> tuple[Any, str, Any]:
    """Return (handle of the physical GPU, its UUID, the MIG slice's handle or ``None``) for one visible entry."""
    if entry.isdigit():
        handle = nvml.nvmlDeviceGetHandleByIndex(int(entry))
        return handle, _as_str(nvml.nvmlDeviceGetUUID(handle)), None
    try:
        handle = nvml.nvmlDeviceGetHandleByUUID(entry)
    except nvml.NVMLError:
        if not entry.startswith("GPU-"):
            raise
        entry = "MIG-" + entry[4:]  # torch reports a MIG slice's UUID without its prefix
        handle = nvml.nvmlDeviceGetHandleByUUID(entry)
    if entry.startswith("MIG-"):
        # A MIG slice has no energy counter of its own: meter the parent GPU and say it is shared.
        parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
        return parent, _as_str(nvml.nvmlDeviceGetUUID(parent)), handle
    return handle, _as_str(nvml.nvmlDeviceGetUUID(handle)), None


def mig_fraction(nvml: Any, mig: Any, parent: Any) -> float | None:
    """A MIG slice's share of its GPU's compute: its compute slices over the GPU's (``None`` if NVML won't say)."""
    try:
        slices = int(nvml.nvmlDeviceGetAttributes(mig).computeInstanceSliceCount)
        most = int(nvml.nvmlDeviceGetMaxMigDeviceCount(parent))
    except (nvml.NVMLError, AttributeError):
        return None
    return min(slices / most, 1.0) if slices > 0 and most > 0 else None


def _share(
    nvml: Any,
    sensor: Any,
    handle: Any,
    mig: Any,
    sharing: str,
    clock: Callable[[], float],
) -> tuple[Any, str]:
    """The GPU's sensor, wrapped in this process's share where the GPU is shared, and a note saying which."""
    if sensor.method is Method.ESTIMATE or sharing == "exclusive":
        return sensor, " (MIG: whole GPU, shared)" if mig is not None else ""
    if mig is not None:
        fraction = mig_fraction(nvml, mig, handle)
        if fraction is None:
            return sensor, " (MIG: whole GPU, shared; NVML gives no slice size)"
        try:  # the slice is the counter: two processes on one slice bill it once, two slices add up
            uid = f"{sensor.uid}:{_as_str(nvml.nvmlDeviceGetUUID(mig))}"
        except nvml.NVMLError:
            uid = f"{sensor.uid}:mig"
        shared = SharedGPUSensor(sensor, nvml, handle, fraction=fraction, uid=uid, clock=clock)
        return shared, f" (MIG slice: {fraction:.3g} of the GPU by compute slices, estimate)"
    others = running_pids(nvml, handle) - {os.getpid()}
    if sharing == "auto" and not others:
        return sensor, ""
    shared = SharedGPUSensor(sensor, nvml, handle, clock=clock)
    return shared, f" (shared with {len(others)} other process(es): share by SM utilisation, estimate)"


def _product(nvml: Any, handle: Any) -> str:
    try:
        return _as_str(nvml.nvmlDeviceGetName(handle))
    except nvml.NVMLError:
        return ""


def _probe(fn: Callable[[], Any], nvml: Any) -> bool:
    try:
        fn()
    except nvml.NVMLError:
        return False
    return True


def discover_nvml(
    nvml: Any | ModuleType | None,
    devices: Sequence[int] | None = None,
    *,
    gpu_tdp_w: float | None = None,
    visible: Sequence[str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    poll_interval_s: float = 0.1,
    sharing: str = "auto",
) -> GPUDiscovery:
    """Open the best energy source for each GPU this process uses.

    Args:
        nvml: An initialised NVML module (``None`` when NVML is missing: no GPU is metered).
        devices: Indices into the process's visible GPUs (``CUDA_VISIBLE_DEVICES`` order) to meter; ``None``
            meters every visible GPU. A rank passes only its own device.
        gpu_tdp_w: A board power in watts to use when NVML reports neither energy nor power nor a power limit.
        visible: The visible-device list (defaults to parsing ``CUDA_VISIBLE_DEVICES``; all GPUs when unset).
        clock: Monotonic clock for power integration.
        poll_interval_s: Power polling period where there is no energy counter.
        sharing: How a GPU other processes use is attributed (:data:`~lightning_greenai.sensors.shared.GPU_SHARING`):
            ``auto`` charges a MIG slice its compute fraction and, where other processes run on the GPU at start, a
            share by SM utilisation; ``exclusive`` the whole GPU; ``shared`` always a share by SM utilisation.

    The chain per GPU is: energy counter -> measured power polled and integrated -> enforced power limit times
    utilisation (estimate) -> ``gpu_tdp_w`` times utilisation (estimate) -> unavailable.
    """
    found = GPUDiscovery()
    if nvml is None:
        if devices:
            found.unavailable.extend(f"gpu:{i}" for i in devices)
            found.notes.append("NVML: library not found; GPU energy unavailable")
        return found
    try:
        count = int(nvml.nvmlDeviceGetCount())
    except nvml.NVMLError as err:
        found.notes.append(f"NVML: cannot count devices ({err})")
        return found
    entries = list(visible) if visible is not None else visible_devices()
    if entries is None:
        entries = [str(i) for i in range(count)]
    if count == 0 or not entries:
        found.notes.append("NVML: no GPU present")
        return found
    indices = range(len(entries)) if devices is None else devices
    for index in indices:
        name = f"gpu:{index}"
        if index < 0 or index >= len(entries):
            found.unavailable.append(name)
            found.notes.append(f"NVML: {name} is not among the {len(entries)} visible GPUs")
            continue
        try:
            handle, uuid, mig = _handle_for(nvml, entries[index])
        except nvml.NVMLError as err:
            found.unavailable.append(name)
            found.notes.append(f"NVML: cannot open {name} ({entries[index]}): {err}")
            continue
        sensor = _best_sensor(nvml, handle, name, uuid, gpu_tdp_w, clock, poll_interval_s)
        if sensor is None:
            found.unavailable.append(name)
            found.notes.append(f"NVML: {name} reports no energy, power or power limit; pass gpu_tdp_w to estimate it")
            continue
        label = {Method.COUNTER: "energy counter", Method.SAMPLED: "power polling", Method.ESTIMATE: "estimate"}
        how = label[sensor.method]
        sensor, shared = _share(nvml, sensor, handle, mig, sharing, clock)
        found.notes.append(f"NVML: {name} via {how}{shared}")
        found.sensors.append(sensor)
        product = _product(nvml, handle)
        if sensor.method is Method.COUNTER and is_superchip(product):
            found.module_counters.append(name)
            found.notes.append(f"NVML: {name} is a {product}: its counter covers the module (CPU, GPU and memory)")
    return found


def _best_sensor(
    nvml: Any,
    handle: Any,
    name: str,
    uuid: str,
    gpu_tdp_w: float | None,
    clock: Callable[[], float],
    interval_s: float,
) -> Any | None:
    if _probe(lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle), nvml):
        return NVMLEnergySensor(nvml, handle, name, uuid)
    if _probe(lambda: nvml.nvmlDeviceGetPowerUsage(handle), nvml):
        return SampledPowerSensor(
            name, uuid, lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1e3, clock=clock, interval_s=interval_s
        )

    def utilisation() -> float:
        try:
            return float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu) / 100.0
        except nvml.NVMLError:
            return 1.0  # unknown utilisation: assume the board runs at its limit (an upper bound)

    if _probe(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle), nvml):
        limit_w = float(nvml.nvmlDeviceGetEnforcedPowerLimit(handle)) / 1e3
        return SampledPowerSensor(
            name, uuid, lambda: limit_w * utilisation(), method=Method.ESTIMATE, clock=clock, interval_s=interval_s
        )
    if gpu_tdp_w is not None:
        tdp_w = float(gpu_tdp_w)
        return SampledPowerSensor(
            name, uuid, lambda: tdp_w * utilisation(), method=Method.ESTIMATE, clock=clock, interval_s=interval_s
        )
    return None
