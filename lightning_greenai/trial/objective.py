"""Read a trial's objective from what its task returned: a number, or a mapping that names it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["ObjectiveError", "extract_objective"]


class ObjectiveError(ValueError):
    """The task's return value holds no usable objective."""


def extract_objective(value: Any, key: str | None = None) -> float:
    """Return the objective as a float.

    Raises:
        ObjectiveError: the value (or ``value[key]``) is missing, not float-castable, NaN or infinite.
    """
    if isinstance(value, Mapping):
        if key is None:
            if len(value) != 1:
                raise ObjectiveError(
                    f"The task returned a dict with keys {sorted(map(str, value))}: set hydra.sweeper.objective to the "
                    "key to optimise."
                )
            key = next(iter(value))
        if key not in value:
            raise ObjectiveError(f"The task's return value has no key {key!r}; keys: {sorted(map(str, value))}.")
        value = value[key]
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise ObjectiveError(f"Return value must be float-castable. Got {value!r}.") from err
    if not math.isfinite(number):
        raise ObjectiveError(f"The objective is {number}, not a finite number.")
    return number
