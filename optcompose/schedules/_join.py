"""Schedules run one after another, and the warm-up compositions built from them."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import Schedule
from optcompose.schedules import _count
from optcompose.schedules._basic import constant_schedule, exponential_decay, linear_schedule


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Runs ``schedules`` in turn, switching at the ``boundaries`` steps.

    With schedules ``f_0, ..., f_n`` and boundaries ``b_1 < ... < b_n`` (and ``b_0 = 0``)::

        f(t) = f_i(t - b_i)   for b_i <= t < b_{i+1}

    so each schedule sees the number of steps since its own start, and the last one runs forever.

    Args:
        schedules: one or more schedules (any functions of the step count).
        boundaries: ``len(schedules) - 1`` strictly increasing integer steps ``>= 0``.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if ``schedules`` is empty, the lengths do not match, or ``boundaries`` is not
            a strictly increasing sequence of non-negative integers.
        TypeError: if an entry of ``schedules`` is not callable.
    """
    schedules, boundaries = list(schedules), list(boundaries)
    if not schedules:
        raise ValueError("schedules must contain at least one schedule, got an empty sequence")
    for index, schedule in enumerate(schedules):
        if not callable(schedule):
            raise TypeError(f"schedules[{index}] must be a schedule (callable), got {schedule!r}")
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"boundaries must have one entry fewer than schedules ({len(schedules) - 1}), "
            f"got {len(boundaries)}: {boundaries!r}"
        )
    for index, boundary in enumerate(boundaries):
        validate.integer_at_least(f"boundaries[{index}]", boundary, 0)
    validate.strictly_increasing("boundaries", boundaries)
    boundaries = [int(boundary) for boundary in boundaries]

    def joined(count: jax.typing.ArrayLike) -> jax.Array:
        count = _count.as_count(count)
        value = jnp.asarray(schedules[0](count), jnp.float32)
        for boundary, schedule in zip(boundaries, schedules[1:], strict=True):
            if _count.is_int(count) and boundary > _count.int_max():
                break  # unreachable with this integer type, as are all later boundaries
            # count - boundary cannot overflow: both are representable and non-negative.
            later = jnp.asarray(schedule(count - boundary), jnp.float32)
            value = jnp.where(count < boundary, value, later)
        return value

    return joined


def warmup_constant_schedule(
    init_value: jax.typing.ArrayLike,
    peak_value: jax.typing.ArrayLike,
    warmup_steps: int,
) -> Schedule:
    """Linear warm-up from ``init_value`` to ``peak_value``, then constant at ``peak_value``.

    With ``I = init_value``, ``P = peak_value`` and ``W = warmup_steps``::

        f(t) = I + (P - I) * t / W   for t < W
        f(t) = P                     for t >= W

    ``W = 0`` gives ``P`` from the first step. (Optax 0.2.8 holds ``init_value`` forever in that
    case, a side effect of its zero-length linear schedule; a warm-up of length 0 should not.)

    Args:
        init_value: value at step 0.
        peak_value: value reached at the end of the warm-up and kept afterwards.
        warmup_steps: length ``W >= 0`` of the warm-up, in steps.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if ``warmup_steps < 0`` or a value is not finite.
    """
    validate.finite("init_value", init_value)
    validate.finite("peak_value", peak_value)
    validate.integer_at_least("warmup_steps", warmup_steps, 0)
    if warmup_steps == 0:
        return constant_schedule(peak_value)
    return linear_schedule(init_value, peak_value, warmup_steps)


def warmup_exponential_decay_schedule(
    init_value: jax.typing.ArrayLike,
    peak_value: jax.typing.ArrayLike,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: jax.typing.ArrayLike,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: jax.typing.ArrayLike | None = None,
) -> Schedule:
    """Linear warm-up to ``peak_value``, then :func:`exponential_decay` from ``peak_value``.

    With ``I = init_value``, ``P = peak_value``, ``W = warmup_steps`` and ``g`` the exponential decay
    ``exponential_decay(P, transition_steps, decay_rate, transition_begin, staircase, end_value)``::

        f(t) = I + (P - I) * t / W   for t < W
        f(t) = g(t - W)              for t >= W

    so ``transition_begin`` counts from the end of the warm-up.

    Args:
        init_value: value at step 0.
        peak_value: value at the end of the warm-up, where the decay starts.
        warmup_steps: length ``W >= 0`` of the warm-up, in steps.
        transition_steps: see :func:`exponential_decay`.
        decay_rate: see :func:`exponential_decay`.
        transition_begin: steps after the warm-up before the decay starts.
        staircase: see :func:`exponential_decay`.
        end_value: see :func:`exponential_decay`.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: on the conditions of :func:`exponential_decay`, or if ``warmup_steps < 0``.
    """
    validate.finite("init_value", init_value)
    validate.finite("peak_value", peak_value)
    validate.integer_at_least("warmup_steps", warmup_steps, 0)
    decay = exponential_decay(peak_value, transition_steps, decay_rate, transition_begin, staircase, end_value)
    if warmup_steps == 0:
        return decay
    return join_schedules([linear_schedule(init_value, peak_value, warmup_steps), decay], [warmup_steps])
