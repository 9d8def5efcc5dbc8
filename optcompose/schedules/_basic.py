"""Elementary schedules: constant, linear, polynomial, exponential and piecewise-constant.

Every schedule is a pure function of the step count ``t`` (a Python int, a NumPy integer or a JAX
integer array; see :mod:`optcompose.schedules._count`) returning a float32 scalar, safe to call
under ``jit``/``vmap`` and finite at any count. Arguments are checked when the schedule is built.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from optcompose import _validate as validate
from optcompose._base import Schedule
from optcompose.schedules import _count, _mix


def constant_schedule(value: jax.typing.ArrayLike) -> Schedule:
    """A schedule that ignores the step: ``f(t) = value``.

    Args:
        value: the value returned at every step.

    Returns:
        A function of the step count returning ``value`` as float32.
    """
    validate.finite("value", value)
    value32 = _count.f32(value)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        return jnp.broadcast_to(value32, jnp.shape(count))

    return schedule


def polynomial_schedule(
    init_value: jax.typing.ArrayLike,
    end_value: jax.typing.ArrayLike,
    power: jax.typing.ArrayLike,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """Polynomial interpolation from ``init_value`` to ``end_value`` over ``transition_steps``.

    With ``I = init_value``, ``E = end_value``, ``p = power``, ``B = transition_begin`` and
    ``T = transition_steps``::

        f(t) = I                                   for t <= B
        f(t) = E + (I - E) * (1 - (t - B) / T)**p  for B <= t <= B + T
        f(t) = E                                   for t >= B + T

    ``T = 0`` disables the transition: the schedule holds ``I`` forever (as in Optax).

    Args:
        init_value: value before and at the start of the transition.
        end_value: value at and after the end of the transition.
        power: exponent ``p >= 0`` of the polynomial; ``1`` is linear.
        transition_steps: length ``T >= 0`` of the transition, in steps.
        transition_begin: step ``B >= 0`` at which the transition starts.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if a step argument is negative or a value is not finite.
    """
    validate.finite("init_value", init_value)
    validate.finite("end_value", end_value)
    validate.non_negative("power", power)
    validate.integer_at_least("transition_steps", transition_steps, 0)
    validate.integer_at_least("transition_begin", transition_begin, 0)
    init32, end32, power32 = _count.f32(init_value), _count.f32(end_value), _count.f32(power)
    steps, begin = int(transition_steps), int(transition_begin)
    is_linear = _count.equals(power, 1.0)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        count = _count.as_count(count)
        if steps == 0:
            return jnp.broadcast_to(init32, jnp.shape(count))
        done = _count.elapsed(count, begin, steps)
        if is_linear:
            return _mix.linear(init32, end32, done, steps - done)
        weight = jnp.power((steps - done) / steps, power32)
        return init32 * weight + end32 * (1.0 - weight)

    return schedule


def linear_schedule(
    init_value: jax.typing.ArrayLike,
    end_value: jax.typing.ArrayLike,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """Linear interpolation from ``init_value`` to ``end_value`` over ``transition_steps``.

    With ``I = init_value``, ``E = end_value``, ``B = transition_begin``, ``T = transition_steps``::

        f(t) = I + (E - I) * clip((t - B) / T, 0, 1)

    This is :func:`polynomial_schedule` with ``power = 1``; ``T = 0`` holds ``I`` forever.

    Args:
        init_value: value before and at the start of the transition.
        end_value: value at and after the end of the transition.
        transition_steps: length ``T >= 0`` of the transition, in steps.
        transition_begin: step ``B >= 0`` at which the transition starts.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if a step argument is negative or a value is not finite.
    """
    return polynomial_schedule(init_value, end_value, 1.0, transition_steps, transition_begin)


def exponential_decay(
    init_value: jax.typing.ArrayLike,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: jax.typing.ArrayLike | None = None,
) -> Schedule:
    """Exponential decay (or growth) by ``decay_rate`` every ``transition_steps`` steps.

    With ``I = init_value``, ``r = decay_rate``, ``B = transition_begin``, ``T = transition_steps``::

        k(t) = max(t - B, 0) / T          (rounded down when ``staircase``)
        f(t) = I * r**k(t)

    When ``end_value`` is given it bounds the value at every step: from below when ``r < 1``, from
    above when ``r > 1`` (so, as in Optax, it also applies before ``B``). Without ``end_value`` a
    growing schedule (``r > 1``) stops growing where ``r**k`` reaches ``1e38`` (the result clipped to
    the float32 range), so it never returns inf.

    Args:
        init_value: value before ``transition_begin``.
        transition_steps: ``T >= 1``, the number of steps over which the value is multiplied by ``r``.
        decay_rate: ``r > 0``, the factor per ``T`` steps.
        transition_begin: step ``B >= 0`` at which the decay starts.
        staircase: decay in discrete jumps every ``T`` steps instead of continuously.
        end_value: optional bound the value never crosses.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if ``transition_steps < 1``, ``decay_rate <= 0``, ``transition_begin < 0``, or a
            value is not finite.
    """
    validate.finite("init_value", init_value)
    validate.integer_at_least("transition_steps", transition_steps, 1)
    validate.positive("decay_rate", decay_rate)
    validate.integer_at_least("transition_begin", transition_begin, 0)
    if end_value is not None:
        validate.finite("end_value", end_value)
    init32, rate32 = _count.f32(init_value), _count.f32(decay_rate)
    end32 = None if end_value is None else _count.f32(end_value)
    steps, begin = int(transition_steps), int(transition_begin)
    rate = float(np.asarray(decay_rate))
    # For growth, cap the exponent where r**k reaches 1e38, so I * r**k stays finite (or clips).
    max_exponent = float(np.log(1e38) / np.log(rate)) if rate > 1 else None

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        count = _count.as_count(count)
        if staircase and _count.is_int(count):
            since = jnp.maximum(count - min(begin, _count.int_max()), 0)
            exponent = (since // min(steps, _count.int_max())).astype(jnp.float32)
            if steps > _count.int_max():
                exponent = jnp.zeros_like(exponent)
        else:
            exponent = _count.elapsed(count, begin) / steps
            if staircase:
                exponent = jnp.floor(exponent)
        if max_exponent is not None:
            exponent = jnp.minimum(exponent, max_exponent)
        value = init32 * jnp.power(rate32, exponent)
        if end32 is not None:
            value = jnp.maximum(value, end32) if rate < 1 else jnp.minimum(value, end32)
        return _count.finite_f32(value)

    return schedule


def piecewise_constant_schedule(
    init_value: jax.typing.ArrayLike,
    boundaries_and_scales: Mapping[int, float] | None = None,
) -> Schedule:
    """A step function: the value is multiplied by ``scale`` at each ``boundary`` step.

    With ``I = init_value`` and ``boundaries_and_scales = {b_1: s_1, ..., b_n: s_n}``::

        f(t) = I * prod(s_i for every i with t >= b_i)

    With every ``s_i = gamma`` this is PyTorch's ``MultiStepLR(milestones=[b_1, ...], gamma)``:
    the value at step ``t`` is the learning rate after ``t`` calls of ``scheduler.step()``.

    Args:
        init_value: value before the first boundary.
        boundaries_and_scales: ``{step: scale}`` with integer steps ``>= 0`` (in any order) and
            finite scales ``>= 0``; ``None`` or empty gives a constant schedule.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if a boundary is negative or a scale is negative or not finite.
    """
    validate.finite("init_value", init_value)
    pairs = sorted((boundaries_and_scales or {}).items())
    for boundary, scale in pairs:
        validate.integer_at_least("boundaries_and_scales (a boundary step)", boundary, 0)
        validate.finite("boundaries_and_scales (a scale)", scale)
        validate.non_negative("boundaries_and_scales (a scale)", scale)
    init32 = _count.f32(init_value)
    # Cumulative products on the host in float64, one rounding to float32 per level.
    factors = np.cumprod([float(np.asarray(scale)) for _, scale in pairs], dtype=np.float64)
    levels = [init32 * _count.f32(factor) for factor in factors]
    boundaries = [int(boundary) for boundary, _ in pairs]

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        count = _count.as_count(count)
        value = jnp.broadcast_to(init32, jnp.shape(count))
        for boundary, level in zip(boundaries, levels, strict=True):
            value = jnp.where(_count.reached(count, boundary), level, value)
        return _count.finite_f32(value)

    return schedule
