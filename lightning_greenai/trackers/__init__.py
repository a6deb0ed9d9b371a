"""Sweep-level budget curves pushed through the Lightning loggers users already have.

:func:`publish` takes a sweep's summary and sends, through one logger (W&B, MLflow, TensorBoard, CSV, or any other
Lightning logger), the best score so far against cumulative spend (energy, FLOPs, CO2e, money, GPU-hours) and, for
i.i.d. (random) sweeps, the expected-validation-performance curve with its ±SD band. Per-run live metrics come from
the callbacks; this adds the curves a sweep needs, as one summary run.
"""

from lightning_greenai.trackers.sinks import AXES, CurvePoint, CurveSink, LoggerSink, curve_points, publish, step_unit

__all__ = ["AXES", "CurvePoint", "CurveSink", "LoggerSink", "curve_points", "publish", "step_unit"]
