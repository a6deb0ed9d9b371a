"""Hydra sweeper plugin ``hydra/sweeper=greenai``: a budget-limited search (implementation in lightning_greenai)."""

__version__ = "0.1.0"
