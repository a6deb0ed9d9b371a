"""The Lightning-free metering core: the Meter, its distributed reduction and a run's totals."""
