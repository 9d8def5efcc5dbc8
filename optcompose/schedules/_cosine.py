"""Cosine annealing, with warm-up and with warm restarts (SGDR).

Reference: I. Loshchilov and F. Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts",
ICLR 2017 (https://arxiv.org/abs/1608.03983).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import Schedule
from optcompose.schedules import _count, _mix
from optcompose.schedules._join import join_schedules

_INT64_MAX = 2**63 - 1


def cosine_decay_schedule(
    init_value: jax.typing.ArrayLike,
    decay_steps: int,
    alpha: jax.typing.ArrayLike = 0.0,
    exponent: jax.typing.ArrayLike = 1.0,
) -> Schedule:
    """Cosine annealing from ``init_value`` to ``alpha * init_value`` over ``decay_steps``.

    With ``I = init_value``, ``T = decay_steps``, ``a = alpha`` and ``p = exponent``
    (Loshchilov & Hutter, 2017, eq. 5, one period without restart)::

        c(t) = (0.5 * (1 + cos(pi * min(t, T) / T)))**p
        f(t) = a * I + (1 - a) * I * c(t)

    so ``f(0) = I`` and ``f(t) = a * I`` for ``t >= T``. For ``t <= T`` this equals PyTorch's
    ``CosineAnnealingLR(T_max=T, eta_min=a * I)``; after ``T`` PyTorch's value rises again along the
    cosine, this one stays at ``a * I``.

    Args:
        init_value: value at step 0.
        decay_steps: ``T >= 1``, the number of steps of the decay.
        alpha: final value as a fraction of ``init_value``.
        exponent: ``p >= 0``, applied to the cosine factor (1 is the usual cosine).

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if ``decay_steps < 1``, ``exponent < 0`` or a value is not finite.
    """
    validate.finite("init_value", init_value)
    validate.integer_at_least("decay_steps", decay_steps, 1)
    validate.finite("alpha", alpha)
    validate.finite("exponent", exponent)
    validate.non_negative("exponent", exponent)
    init32, alpha32 = _count.f32(init_value), _count.f32(alpha)
    exponent32 = None if _count.equals(exponent, 1.0) else _count.f32(exponent)
    steps = int(decay_steps)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        count = _count.as_count(count)
        done = _count.elapsed(count, 0, steps)
        return _mix.cosine(init32, alpha32 * init32, done, steps - done, exponent32)

    return schedule


def warmup_cosine_decay_schedule(
    init_value: jax.typing.ArrayLike,
    peak_value: jax.typing.ArrayLike,
    warmup_steps: int,
    decay_steps: int,
    end_value: jax.typing.ArrayLike = 0.0,
    exponent: jax.typing.ArrayLike = 1.0,
) -> Schedule:
    """Linear warm-up to ``peak_value``, then cosine annealing to ``end_value``.

    With ``I = init_value``, ``P = peak_value``, ``E = end_value``, ``W = warmup_steps``,
    ``D = decay_steps`` (the total length, warm-up included) and ``p = exponent``::

        f(t) = I + (P - I) * t / W                                     for t < W
        f(t) = E + (P - E) * (0.5 * (1 + cos(pi * (t - W) / (D - W))))**p  for W <= t <= D
        f(t) = E                                                       for t >= D

    ``W = 0`` starts the cosine at ``P`` on step 0.

    Args:
        init_value: value at step 0.
        peak_value: value at the end of the warm-up.
        warmup_steps: length ``W >= 0`` of the linear warm-up.
        decay_steps: total length ``D > W`` of warm-up plus cosine decay.
        end_value: value at step ``D`` and after.
        exponent: ``p >= 0``, applied to the cosine factor.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if ``warmup_steps < 0``, ``decay_steps <= warmup_steps``, ``exponent < 0`` or a
            value is not finite.
    """
    for name, value in (("init_value", init_value), ("peak_value", peak_value), ("end_value", end_value)):
        validate.finite(name, value)
    validate.finite("exponent", exponent)
    validate.non_negative("exponent", exponent)
    validate.integer_at_least("warmup_steps", warmup_steps, 0)
    validate.integer_at_least("decay_steps", decay_steps, 1)
    if warmup_steps >= decay_steps:
        raise ValueError(
            f"warmup_steps must be smaller than decay_steps (the total length, warm-up included), "
            f"got warmup_steps={warmup_steps!r}, decay_steps={decay_steps!r}"
        )
    init32, peak32, end32 = _count.f32(init_value), _count.f32(peak_value), _count.f32(end_value)
    exponent32 = None if _count.equals(exponent, 1.0) else _count.f32(exponent)
    warmup, cosine_steps = int(warmup_steps), int(decay_steps) - int(warmup_steps)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        count = _count.as_count(count)
        done = _count.elapsed(count, warmup, cosine_steps)
        value = _mix.cosine(peak32, end32, done, cosine_steps - done, exponent32)
        if warmup == 0:
            return value
        ramp = _count.elapsed(count, 0, warmup)
        warm = _mix.linear(init32, peak32, ramp, warmup - ramp)
        return jnp.where(_count.reached(count, warmup), value, warm)

    return schedule


def sgdr_schedule(cosine_kwargs: Iterable[Mapping[str, Any]]) -> Schedule:
    """SGD with warm restarts: warm-up-and-cosine cycles run back to back.

    Each entry of ``cosine_kwargs`` holds the arguments of one :func:`warmup_cosine_decay_schedule`
    cycle ``f_i`` (``init_value``, ``peak_value``, ``warmup_steps``, ``decay_steps``, and optionally
    ``end_value``, ``exponent``). Cycle ``i`` starts at ``b_i = D_0 + ... + D_{i-1}``::

        f(t) = f_i(t - b_i)   for b_i <= t < b_{i+1}

    and the last cycle holds its ``end_value`` forever (Loshchilov & Hutter, 2017). For PyTorch's
    geometric restarts see :func:`cosine_warm_restarts_schedule`.

    Args:
        cosine_kwargs: one mapping of keyword arguments per cycle, at least one.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if there are no cycles or a cycle's arguments are invalid (the message names the
            cycle and the argument).
    """
    schedules, boundaries, start = [], [], 0
    for index, kwargs in enumerate(cosine_kwargs):
        if not isinstance(kwargs, Mapping):
            raise TypeError(f"cosine_kwargs[{index}] must be a mapping of keyword arguments, got {kwargs!r}")
        try:
            schedules.append(warmup_cosine_decay_schedule(**kwargs))
        except (TypeError, ValueError) as err:
            raise type(err)(f"cosine_kwargs[{index}]: {err}") from err
        boundaries.append(start)
        start += int(kwargs["decay_steps"])
    if not schedules:
        raise ValueError("cosine_kwargs must describe at least one cycle, got none")
    return join_schedules(schedules, boundaries[1:])


def cosine_warm_restarts_schedule(
    init_value: jax.typing.ArrayLike,
    first_period: int,
    period_mult: int = 1,
    end_value: jax.typing.ArrayLike = 0.0,
) -> Schedule:
    """Cosine annealing with warm restarts, step for step as PyTorch's ``CosineAnnealingWarmRestarts``.

    With ``I = init_value``, ``E = end_value``, ``T_0 = first_period`` and ``m = period_mult``, the
    ``i``-th period has length ``T_i = T_0 * m**i`` and starts at ``S_i = T_0 + ... + T_{i-1}``
    (Loshchilov & Hutter, 2017, eq. 5)::

        f(t) = E + (I - E) * (1 + cos(pi * (t - S_i) / T_i)) / 2   for S_i <= t < S_{i+1}

    so each period starts at ``I`` and restarts just before reaching ``E``. The value at step ``t``
    is PyTorch's learning rate after ``t`` calls of ``scheduler.step()`` with
    ``CosineAnnealingWarmRestarts(T_0=first_period, T_mult=period_mult, eta_min=end_value)``.
    Restart positions are found with integer arithmetic, exact at any count.

    Args:
        init_value: value at the start of every period (PyTorch's base learning rate).
        first_period: ``T_0 >= 1``, the length of the first period in steps.
        period_mult: integer ``m >= 1``, the growth factor of the period after each restart.
        end_value: the value approached at the end of every period (PyTorch's ``eta_min``).

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if ``first_period < 1``, ``period_mult < 1`` or a value is not finite.
    """
    validate.finite("init_value", init_value)
    validate.finite("end_value", end_value)
    validate.integer_at_least("first_period", first_period, 1)
    validate.integer_at_least("period_mult", period_mult, 1)
    init32, end32 = _count.f32(init_value), _count.f32(end_value)
    first, mult = int(first_period), int(period_mult)
    # Period starts S_i and lengths T_i until S_i passes any count JAX can hold (at most 63 of them).
    starts, periods = [0], [first]
    while mult > 1 and starts[-1] + periods[-1] <= _INT64_MAX:
        starts.append(starts[-1] + periods[-1])
        periods.append(periods[-1] * mult)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        count = _count.as_count(count)
        if mult == 1:
            # A period longer than any integer count never ends.
            huge = _count.is_int(count) and first > _count.int_max()
            since = count if huge else jnp.mod(count, first)
            period = jnp.float32(first)
        else:
            top = _count.int_max() if _count.is_int(count) else math.inf
            start = jnp.zeros_like(count)
            period = jnp.full(jnp.shape(count), float(first), jnp.float32)
            for begin, length in zip(starts[1:], periods[1:], strict=True):
                if begin > top:
                    break
                restarted = count >= begin
                start = jnp.where(restarted, jnp.asarray(begin, count.dtype), start)
                period = jnp.where(restarted, jnp.float32(length), period)
            since = count - start
        since = since.astype(jnp.float32)
        return _mix.cosine(init32, end32, since, period - since)

    return schedule
