"""How many trials a Hydra launcher really runs at once: the default batch size of a budget sweep.

A batch larger than that would queue trials behind each other, and a queued trial starts after the budget may be
spent; a batch of exactly the launcher's parallelism starts every admitted trial at once.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["launcher_parallelism", "prepare_launcher"]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _get(cfg: Any, key: str, default: Any) -> Any:
    try:
        value = cfg.get(key, default)
    except AttributeError:
        return default
    return default if value is None else value


def launcher_parallelism(launcher_cfg: Any) -> tuple[int, str]:
    """Return ``(trials the launcher runs at once, how that was found)`` for a ``hydra.launcher`` config.

    basic: 1 (it runs a batch one job after another); joblib: ``n_jobs`` (negative counts back from the CPUs, as
    joblib does); submitit SLURM: ``array_parallelism``; submitit local: the CPUs over ``cpus_per_task``; Ray: the CPUs
    given to ``ray.init`` over each job's ``num_cpus``. An unknown launcher gets 1, with a note to set
    ``hydra.sweeper.max_batch_size``.
    """
    target = str(_get(launcher_cfg, "_target_", ""))
    name = target.rsplit(".", 1)[-1]
    if name == "BasicLauncher":
        return 1, "the basic launcher runs one job at a time"
    if "Joblib" in name:
        n_jobs = int(_get(launcher_cfg, "n_jobs", -1))
        cpus = _cpus()
        parallel = n_jobs if n_jobs > 0 else max(cpus + 1 + n_jobs, 1)
        return parallel, f"joblib n_jobs={n_jobs}"
    if "Slurm" in name:
        return int(_get(launcher_cfg, "array_parallelism", 256)), "submitit array_parallelism"
    if "Submitit" in name or "Local" in name:
        per_task = max(int(_get(launcher_cfg, "cpus_per_task", 1) or 1), 1)
        return max(_cpus() // per_task, 1), f"submitit local: {_cpus()} CPUs / cpus_per_task={per_task}"
    if "Ray" in name:
        ray = _get(launcher_cfg, "ray", {})
        init = _get(ray, "init", {})
        per_job = float(_get(_get(ray, "remote", {}), "num_cpus", 1) or 1)
        if _get(init, "address", None):
            total = _ray_cluster_cpus(init)
            return max(int(total // per_job), 1), f"ray cluster: {total:g} CPUs / num_cpus={per_job:g} per job"
        init_cpus = _get(init, "num_cpus", None)
        cpus = int(init_cpus) if init_cpus else _cpus()
        return max(int(cpus // per_job), 1), f"ray: {cpus} CPUs / num_cpus={per_job:g} per job"
    return 1, f"unknown launcher {target!r}: one at a time (set hydra.sweeper.max_batch_size to run more)"


def _ray_cluster_cpus(init: Any) -> float:
    """Connect to the running Ray cluster at ``init.address`` (the launcher reuses the connection); its CPUs."""
    import importlib

    from omegaconf import OmegaConf

    ray: Any = importlib.import_module("ray")  # only with the Ray launcher, which needs it
    if not ray.is_initialized():
        options: Any = OmegaConf.to_container(init, resolve=True) if OmegaConf.is_config(init) else dict(init)
        ray.init(**{k: v for k, v in options.items() if v is not None})
    return float(ray.cluster_resources().get("CPU", 1.0))


def prepare_launcher(launcher: Any) -> None:
    """Make a launcher work as its config says where a known bug of its plugin stands in the way.

    hydra-ray-launcher gives ``ray.init`` an ``object_store_memory`` by default, which Ray refuses when it connects to
    a running cluster (``ray.init.address``): there the cluster's own setting is left alone.
    """
    init = getattr(getattr(launcher, "ray_cfg", None), "init", None)
    if init is None or not init.get("address") or "object_store_memory" in init:
        return
    from omegaconf import open_dict

    with open_dict(init):
        init["object_store_memory"] = None
