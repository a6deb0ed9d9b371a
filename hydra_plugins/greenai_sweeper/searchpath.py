"""Make the configs shipped in ``lightning_greenai/conf`` composable from any Hydra app, and register resolvers."""

import os
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf


def _wandb_offline() -> bool:
    """Whether W&B should log offline: no API key in the environment or ~/.netrc."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") == "online":
        return False
    netrc = Path.home() / ".netrc"
    return not (netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore"))


def _output_root() -> str:
    """Where a run's shared stores go: the sweep dir in a multirun (one store for every trial), else the run's dir."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        cfg = HydraConfig.get()
        folder = cfg.sweep.dir if cfg.mode == RunMode.MULTIRUN else cfg.runtime.output_dir
    except ValueError:  # outside a Hydra app
        folder = os.getcwd()
    return str(Path(folder).absolute())


def _run_name() -> str | None:
    """A trial's run name in the trackers: ``trial-<job number>`` in a multirun; ``None`` (the tracker's own) else."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        cfg = HydraConfig.get()
        return f"trial-{cfg.job.num}" if cfg.mode == RunMode.MULTIRUN else None
    except (ValueError, AttributeError):
        return None


if not OmegaConf.has_resolver("greenai_run_name"):
    OmegaConf.register_new_resolver("greenai_run_name", _run_name)
if not OmegaConf.has_resolver("greenai_wandb_offline"):
    OmegaConf.register_new_resolver("greenai_wandb_offline", _wandb_offline)
if not OmegaConf.has_resolver("greenai_output_root"):
    OmegaConf.register_new_resolver("greenai_output_root", _output_root)


class GreenAISearchPathPlugin(SearchPathPlugin):
    """Append ``pkg://lightning_greenai.conf`` to every Hydra app's search path.

    It holds ``callbacks=greenai``, ``logger=csv|tensorboard|mlflow|wandb``, ``greenai/grid=<country>``.
    """

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        """Add the package's configs after the app's own."""
        search_path.append(provider="lightning_greenai", path="pkg://lightning_greenai.conf")
