"""``piecewise_interpolate_schedule``: Optax's piecewise linear or cosine interpolation."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise

import jax
import jax.numpy as jnp
import numpy as np

from optcompose import _validate as validate
from optcompose._base import Schedule
from optcompose.schedules import _count, _mix

_KINDS = {"linear": _mix.linear, "cosine": _mix.cosine}


def piecewise_interpolate_schedule(
    interpolate_type: str,
    init_value: jax.typing.ArrayLike,
    boundaries_and_scales: Mapping[int, float] | None = None,
) -> Schedule:
    """Interpolation between cumulatively scaled values at boundary steps (Optax's schedule).

    With ``I = init_value`` and ``boundaries_and_scales = {b_1: s_1, ..., b_n: s_n}`` sorted by
    step, the knots are ``(b_0 = 0, v_0 = I)`` and ``(b_i, v_i = I * s_1 * ... * s_i)``; the value
    moves from ``v_{i-1}`` to ``v_i`` over ``[b_{i-1}, b_i]`` and holds ``v_n`` after ``b_n``::

        x    = (t - b_{i-1}) / (b_i - b_{i-1})                for b_{i-1} <= t < b_i
        f(t) = v_{i-1} + (v_i - v_{i-1}) * x                  ("linear")
        f(t) = v_i + (v_{i-1} - v_i) * (1 + cos(pi * x)) / 2  ("cosine")
        f(t) = v_n                                            for t >= b_n

    The scales multiply into the values (``{4: 0.1, 8: 0.01}`` goes ``I -> 0.1 I -> 0.001 I``); a
    boundary at step 0 makes ``v_1`` the value at step 0. Same arguments and values as
    ``optax.piecewise_interpolate_schedule``.

    PyTorch: no single scheduler; a linear piece is ``LinearLR`` and a cosine piece
    ``CosineAnnealingLR`` within ``T_max``, run one after another by ``SequentialLR``.

    Args:
        interpolate_type: ``"linear"`` or ``"cosine"``.
        init_value: the value at step 0.
        boundaries_and_scales: ``{step: scale}`` with integer steps ``>= 0`` (in any order) and
            finite scales ``>= 0``; ``None`` or empty gives a constant schedule.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if ``interpolate_type`` is unknown, a boundary is negative, or a scale is
            negative or not finite.
    """
    validate.one_of("interpolate_type", interpolate_type, tuple(_KINDS))
    validate.finite("init_value", init_value)
    pairs = sorted((boundaries_and_scales or {}).items())
    for boundary, scale in pairs:
        validate.integer_at_least("boundaries_and_scales (a boundary step)", boundary, 0)
        validate.finite("boundaries_and_scales (a scale)", scale)
        validate.non_negative("boundaries_and_scales (a scale)", scale)
    init32 = _count.f32(init_value)
    # Cumulative products in float64 on the host, rounded once to float32 per knot.
    factors = np.cumprod([float(np.asarray(scale)) for _, scale in pairs], dtype=np.float64)
    values = [init32] + [_count.finite_f32(init32 * _count.f32(factor)) for factor in factors]
    knots = [0] + [int(boundary) for boundary, _ in pairs]
    anneal = _KINDS[interpolate_type]

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        count = _count.as_count(count)
        value = jnp.broadcast_to(values[0], jnp.shape(count))
        for (begin, end), (first, last) in zip(pairwise(knots), pairwise(values), strict=True):
            if end == begin:  # a boundary at 0: the scaled value from the start
                segment = jnp.broadcast_to(last, jnp.shape(count))
            else:
                done = _count.elapsed(count, begin, end - begin)
                # The length as a float32 constant (a Python int beyond int32 cannot meet float32).
                segment = anneal(first, last, done, jnp.float32(end - begin) - done)
            value = jnp.where(_count.reached(count, begin), segment, value)
        return _count.finite_f32(value)

    return schedule
