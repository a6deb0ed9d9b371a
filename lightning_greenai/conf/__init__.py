"""Hydra configs shipped with lightning-greenai; found through pkg://lightning_greenai.conf (see README)."""
