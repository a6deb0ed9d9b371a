"""Energy sensors: each reads one domain's cumulative joules, behind the :class:`EnergySensor` protocol.

:func:`discover_sensors` chains them for a process: NVML energy counters for its GPUs (power polling, then a
power-limit estimate where the counter is missing), amdsmi's counters checked against power for AMD GPUs, RAPL
package and DRAM counters for the host, and a flagged TDP estimate where RAPL cannot be read.
:mod:`lightning_greenai.sensors.fake` holds public test doubles.
"""

from lightning_greenai.sensors.amd import AMDEnergySensor, discover_amdsmi
from lightning_greenai.sensors.base import EnergySensor
from lightning_greenai.sensors.discovery import Discovery, discover_sensors
from lightning_greenai.sensors.estimate import CPUEstimateSensor, DRAMEstimateSensor
from lightning_greenai.sensors.nvml import NVMLEnergySensor, discover_nvml
from lightning_greenai.sensors.rapl import RAPLSensor, discover_rapl
from lightning_greenai.sensors.sampling import SampledPowerSensor

__all__ = [
    "AMDEnergySensor",
    "CPUEstimateSensor",
    "DRAMEstimateSensor",
    "Discovery",
    "EnergySensor",
    "NVMLEnergySensor",
    "RAPLSensor",
    "SampledPowerSensor",
    "discover_amdsmi",
    "discover_nvml",
    "discover_rapl",
    "discover_sensors",
]
