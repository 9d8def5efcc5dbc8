"""Argument checks shared by every factory: one place that raises, one message style.

Every check names the argument, states what was expected and what was received. Checks run at
construction time on concrete Python numbers; a schedule (a callable) cannot be checked until it
is evaluated, so it passes through untouched.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


def _is_schedule(value: Any) -> bool:
    return callable(value)


def _concrete_float(name: str, value: Any) -> float | None:
    """Returns ``value`` as a float, or None when it cannot be checked now (schedule or tracer)."""
    if value is None or _is_schedule(value) or isinstance(value, jax.core.Tracer):
        return None
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name} must be a real number or a schedule (a function of the step count), "
            f"got {value!r} of type {type(value).__name__}"
        ) from err


def non_negative(name: str, value: Any) -> None:
    """Raises ``ValueError`` unless ``value`` is a finite number >= 0 (schedules pass)."""
    number = _concrete_float(name, value)
    if number is not None and not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def positive(name: str, value: Any) -> None:
    """Raises ``ValueError`` unless ``value`` is a finite number > 0 (schedules pass)."""
    number = _concrete_float(name, value)
    if number is not None and not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def unit_interval(name: str, value: Any, *, closed_right: bool = False) -> None:
    """Raises ``ValueError`` unless ``0 <= value < 1`` (or ``<= 1`` when ``closed_right``)."""
    number = _concrete_float(name, value)
    if number is None:
        return
    upper_ok = number <= 1 if closed_right else number < 1
    if not (number >= 0 and upper_ok):
        interval = "[0, 1]" if closed_right else "[0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")


def integer_at_least(name: str, value: Any, minimum: int) -> None:
    """Raises ``ValueError`` unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def one_of(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    """Raises ``ValueError`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def callable_or_none(name: str, value: Any) -> None:
    """Raises ``TypeError`` unless ``value`` is callable or None."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {value!r}")


# Constraints by hyperparameter name, used where values arrive without their factory (for
# example ``set_hyperparams``). Names not listed are accepted as any finite number.
_BY_NAME: dict[str, Callable[[str, Any], None]] = {
    "learning_rate": non_negative,
    "step_size": lambda n, v: finite(n, v),  # any sign, but finite
    "eps": non_negative,
    "eps_root": non_negative,
    "weight_decay": non_negative,
    "b1": unit_interval,
    "b2": unit_interval,
    "decay": unit_interval,
    "momentum": unit_interval,
    "max_norm": positive,
    "max_delta": positive,
    "trust_coefficient": non_negative,
    "min_norm": non_negative,
}


def hyperparameter(name: str, value: Any) -> None:
    """Checks a hyperparameter by its name (see ``_BY_NAME``); unknown names must be finite."""
    check = _BY_NAME.get(name)
    if check is not None:
        check(name, value)
        return
    number = _concrete_float(name, value)
    if number is not None and not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")


def finite(name: str, value: Any) -> None:
    """Raises ``ValueError`` unless ``value`` is a finite number (schedules and tracers pass)."""
    number = _concrete_float(name, value)
    if number is not None and not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def open_unit_interval(name: str, value: Any) -> None:
    """Raises ``ValueError`` unless ``0 < value < 1`` (schedules and tracers pass)."""
    number = _concrete_float(name, value)
    if number is not None and not 0 < number < 1:
        raise ValueError(f"{name} must lie in the open interval (0, 1), got {value!r}")


def strictly_increasing(name: str, values: Any) -> None:
    """Raises ``ValueError`` unless the numbers in ``values`` increase strictly, left to right."""
    values = list(values)
    for index, (previous, current) in enumerate(itertools.pairwise(values)):
        if not current > previous:
            raise ValueError(
                f"{name} must be strictly increasing, got {values!r} "
                f"(entry {index + 1} = {current!r} does not exceed entry {index} = {previous!r})"
            )


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def fits_float32(name: str, value: Any) -> None:
    """Raises ``ValueError`` when a finite number would overflow float32 (become inf) when stored."""
    if isinstance(value, (bool, str)) or value is None:
        return
    try:
        number = float(np.asarray(value))
    except (TypeError, ValueError):
        return
    if math.isfinite(number) and abs(number) > _FLOAT32_MAX:
        raise ValueError(
            f"{name} = {value!r} overflows float32 (largest {_FLOAT32_MAX:.4g}); hyperparameters are "
            "stored as float32 data"
        )
