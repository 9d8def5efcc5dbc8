"""Scaling by a constant, a learning rate, or a schedule."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optcompose import validate
from optcompose.base import GradientTransformation, ScalarOrSchedule, Schedule
from optcompose.hyperparams import Hyperparams, HyperparamSpec
from optcompose.numerics import scale_tree
from optcompose.tree import safe_increment


class ScaleState(NamedTuple):
    hyperparams: Hyperparams


class ScaleByLearningRateState(NamedTuple):
    count: jax.Array
    hyperparams: Hyperparams


class ScaleByScheduleState(NamedTuple):
    count: jax.Array


def scale(step_size: float) -> GradientTransformation:
    """Multiplies every update by a constant: ``u -> step_size * u``.

    ``step_size`` is kept in the state (``hyperparams['step_size']``) so it can be changed
    without recompiling.
    """
    validate.hyperparameter("step_size", step_size)
    if callable(step_size):
        raise TypeError("scale takes a number; use scale_by_schedule for a schedule")
    spec = HyperparamSpec(step_size=step_size)

    def init(params):
        del params
        return ScaleState(spec.init())

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return scale_tree(updates, state.hyperparams["step_size"]), state

    return GradientTransformation(init, update)


def scale_by_learning_rate(learning_rate: ScalarOrSchedule, *, flip_sign: bool = True) -> GradientTransformation:
    """Multiplies updates by the learning rate, negated by default: ``u -> -lr_t * u``.

    ``lr_t`` is a constant kept in the state or ``learning_rate(t)`` for a schedule, with ``t`` the
    number of updates done before this one (so the first update uses ``learning_rate(0)``).
    """
    validate.non_negative("learning_rate", learning_rate)
    spec = HyperparamSpec(learning_rate=learning_rate)
    sign = -1.0 if flip_sign else 1.0

    def init(params):
        del params
        return ScaleByLearningRateState(jnp.zeros((), jnp.int32), spec.init())

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        lr = spec.current(state.hyperparams, state.count)["learning_rate"]
        count = safe_increment(state.count)
        updates = scale_tree(updates, sign * lr)
        return updates, ScaleByLearningRateState(count, spec.advance(state.hyperparams, count))

    return GradientTransformation(init, update)


def scale_by_schedule(step_size_fn: Schedule) -> GradientTransformation:
    """Multiplies updates by a schedule of the step count: ``u -> step_size_fn(t) * u``."""
    if not callable(step_size_fn):
        raise TypeError(f"step_size_fn must be a function of the step count, got {step_size_fn!r}")

    def init(params):
        del params
        return ScaleByScheduleState(jnp.zeros((), jnp.int32))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        factor = jnp.asarray(step_size_fn(state.count), jnp.float32)
        return scale_tree(updates, factor), ScaleByScheduleState(safe_increment(state.count))

    return GradientTransformation(init, update)
