"""Warm-up schedules of language-model training: warmup-stable-decay and the inverse square root.

References:

* A. Hägele, E. Bakouch, A. Kosson, L. Ben Allal, L. Von Werra and M. Jaggi, "Scaling Laws and
  Compute-Optimal Training Beyond Fixed Training Durations", 2024 (https://arxiv.org/abs/2405.18392),
  for the warmup-stable-decay ("WSD", also "trapezoidal") schedule and its ``1-sqrt`` cool-down;
  S. Hu et al., "MiniCPM", 2024 (https://arxiv.org/abs/2404.06395).
* A. Vaswani et al., "Attention Is All You Need", 2017 (https://arxiv.org/abs/1706.03762), eq. (3),
  for the inverse-square-root schedule (here normalised to its peak).

PyTorch has neither as a scheduler class; each docstring gives the ``LambdaLR`` (or
``SequentialLR``) that produces the same numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import Schedule
from optcompose.schedules import _count, _mix

_DECAY_TYPES = ("linear", "cosine", "1-sqrt")


def warmup_stable_decay_schedule(
    peak_value: jax.typing.ArrayLike,
    warmup_steps: int,
    stable_steps: int,
    decay_steps: int,
    init_value: jax.typing.ArrayLike = 0.0,
    end_value: jax.typing.ArrayLike = 0.0,
    decay_type: str = "linear",
) -> Schedule:
    """Warmup-stable-decay (WSD): linear warm-up, a long constant stretch, then a short cool-down.

    With ``I = init_value``, ``P = peak_value``, ``E = end_value``, ``W = warmup_steps``,
    ``S = stable_steps``, ``D = decay_steps`` and ``s = t - W - S`` (Hägele et al., 2024)::

        f(t) = I + (P - I) * t / W                  for t < W
        f(t) = P                                    for W <= t <= W + S
        f(t) = P + (E - P) * g(s / D)               for W + S <= t <= W + S + D
        f(t) = E                                    for t >= W + S + D

    where the cool-down shape ``g`` is ``decay_type``::

        "linear":  g(x) = x
        "cosine":  g(x) = (1 - cos(pi * x)) / 2
        "1-sqrt":  g(x) = sqrt(x)        (f = P - (P - E) * sqrt(s / D))

    ``W = 0`` starts at ``P``; ``D = 0`` drops to ``E`` at step ``W + S``. The value at step ``t``
    is the learning rate of update ``t + 1``.

    PyTorch: no WSD class; with ``lr = P`` (and ``I > 0``) the ``"linear"`` variant is
    ``SequentialLR(opt, [LinearLR(opt, I / P, 1.0, W), ConstantLR(opt, 1.0, S),
    LinearLR(opt, 1.0, E / P, D)], milestones=[W, W + S])``, and any variant is
    ``LambdaLR(opt, lambda t: f(t) / P)``.

    Args:
        peak_value: the value at the end of the warm-up and during the stable phase.
        warmup_steps: length ``W >= 0`` of the linear warm-up.
        stable_steps: length ``S >= 0`` of the constant phase.
        decay_steps: length ``D >= 0`` of the cool-down.
        init_value: value at step 0 (the start of the warm-up).
        end_value: value at the end of the cool-down and after.
        decay_type: shape of the cool-down: ``"linear"``, ``"cosine"`` or ``"1-sqrt"``.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if a length is negative, ``decay_type`` is unknown or a value is not finite.
    """
    for name, value in (("peak_value", peak_value), ("init_value", init_value), ("end_value", end_value)):
        validate.finite(name, value)
    validate.integer_at_least("warmup_steps", warmup_steps, 0)
    validate.integer_at_least("stable_steps", stable_steps, 0)
    validate.integer_at_least("decay_steps", decay_steps, 0)
    validate.one_of("decay_type", decay_type, _DECAY_TYPES)
    peak32, init32, end32 = _count.f32(peak_value), _count.f32(init_value), _count.f32(end_value)
    warmup, decay = int(warmup_steps), int(decay_steps)
    decay_begin = warmup + int(stable_steps)
    # Lengths as float32 constants: a Python int beyond int32 cannot meet a float32 array directly.
    warmup32, decay32 = jnp.float32(warmup), jnp.float32(decay)

    def cool_down(count: jax.Array) -> jax.Array:
        # Before the cool-down ``done`` is 0, which gives the stable value P.
        if decay == 0:
            return jnp.where(_count.reached(count, decay_begin), end32, peak32)
        done = _count.elapsed(count, decay_begin, decay)
        left = decay32 - done
        if decay_type == "linear":
            return _mix.linear(peak32, end32, done, left)
        if decay_type == "cosine":
            return _mix.cosine(peak32, end32, done, left)
        # 1 - sqrt(x) written as (1 - x) / (1 + sqrt(x)): no cancellation near the end.
        root = jnp.sqrt(done / decay32)
        return peak32 * ((left / decay32) / (1.0 + root)) + end32 * root

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        count = _count.as_count(count)
        value = cool_down(count)
        if warmup > 0:
            ramp = _count.elapsed(count, 0, warmup)
            warm = _mix.linear(init32, peak32, ramp, warmup32 - ramp)
            value = jnp.where(_count.reached(count, warmup), value, warm)
        return _count.finite_f32(value)

    return schedule


def inverse_sqrt_schedule(peak_value: jax.typing.ArrayLike, warmup_steps: int) -> Schedule:
    """Linear warm-up to ``peak_value``, then decay as the inverse square root of the step.

    With ``P = peak_value`` and ``W = warmup_steps`` (Vaswani et al., 2017, eq. 3, scaled so that
    the peak, at ``t = W``, is ``P``)::

        f(t) = P * min(t / W, sqrt(W / t))

    so ``f(0) = 0``, ``f(W) = P`` and ``f(t) = P * sqrt(W / t)`` after the warm-up: positive and
    finite at every count. The Transformer's ``d_model**-0.5 * min(n**-0.5, n * W**-1.5)`` at update
    number ``n = t`` is this schedule with ``P = (d_model * W)**-0.5``.

    PyTorch: ``LambdaLR(opt, lambda t: min(t / W, (W / t) ** 0.5) if t > 0 else 0.0)`` with
    ``lr = P`` gives the same value after ``t`` calls of ``scheduler.step()``.

    Args:
        peak_value: the value at step ``W``, the largest one.
        warmup_steps: ``W >= 1``, the length of the linear warm-up.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if ``warmup_steps < 1`` or ``peak_value`` is not finite.
    """
    validate.finite("peak_value", peak_value)
    validate.integer_at_least("warmup_steps", warmup_steps, 1)
    peak32, warmup = _count.f32(peak_value), int(warmup_steps)
    warmup32 = jnp.float32(warmup)

    def schedule(count: jax.typing.ArrayLike) -> jax.Array:
        count = _count.as_count(count)
        ramp = _count.elapsed(count, 0, warmup) / warmup32
        steps = jnp.maximum(_count.elapsed(count), warmup32)
        tail = jnp.sqrt(warmup32 / steps)
        return _count.finite_f32(peak32 * jnp.where(_count.reached(count, warmup), tail, ramp))

    return schedule
