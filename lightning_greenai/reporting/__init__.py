"""Reports: the price tag of a run as a table and as JSON."""

from lightning_greenai.reporting.price_tag import PriceTag

__all__ = ["PriceTag"]
