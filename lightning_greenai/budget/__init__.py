"""Budgets: limits on compute spend, and (with the sweeper) the ledger that checks a search against them."""

from lightning_greenai.budget.budget import Budget

__all__ = ["Budget"]
