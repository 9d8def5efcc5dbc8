"""Twins of PyTorch's factor schedulers and of its two scheduler combinators.

PyTorch's ``PolynomialLR``, ``LinearLR`` and ``ConstantLR`` multiply the optimizer's learning rate
by a factor; here that learning rate is the first argument, ``base_lr``, so ::

    torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=10)   # opt's lr = 0.3
    linear_lr_schedule(0.3, start_factor=0.1, total_iters=10)

give the same learning rate at every step: the value at step ``t`` is the optimizer's ``lr`` after
``t`` calls of ``scheduler.step()``. ``SequentialLR`` and ``ChainedScheduler`` combine such
schedulers; ``sequential_schedule`` and ``chained_schedule`` combine their twins the same way.
Optax's ``polynomial_schedule``, ``linear_schedule`` and ``constant_schedule`` (other signatures,
absolute values) are separate functions and unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import Schedule
from optcompose.schedules import _count, _mix


def polynomial_lr_schedule(
    base_lr: jax.typing.ArrayLike,
    total_iters: int = 5,
    power: jax.typing.ArrayLike = 1.0,
) -> Schedule:
    """Polynomial decay to 0 over ``total_iters`` steps: PyTorch's ``PolynomialLR``.

    With ``T = total_iters`` and ``p = power``::

        f(t) = base_lr * (1 - min(t, T) / T)**p

    PyTorch: ``PolynomialLR(opt, total_iters=T, power=p)`` with the optimizer's ``lr = base_lr``.
    (In Optax terms: ``polynomial_schedule(base_lr, 0.0, p, T)``.)

    Args:
        base_lr: the optimizer's learning rate, the value at step 0.
        total_iters: ``T >= 1``, the step at which the value reaches 0 (and stays).
        power: ``p >= 0``, the exponent of the polynomial; 1 is linear.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if ``base_lr`` or ``power`` is negative or not finite, or ``total_iters < 1``.
    """
    validate.non_negative("base_lr", base_lr)
    validate.integer_at_least("total_iters", total_iters, 1)
    validate.non_negative("power", power)
    base32, power32 = _count.f32(base_lr), _count.f32(power)
    steps = int(total_iters)
    steps32 = jnp.float32(steps)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        done = _count.elapsed(_count.as_count(count), 0, steps)
        # The steps left, (T - t) / T, formed directly: exact at t = T and accurate near it.
        return _count.finite_f32(base32 * jnp.power((steps32 - done) / steps32, power32))

    return schedule


def linear_lr_schedule(
    base_lr: jax.typing.ArrayLike,
    start_factor: jax.typing.ArrayLike = 1.0 / 3,
    end_factor: jax.typing.ArrayLike = 1.0,
    total_iters: int = 5,
) -> Schedule:
    """A factor moving linearly from ``start_factor`` to ``end_factor``: PyTorch's ``LinearLR``.

    With ``a = start_factor``, ``b = end_factor`` and ``T = total_iters``::

        f(t) = base_lr * (a + (b - a) * min(t, T) / T)

    PyTorch: ``LinearLR(opt, start_factor=a, end_factor=b, total_iters=T)`` with the optimizer's
    ``lr = base_lr``. PyTorch requires ``0 < a <= 1`` and ``0 <= b <= 1``; here any factors
    ``>= 0`` are accepted (a warm-up from exactly 0, ``a = 0``, included).

    Args:
        base_lr: the optimizer's learning rate.
        start_factor: ``a >= 0``, the factor at step 0.
        end_factor: ``b >= 0``, the factor from step ``T`` on.
        total_iters: ``T >= 1``, the length of the transition.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if a value is negative or not finite, or ``total_iters < 1``.
    """
    validate.non_negative("base_lr", base_lr)
    validate.non_negative("start_factor", start_factor)
    validate.non_negative("end_factor", end_factor)
    validate.integer_at_least("total_iters", total_iters, 1)
    base32 = _count.f32(base_lr)
    start32, end32 = base32 * _count.f32(start_factor), base32 * _count.f32(end_factor)
    steps = int(total_iters)
    steps32 = jnp.float32(steps)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        done = _count.elapsed(_count.as_count(count), 0, steps)
        return _count.finite_f32(_mix.linear(start32, end32, done, steps32 - done))

    return schedule


def constant_lr_schedule(
    base_lr: jax.typing.ArrayLike,
    factor: jax.typing.ArrayLike = 1.0 / 3,
    total_iters: int = 5,
) -> Schedule:
    """A constant factor for the first ``total_iters`` steps, then 1: PyTorch's ``ConstantLR``.

    With ``T = total_iters``::

        f(t) = base_lr * factor   for t < T
        f(t) = base_lr            for t >= T

    PyTorch: ``ConstantLR(opt, factor=factor, total_iters=T)`` with the optimizer's
    ``lr = base_lr``. PyTorch requires ``0 <= factor <= 1`` (and divides by it at step ``T``); here
    any ``factor >= 0`` works.

    Args:
        base_lr: the optimizer's learning rate, the value from step ``T`` on.
        factor: ``>= 0``, the factor of the first ``T`` steps.
        total_iters: ``T >= 1``, the number of steps with the factor.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if a value is negative or not finite, or ``total_iters < 1``.
    """
    validate.non_negative("base_lr", base_lr)
    validate.non_negative("factor", factor)
    validate.integer_at_least("total_iters", total_iters, 1)
    base32 = _count.f32(base_lr)
    scaled32 = _count.finite_f32(base32 * _count.f32(factor))
    steps = int(total_iters)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        return jnp.where(_count.reached(_count.as_count(count), steps), base32, scaled32)

    return schedule


def sequential_schedule(schedules: Sequence[Schedule], milestones: Sequence[int]) -> Schedule:
    """Schedules one after another, restarted at each milestone: PyTorch's ``SequentialLR``.

    With schedules ``f_0, ..., f_n`` and milestones ``m_1 <= ... <= m_n`` (and ``m_0 = 0``), the
    active schedule at step ``t`` is the last one whose milestone has been reached, and it sees the
    steps since its own milestone::

        i(t) = max{i : m_i <= t}         (PyTorch's bisect_right(milestones, t))
        f(t) = f_i(t - m_i)              with i = i(t)

    So at step ``m_i`` schedule ``i`` starts afresh from its step-0 value (PyTorch re-evaluates it
    at epoch 0 from the base learning rate): it does not continue from where ``f_{i-1}`` stopped,
    and ``f_{i-1}`` never shows its value at step ``m_i - m_{i-1}`` (a ``LinearLR`` warm-up with
    ``total_iters = m_1`` stops one step short of its end factor). A milestone of 0 skips the first
    schedule, and of equal milestones only the last schedule runs (the others get zero steps), all
    as in PyTorch.

    PyTorch: ``SequentialLR(opt, schedulers=[s_0, ..., s_n], milestones=[m_1, ..., m_n])`` where
    each ``f_i`` is the twin of ``s_i`` built with the optimizer's learning rate (for instance
    ``linear_lr_schedule(lr, ...)`` for ``LinearLR(opt, ...)``, ``exponential_decay(lr, 1, gamma)``
    for ``ExponentialLR(opt, gamma)``, ``cosine_decay_schedule(lr, T_max, eta_min / lr)`` for
    ``CosineAnnealingLR`` within ``T_max``).

    Args:
        schedules: one or more schedules (any functions of the step count).
        milestones: ``len(schedules) - 1`` non-decreasing integer steps ``>= 0``.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if ``schedules`` is empty, the lengths do not match, or a milestone is negative
            or smaller than the one before it.
        TypeError: if an entry of ``schedules`` is not callable or a milestone is not an integer.
    """
    schedules, milestones = list(schedules), list(milestones)
    if not schedules:
        raise ValueError("schedules must contain at least one schedule, got an empty sequence")
    for index, schedule in enumerate(schedules):
        if not callable(schedule):
            raise TypeError(f"schedules[{index}] must be a schedule (callable), got {schedule!r}")
    if len(milestones) != len(schedules) - 1:
        raise ValueError(
            f"milestones must have one entry fewer than schedules ({len(schedules) - 1}), "
            f"got {len(milestones)}: {milestones!r}"
        )
    for index, milestone in enumerate(milestones):
        validate.integer_at_least(f"milestones[{index}]", milestone, 0)
        if index and milestone < milestones[index - 1]:
            raise ValueError(
                f"milestones must be non-decreasing, got {milestones!r} (milestones[{index}] = "
                f"{milestone!r} is smaller than milestones[{index - 1}] = {milestones[index - 1]!r})"
            )
    starts = [0] + [int(milestone) for milestone in milestones]
    # Equal starts: only the last of them is ever active (bisect_right skips the others).
    active = [
        (start, schedules[index])
        for index, start in enumerate(starts)
        if index + 1 == len(starts) or starts[index + 1] != start
    ]

    def sequential(count: jax.typing.ArrayLike) -> jax.Array:
        count = _count.as_count(count)
        # The first active schedule starts at 0 (the last of those with milestone 0).
        value = jnp.asarray(active[0][1](count), jnp.float32)
        for start, schedule in active[1:]:
            if _count.is_int(count) and start > _count.int_max():
                break  # no count of this integer type reaches this milestone, nor any later one
            # count - start cannot overflow (both representable, non-negative); clip below at 0.
            later = jnp.asarray(schedule(jnp.maximum(count - start, 0)), jnp.float32)
            value = jnp.where(count < start, value, later)
        return _count.finite_f32(jnp.broadcast_to(value, jnp.shape(count)))

    return sequential


def chained_schedule(schedules: Sequence[Schedule], base_lr: jax.typing.ArrayLike) -> Schedule:
    """The product of several factor schedules: PyTorch's ``ChainedScheduler``.

    Each schedule ``f_i`` is the twin of one chained PyTorch scheduler, built with the same
    optimizer learning rate ``base_lr`` (so ``f_i(t) / base_lr`` is its factor), and::

        f(t) = base_lr * prod_i (f_i(t) / base_lr)

    (computed as ``f_0(t) * prod_{i >= 1} (f_i(t) / base_lr)``; ``base_lr = 0`` gives 0).

    PyTorch: ``ChainedScheduler([s_0, ..., s_n])`` with the optimizer's ``lr = base_lr``; for
    instance ``ChainedScheduler([ConstantLR(opt, factor=0.1, total_iters=2),
    ExponentialLR(opt, gamma=0.9)])`` is ``chained_schedule([constant_lr_schedule(lr, 0.1, 2),
    exponential_decay(lr, 1, 0.9)], lr)``. PyTorch steps every scheduler in turn, each one
    multiplying the current learning rate by its own factor ratio, so the product is exact for the
    multiplicative schedulers: ``ConstantLR``, ``LinearLR``, ``PolynomialLR``, ``ExponentialLR``,
    ``StepLR``, ``MultiStepLR`` (and ``CosineAnnealingLR`` with ``eta_min = 0`` up to ``T_max``).
    Schedulers that set the learning rate outright (``LambdaLR``, ``CyclicLR``, ``OneCycleLR``, a
    ``CosineAnnealingLR`` with ``eta_min > 0``) do not chain as a product in PyTorch either.

    Args:
        schedules: one or more schedules, each built with ``base_lr`` as its learning rate.
        base_lr: the optimizer's learning rate, ``>= 0``.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if ``schedules`` is empty or ``base_lr`` is negative or not finite.
        TypeError: if an entry of ``schedules`` is not callable.
    """
    schedules = list(schedules)
    if not schedules:
        raise ValueError("schedules must contain at least one schedule, got an empty sequence")
    for index, schedule in enumerate(schedules):
        if not callable(schedule):
            raise TypeError(f"schedules[{index}] must be a schedule (callable), got {schedule!r}")
    validate.non_negative("base_lr", base_lr)
    base32 = _count.f32(base_lr)
    is_zero = _count.equals(base_lr, 0.0)

    def chained(count: jax.typing.ArrayLike) -> jax.Array:
        count = _count.as_count(count)
        if is_zero:
            return jnp.zeros(jnp.shape(count), jnp.float32)
        value = jnp.asarray(schedules[0](count), jnp.float32)
        for schedule in schedules[1:]:
            value = value * (jnp.asarray(schedule(count), jnp.float32) / base32)
        return _count.finite_f32(jnp.broadcast_to(value, jnp.shape(count)))

    return chained
