"""A synthetic Hydra task with a known cost, metered by a plain Meter: used by the sweeper tests.

Each trial runs ``blocks`` Meter blocks (pretrain, finetune ...) of ``steps`` (+ ``steps_per_x`` x ``x``) steps of
``joules_per_step`` J each (a fake counter), sleeping ``step_s`` per step, and returns ``{"objective": -(x - 3)^2}``.
At step ``crash_at`` of the trial with ``x == crash_x`` (once only if ``crash_once_file`` is set) it dies as
``crash_mode`` says: ``exit`` (os._exit, a SIGKILL-like death), ``sysexit`` (SystemExit, as Lightning turns SIGTERM
into), ``sigterm`` or ``sigint`` (a real signal to its own process), or ``lose_channel`` (it lives on, but no
heartbeat or final record it writes from then on reaches the sweeper). ``fail`` raises; ``bad_objective`` returns a
string; ``score`` replaces the objective of the ``crash_x`` trial (``nan``, ``inf``); ``sensor=none`` meters no
energy; ``needs`` names a module the trial imports first; while the file ``hold_file`` exists, each step waits
before it runs (the trial is alive and holds still until the test lets it go). With ``report``, each step is an
epoch whose score, ``-(x - 3)^2 / 10 + step / 100`` (the ranking of x never changes), goes to ``report_score``: a
pruned trial ends there and returns its last score; with ``report_spend`` it reports no resource, and the trial's
spend so far is taken (a sweep whose rungs count energy or FLOPs).
"""

import importlib
import os
import signal
import time

import hydra
from omegaconf import DictConfig

from lightning_greenai import Meter, report_score
from lightning_greenai.sensors.fake import FakeSensor


def crash(cfg: DictConfig) -> None:
    once = cfg.crash_once_file
    if once is not None and os.path.exists(once):
        return
    if once is not None:
        open(once, "w").close()
    if cfg.crash_mode == "exit":
        os._exit(17)
    if cfg.crash_mode == "sysexit":
        raise SystemExit(None)
    os.kill(os.getpid(), signal.SIGTERM if cfg.crash_mode == "sigterm" else signal.SIGINT)
    time.sleep(5.0)  # the signal arrives here


def lose_channel() -> None:
    """From now on, no heartbeat of this job reaches the sweeper (its file's place is taken by a folder)."""
    from hydra.core.hydra_config import HydraConfig

    from lightning_greenai.trial.channel import heartbeat_path

    path = heartbeat_path(HydraConfig.get().sweep.dir, HydraConfig.get().job.num)
    path.unlink()
    path.mkdir()


@hydra.main(version_base="1.3", config_path=".", config_name="meter_task")
def main(cfg: DictConfig) -> dict:
    if cfg.needs is not None:
        importlib.import_module(cfg.needs)  # an optional package the trial needs (a logger's, say)
    step, score = 0, None
    for _ in range(cfg.blocks):
        energy = {"j": 0.0}
        sensors = [FakeSensor("gpu:0", lambda e=energy: e["j"])] if cfg.sensor == "fake" else []
        with Meter(sensors) as meter:
            for step in range(cfg.steps + int(cfg.steps_per_x * cfg.x)):
                if meter.should_stop():
                    break
                while cfg.hold_file is not None and os.path.exists(cfg.hold_file):
                    time.sleep(0.05)
                if cfg.crash_at is not None and step == cfg.crash_at and cfg.x == cfg.crash_x:
                    if cfg.crash_mode == "lose_channel":
                        lose_channel()
                    else:
                        crash(cfg)
                energy["j"] += cfg.joules_per_step
                meter.add_flops(cfg.flops_per_step)
                time.sleep(cfg.step_s)
                meter.sample()
                if cfg.report:
                    score = -((cfg.x - 3.0) ** 2) / 10 + (step + 1) / 100
                    if cfg.report_spend:
                        if report_score(score):
                            break
                    elif report_score(score, step + 1, max_resource=cfg.steps if cfg.report_max else None):
                        break
    if cfg.fail:
        raise RuntimeError("this trial was asked to fail")
    if cfg.bad_objective:
        return {"objective": "not a number"}
    if cfg.score is not None and cfg.x == cfg.crash_x:
        return {"objective": float(cfg.score)}
    if score is not None:
        return {"objective": score, "steps": step + 1}
    return {"objective": -((cfg.x - 3.0) ** 2), "steps": step + 1}


if __name__ == "__main__":
    main()
