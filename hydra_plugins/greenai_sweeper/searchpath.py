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


if not OmegaConf.has_resolver("greenai_wandb_offline"):
    OmegaConf.register_new_resolver("greenai_wandb_offline", _wandb_offline)


class GreenAISearchPathPlugin(SearchPathPlugin):
    """Append ``pkg://lightning_greenai.conf`` to every Hydra app's search path.

    It holds ``callbacks=greenai``, ``logger=csv|tensorboard|mlflow|wandb``, ``greenai/grid=<country>``.
    """

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        """Add the package's configs after the app's own."""
        search_path.append(provider="lightning_greenai", path="pkg://lightning_greenai.conf")
