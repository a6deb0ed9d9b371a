"""Carbon intensity, PUE and prices: :class:`Grid` turns a :class:`~lightning_greenai.Spend` into CO2e and money.

The tables in ``data/`` ship with the package and state their source and year; nothing is fetched at run time.
"""

from lightning_greenai.grid.grid import Grid

__all__ = ["Grid"]
