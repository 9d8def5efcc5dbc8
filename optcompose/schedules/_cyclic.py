"""Cyclical learning rates (CLR), step for step as PyTorch's ``CyclicLR``, with the momentum cycle.

Reference: L. N. Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017
(https://arxiv.org/abs/1506.01186).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import Schedule
from optcompose.schedules import _count

_MODES = ("triangular", "triangular2", "exp_range")


class CyclicSchedules(NamedTuple):
    """The two schedules of :func:`cyclic_schedule` (as :class:`OneCycleSchedules` for one cycle)."""

    learning_rate: Schedule
    """The learning rate (PyTorch's ``lr``)."""
    momentum: Schedule
    """The momentum, cycled against the learning rate (PyTorch's ``momentum`` or ``beta1``)."""


def cyclic_schedule(
    base_lr: float,
    max_lr: float,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    *,
    base_momentum: float = 0.8,
    max_momentum: float = 0.9,
) -> CyclicSchedules:
    """Triangular learning-rate cycles (Smith, 2017), step for step as PyTorch's ``CyclicLR``.

    With ``U = step_size_up``, ``D = step_size_down`` (``U`` when None), ``L = U + D``, the cycle
    index ``k = t // L`` (from 0) and the position in the cycle ``r = t - k * L``, the triangle
    ``w`` rises from 0 to 1 over ``U`` steps and falls back over ``D``::

        w(t) = r / U         for r <= U
        w(t) = (L - r) / D   for r > U

        lr(t)       = base_lr + (max_lr - base_lr) * w(t) * s(t)
        momentum(t) = max_momentum - (max_momentum - base_momentum) * w(t) * s(t)

    with the amplitude scale ``s`` set by ``mode``: ``"triangular"`` ``s = 1``; ``"triangular2"``
    ``s = 2**-k`` (halved every cycle); ``"exp_range"`` ``s = gamma**t``. (For ``gamma > 1`` the
    exponent stops where ``gamma**t`` reaches ``1e38`` and the results saturate at the float32
    range, so they stay finite.)

    PyTorch: ``CyclicLR(opt, base_lr, max_lr, step_size_up, step_size_down, mode, gamma,
    cycle_momentum=True, base_momentum=..., max_momentum=...)``; the values at step ``t`` are the
    optimizer's ``lr`` and ``momentum`` (``betas[0]`` for Adam) after ``t`` calls of
    ``scheduler.step()``, at every step. PyTorch's custom ``scale_fn`` / ``scale_mode`` have no
    counterpart here (build the cycle from these schedules' parts instead); ``cycle_momentum=False``
    is simply not using ``.momentum``.

    Args:
        base_lr: the learning rate at the start of every cycle (the lower bound).
        max_lr: the learning rate at the peak of the first cycle.
        step_size_up: ``U >= 1``, steps from the bottom to the peak of a cycle.
        step_size_down: ``D >= 0``, steps from the peak back to the bottom; None means ``U``.
        mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
        gamma: ``> 0``, the factor per step of ``"exp_range"`` (ignored by the other modes).
        base_momentum: the momentum at the peak learning rate.
        max_momentum: the momentum at the bottom of every cycle.

    Returns:
        ``CyclicSchedules(learning_rate, momentum)``, two functions of the step count returning
        float32 values.

    Raises:
        ValueError: if an argument is out of range (the message names it).
    """
    validate.non_negative("base_lr", base_lr)
    validate.non_negative("max_lr", max_lr)
    validate.integer_at_least("step_size_up", step_size_up, 1)
    if step_size_down is not None:
        validate.integer_at_least("step_size_down", step_size_down, 0)
    validate.one_of("mode", mode, _MODES)
    validate.positive("gamma", gamma)
    validate.unit_interval("base_momentum", base_momentum, closed_right=True)
    validate.unit_interval("max_momentum", max_momentum, closed_right=True)

    up = int(step_size_up)
    down = up if step_size_down is None else int(step_size_down)
    length = up + down
    # Lengths as float32 constants: a Python int beyond int32 cannot meet a float32 array directly.
    up32, down32, length32 = jnp.float32(up), jnp.float32(max(down, 1)), jnp.float32(length)
    rate = float(gamma)
    # For growth, cap the exponent where gamma**t reaches 1e38 (as exponential_decay does).
    max_exponent = math.log(1e38) / math.log(rate) if rate > 1 else None
    log_rate = _count.f32(math.log(rate))

    def triangle_and_scale(count: jax.typing.ArrayLike) -> jax.Array:
        """``w(t) * s(t)``: the fraction of the amplitude used at step ``t``."""
        count = _count.as_count(count)
        if not _count.is_int(count):  # fractional steps
            cycle = jnp.floor(count / length32)
            position = count - cycle * length32
            rising, done, left = position <= up32, position, length32 - position
        else:
            if length > _count.int_max():
                cycle, position = jnp.zeros_like(count), count  # no count reaches the end of a cycle
            else:
                cycle = count // length
                position = count - cycle * length
            rising = jnp.logical_not(_count.reached(position, up + 1))
            done = position.astype(jnp.float32)
            # The steps left in the cycle, exact in the integer type where the length fits in it.
            left = (length - position).astype(jnp.float32) if length <= _count.int_max() else length32 - done
        triangle = jnp.where(rising, done / up32, left / down32)
        if mode == "triangular":
            return triangle
        if mode == "triangular2":
            return triangle * jnp.exp2(-cycle.astype(jnp.float32))
        exponent = _count.elapsed(count)
        if max_exponent is not None:
            exponent = jnp.minimum(exponent, max_exponent)
        return triangle * jnp.exp(exponent * log_rate)

    base32, max32 = _count.f32(base_lr), _count.f32(max_lr)
    base_m32, max_m32 = _count.f32(base_momentum), _count.f32(max_momentum)

    def learning_rate(count: jax.typing.ArrayLike) -> jax.Array:
        return _count.finite_f32(base32 + (max32 - base32) * triangle_and_scale(count))

    def momentum(count: jax.typing.ArrayLike) -> jax.Array:
        return _count.finite_f32(max_m32 - (max_m32 - base_m32) * triangle_and_scale(count))

    return CyclicSchedules(learning_rate=learning_rate, momentum=momentum)
