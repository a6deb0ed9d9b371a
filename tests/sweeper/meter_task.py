"""A synthetic Hydra task with a known cost, metered by a plain Meter: used by the sweeper tests.

Each trial runs ``steps`` steps of ``joules_per_step`` J (a fake counter), sleeping ``step_s`` per step, and returns
``{"objective": -(x - 3)^2}``. ``crash_at`` kills the process (os._exit) at that step of the trial with
``x == crash_x`` (once only if ``crash_once_file`` is set); ``fail`` raises; ``bad_objective`` returns a string.
"""

import os
import time

import hydra
from omegaconf import DictConfig

from lightning_greenai import Meter
from lightning_greenai.sensors.fake import FakeSensor


@hydra.main(version_base="1.3", config_path=".", config_name="meter_task")
def main(cfg: DictConfig) -> dict:
    energy = {"j": 0.0}
    with Meter([FakeSensor("gpu:0", lambda: energy["j"])]) as meter:
        for step in range(cfg.steps):
            if meter.should_stop():
                break
            if cfg.crash_at is not None and step == cfg.crash_at and cfg.x == cfg.crash_x:
                once = cfg.crash_once_file
                if once is None or not os.path.exists(once):
                    if once is not None:
                        open(once, "w").close()
                    os._exit(17)
            energy["j"] += cfg.joules_per_step
            meter.add_flops(cfg.flops_per_step)
            time.sleep(cfg.step_s)
            meter.sample()
    if cfg.fail:
        raise RuntimeError("this trial was asked to fail")
    if cfg.bad_objective:
        return {"objective": "not a number"}
    return {"objective": -((cfg.x - 3.0) ** 2), "steps": step + 1}


if __name__ == "__main__":
    main()
