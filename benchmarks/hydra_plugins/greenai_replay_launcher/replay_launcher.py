"""``hydra/launcher=greenai_replay``: Hydra's basic launcher, composing a replay's job config once, not once a trial.

Hydra composes every job's config from the config files again (twice: the sweeper checks each batch, then the
launcher), about 0.2 s a trial here: longer than replaying a trial's 27 epochs. A replay's jobs differ only in the
trial's keys (``config_id``, or the table's hyperparameters), so this launcher composes the first job's config as Hydra
does and gives each later job that config with those keys (and the job's override lists) set. Everything else is the
basic launcher's: each job runs in this process through ``run_job``, so the trial, its heartbeat, the sweeper's
watchdog, rungs and ledger are the real ones.
Used by ``benchmarks/replay.py``; found by Hydra when ``benchmarks/`` is on ``sys.path`` (the script's own folder
is). No ``from __future__ import annotations`` here: Hydra's plugin scan runs the module before it is in
``sys.modules``, where a dataclass cannot resolve string annotations.
"""

from dataclasses import dataclass
from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

#: The keys a replay's trials differ in: a configuration's id, or the hyperparameters its nearest one is found by.
KEYS = ("config_id", "family", "optimizer", "lr", "weight_decay", "batch_size", "width", "depth")


@dataclass
class ReplayLauncherConf:
    _target_: str = "hydra_plugins.greenai_replay_launcher.replay_launcher.ReplayLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="greenai_replay", node=ReplayLauncherConf)


class _ComposedOnce:
    """A config loader that composes a job config once per set of other overrides, then only sets the trial's keys.

    Every job gets the same config object, with its own values of ``KEYS`` (and override lists) set: the launcher runs
    one job at a time and sets the job's number, id and output dir in it before each, so nothing of one job reaches
    the next, and no copy is made (a copy of Hydra's config costs about as much as replaying a trial).
    """

    def __init__(self, loader: Any) -> None:
        self._loader = loader
        self._composed: dict[tuple[str, ...], tuple[DictConfig, list[str], str]] = {}
        self._parser = OverridesParser.create()

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        mine = {o.split("=", 1)[0]: o for o in sweep_overrides if o.split("=", 1)[0] in KEYS}
        others = tuple(o for o in sweep_overrides if o.split("=", 1)[0] not in KEYS)
        if not mine or len(mine) != sum(o.split("=", 1)[0] in KEYS for o in sweep_overrides):
            return self._loader.load_sweep_config(master_config, sweep_overrides)
        key = (*others, *sorted(mine))  # the same keys swept: the first job's config, its overrides in place
        if key not in self._composed:
            cfg = self._loader.load_sweep_config(master_config, list(sweep_overrides))
            self._composed[key] = (cfg, list(cfg.hydra.overrides.task), str(cfg.hydra.job.override_dirname))
        cfg, task, dirname = self._composed[key]
        OmegaConf.set_readonly(cfg.hydra, None)  # the previous job's run_job left it read-only
        with open_dict(cfg):
            for name, override in mine.items():
                cfg[name] = self._parser.parse_override(override).value()
            cfg.hydra.overrides.task = [mine.get(o.split("=", 1)[0], o) for o in task]
            items = dirname.split(",") if dirname else []
            cfg.hydra.job.override_dirname = ",".join(mine.get(i.split("=", 1)[0], i) for i in items)
        return cfg

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class ReplayLauncher(BasicLauncher):
    """The basic launcher over a loader that composes a replay's job config once (see the module's docstring)."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        # the sweeper holds the same context: its check of each batch composes once too
        if not isinstance(hydra_context.config_loader, _ComposedOnce):
            hydra_context.config_loader = _ComposedOnce(hydra_context.config_loader)  # type: ignore[assignment]
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
