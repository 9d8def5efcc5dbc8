"""Scaling by a constant, a learning rate, or a schedule."""

from __future__ import annotations

from typing import NamedTuple

import jax

from optcompose import _validate as validate
from optcompose._base import ScalarOrSchedule, Schedule
from optcompose._hyperparams import Hyperparams
from optcompose._leafwise import Leafwise, leafwise


class ScaleState(NamedTuple):
    hyperparams: Hyperparams


def _scale(g, *, hp):
    return hp.step_size * g


def scale(step_size: float) -> Leafwise:
    """Multiplies every update by a constant: ``u -> step_size * u``.

    ``step_size`` is kept in the state (``hyperparams['step_size']``) so it can be changed
    without recompiling.
    """
    if callable(step_size):
        raise TypeError("scale takes a number; use scale_by_schedule for a schedule")
    validate.hyperparameter("step_size", step_size)
    return leafwise(_scale, ScaleState, hyperparams={"step_size": step_size}, name="scale")


class ScaleByLearningRateState(NamedTuple):
    count: jax.Array
    hyperparams: Hyperparams


def _scale_by_learning_rate(g, *, hp, flip_sign):
    return (-hp.learning_rate if flip_sign else hp.learning_rate) * g


def scale_by_learning_rate(learning_rate: ScalarOrSchedule, *, flip_sign: bool = True) -> Leafwise:
    """Multiplies updates by the learning rate, negated by default: ``u -> -lr_t * u``.

    ``lr_t`` is a constant kept in the state or ``learning_rate(t)`` for a schedule, with ``t`` the
    number of updates done before this one (so the first update uses ``learning_rate(0)``).
    """
    validate.non_negative("learning_rate", learning_rate)
    return leafwise(
        _scale_by_learning_rate, ScaleByLearningRateState, hyperparams={"learning_rate": learning_rate},
        static={"flip_sign": flip_sign}, name="scale_by_learning_rate",
    )  # fmt: skip


class ScaleByScheduleState(NamedTuple):
    count: jax.Array


def _scale_by_schedule(g, *, hp):
    return hp.step_size * g


def scale_by_schedule(step_size_fn: Schedule) -> Leafwise:
    """Multiplies updates by a schedule of the step count: ``u -> step_size_fn(t) * u``.

    The state is only the count (Optax's ``ScaleByScheduleState``): the schedule is the source of
    the value, so nothing is stored for ``get_hyperparams``; use ``scale_by_learning_rate`` for that.
    """
    if not callable(step_size_fn):
        raise TypeError(f"step_size_fn must be a function of the step count, got {step_size_fn!r}")
    return leafwise(
        _scale_by_schedule, ScaleByScheduleState, hyperparams={"step_size": step_size_fn}, name="scale_by_schedule"
    )
