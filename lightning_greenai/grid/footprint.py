"""The rest of the footprint: embodied carbon of the hardware and water, per unit, with their sources.

Packaged defaults, each overridable (``EnergyMonitor(grid={"embodied_g_per_gpu_hour": ...})``, ``hydra.sweeper.grid``):

* **Embodied carbon** — manufacturing the hardware, amortised over its life and charged per hour of use: 150 kgCO2e
  per data-centre GPU and 2,500 kgCO2e per server without its GPUs, replaced after 6 years (Luccioni, Viguier &
  Ligozat 2023, "Estimating the Carbon Footprint of BLOOM", JMLR 24(253)). A GPU is charged per GPU-hour; a server
  per CPU-hour of it the run used (its CPU-seconds over the server's logical CPUs), or whole for a reserved one.
  Always a line of its own: never folded into the operational CO2e of the electricity.
* **Water** — on-site, the cooling's water usage effectiveness (WUE) times the IT energy: 1.8 L/kWh, the US
  data-centre average (Shehabi et al. 2016, LBNL "United States Data Center Energy Usage Report"); off-site, the
  water the grid consumes to generate the facility's energy: 3.75 L/kWh, the world-average factor CodeCarbon's water
  proposal falls back to (Macknick et al. 2012; Meldrum et al. 2013).
"""

from __future__ import annotations

__all__ = [
    "EMBODIED_SOURCE",
    "GPU_EMBODIED_G_PER_HOUR",
    "GRID_WATER_L_PER_KWH",
    "HOST_EMBODIED_G_PER_HOUR",
    "LIFETIME_HOURS",
    "WATER_SOURCE",
    "WUE_L_PER_KWH",
]

#: The hardware's service life the embodied carbon is spread over: 6 years.
LIFETIME_HOURS = 6 * 8760
#: One data-centre GPU's embodied carbon per hour of its life: 150 kgCO2e / 6 years.
GPU_EMBODIED_G_PER_HOUR = 150_000.0 / LIFETIME_HOURS
#: One server's (without its GPUs) embodied carbon per hour of its life: 2,500 kgCO2e / 6 years.
HOST_EMBODIED_G_PER_HOUR = 2_500_000.0 / LIFETIME_HOURS
EMBODIED_SOURCE = "Luccioni et al. 2023 (BLOOM): 150 kgCO2e per GPU, 2,500 kgCO2e per server, 6-year life"
#: On-site water per kWh of IT energy (WUE).
WUE_L_PER_KWH = 1.8
#: Off-site water per kWh generated (the grid's water intensity).
GRID_WATER_L_PER_KWH = 3.75
WATER_SOURCE = "WUE 1.8 L/kWh (Shehabi et al. 2016, US average); grid 3.75 L/kWh (world average, Macknick et al. 2012)"
