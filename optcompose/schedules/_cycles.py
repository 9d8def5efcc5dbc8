"""One-cycle schedules: up to a peak, then far below the start.

Reference: L. N. Smith and N. Topin, "Super-Convergence: Very Fast Training of Neural Networks Using
Large Learning Rates", 2018 (https://arxiv.org/abs/1708.07120).

``cosine_onecycle_schedule`` and ``linear_onecycle_schedule`` follow Optax (phase boundaries at
``int(pct * transition_steps)``); ``one_cycle_schedule`` follows PyTorch's ``OneCycleLR`` step for
step (phase ends at ``pct_start * total_steps - 1``, ...) and also schedules the momentum.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import Schedule
from optcompose.schedules import _count, _mix

_ANNEALS = ("cos", "linear")


def _anneal(start: jax.Array, end: jax.Array, done: jax.Array, left: jax.Array, kind: str) -> jax.Array:
    """From ``start`` (``done = 0``) to ``end`` (``left = 0``), along a half cosine or a line."""
    return (_mix.cosine if kind == "cos" else _mix.linear)(start, end, done, left)


def _interpolate(count: jax.Array, knots: Sequence[int], values: Sequence[jax.Array], kind: str) -> jax.Array:
    """Anneals ``values[i] -> values[i+1]`` over ``[knots[i], knots[i+1]]``; ``values[-1]`` after.

    ``knots`` start at 0 and never decrease; a zero-length segment is a jump.
    """
    value = jnp.broadcast_to(values[0], jnp.shape(count))
    for (begin, end), (first, last) in zip(pairwise(knots), pairwise(values), strict=True):
        if end == begin:
            segment = jnp.broadcast_to(last, jnp.shape(count))
        else:
            done = _count.elapsed(count, begin, end - begin)
            segment = _anneal(first, last, done, (end - begin) - done, kind)
        value = jnp.where(_count.reached(count, begin), segment, value)
    return value


def _check_onecycle(
    transition_steps: int,
    peak_value: jax.typing.ArrayLike,
    pct_start: float,
    div_factor: float,
    final_div_factor: float,
) -> None:
    validate.integer_at_least("transition_steps", transition_steps, 1)
    validate.finite("peak_value", peak_value)
    validate.open_unit_interval("pct_start", pct_start)
    validate.positive("div_factor", div_factor)
    validate.positive("final_div_factor", final_div_factor)


def cosine_onecycle_schedule(
    transition_steps: int,
    peak_value: jax.typing.ArrayLike,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """One cycle with cosine annealing (Smith & Topin, 2018), as Optax spells it.

    With ``T = transition_steps``, ``P = peak_value``, ``I = P / div_factor``,
    ``F = I / final_div_factor`` and ``K = int(pct_start * T)``::

        f(t) = P + (I - P) * (1 + cos(pi * t / K)) / 2              for t <= K
        f(t) = F + (P - F) * (1 + cos(pi * (t - K) / (T - K))) / 2  for K <= t <= T
        f(t) = F                                                    for t >= T

    Args:
        transition_steps: ``T >= 1``, the length of the cycle in steps.
        peak_value: the value at step ``K``.
        pct_start: fraction of the cycle spent rising, in (0, 1).
        div_factor: ``> 0``; the start value is ``peak_value / div_factor``.
        final_div_factor: ``> 0``; the final value is the start value divided by it.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if an argument is out of range (the message names it).
    """
    _check_onecycle(transition_steps, peak_value, pct_start, div_factor, final_div_factor)
    peak = _count.f32(peak_value)
    start = peak / _count.f32(div_factor)
    knots = [0, int(pct_start * transition_steps), int(transition_steps)]
    values = [start, peak, start / _count.f32(final_div_factor)]
    return lambda count: _interpolate(_count.as_count(count), knots, values, "cos")


def linear_onecycle_schedule(
    transition_steps: int,
    peak_value: jax.typing.ArrayLike,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """One cycle of three linear phases (Smith & Topin, 2018), as Optax spells it.

    With ``T = transition_steps``, ``P = peak_value``, ``I = P / div_factor``,
    ``F = I / final_div_factor``, ``K_1 = int(pct_start * T)`` and ``K_2 = int(pct_final * T)``,
    the value is piecewise linear through the points::

        (0, I) -> (K_1, P) -> (K_2, I) -> (T, F),   then F for t >= T

    Args:
        transition_steps: ``T >= 1``, the length of the cycle in steps.
        peak_value: the value at step ``K_1``.
        pct_start: fraction of the cycle spent rising, in (0, 1).
        pct_final: fraction of the cycle at which the value is back at ``I``, in
            ``(pct_start, 1]``.
        div_factor: ``> 0``; the start value is ``peak_value / div_factor``.
        final_div_factor: ``> 0``; the final value is the start value divided by it.

    Returns:
        A function of the step count returning a float32 value.

    Raises:
        ValueError: if an argument is out of range (the message names it).
    """
    _check_onecycle(transition_steps, peak_value, pct_start, div_factor, final_div_factor)
    if not pct_start < pct_final <= 1:
        raise ValueError(f"pct_final must lie in (pct_start, 1] = ({pct_start!r}, 1], got {pct_final!r}")
    peak = _count.f32(peak_value)
    start = peak / _count.f32(div_factor)
    knots = [0, int(pct_start * transition_steps), int(pct_final * transition_steps), int(transition_steps)]
    values = [start, peak, start, start / _count.f32(final_div_factor)]
    return lambda count: _interpolate(_count.as_count(count), knots, values, "linear")


class OneCycleSchedules(NamedTuple):
    """The two schedules of :func:`one_cycle_schedule`."""

    learning_rate: Schedule
    """The learning rate (PyTorch's ``lr``)."""
    momentum: Schedule
    """The momentum, cycled against the learning rate (PyTorch's ``momentum`` or ``beta1``)."""


def one_cycle_schedule(
    total_steps: int,
    max_lr: float,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
    anneal: str = "cos",
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
) -> OneCycleSchedules:
    """The 1cycle policy (Smith & Topin, 2018), step for step as PyTorch's ``OneCycleLR``.

    With ``N = total_steps``, ``p = pct_start``, ``I = max_lr / div_factor`` and
    ``F = I / final_div_factor``, the learning rate and momentum anneal (along ``anneal``: half
    cosine ``b + (a - b) * (1 + cos(pi * x)) / 2`` or line ``a + (b - a) * x``) from ``a`` to ``b``
    through phases that end at (possibly fractional) steps ``e_k``, each starting where the previous
    ended (the first at 0)::

        two phases:    e_1 = p*N - 1: lr I -> max_lr,  momentum max -> base
                       e_2 = N - 1:   lr max_lr -> F,  momentum base -> max
        three phases:  e_1 = p*N - 1:   lr I -> max_lr,  momentum max -> base
                       e_2 = 2*p*N - 2: lr max_lr -> I,  momentum base -> max
                       e_3 = N - 1:     lr I -> F,       momentum max -> max

    Step ``t`` lies in the first phase with ``t <= e_k``, at ``x = (t - e_{k-1}) / (e_k - e_{k-1})``.
    The value at step ``t`` is what PyTorch's optimizer holds after ``t`` calls of
    ``scheduler.step()`` (with ``cycle_momentum=True``), for ``0 <= t <= N - 1``: every step of
    an ``N``-step run. From ``N - 1`` on the schedules hold their final values (PyTorch extrapolates
    the last phase at ``t = N`` and raises after it).

    Args:
        total_steps: ``N >= 1``, the number of optimizer steps in the cycle.
        max_lr: the peak learning rate.
        pct_start: ``p`` in (0, 1), the fraction of the cycle spent raising the learning rate;
            ``p * N`` must exceed 1, and with three phases ``2 * p * N - 2`` must stay below ``N - 1``.
        div_factor: ``> 0``; the start learning rate is ``max_lr / div_factor``.
        final_div_factor: ``> 0``; the final learning rate is the start one divided by it.
        three_phase: use the three-phase variant (down to ``I`` symmetrically, then to ``F``).
        anneal: ``"cos"`` or ``"linear"`` (PyTorch's ``anneal_strategy``).
        base_momentum: the momentum at the peak learning rate.
        max_momentum: the momentum at the start (and end) of the cycle.

    Returns:
        ``OneCycleSchedules(learning_rate, momentum)``, two functions of the step count.

    Raises:
        ValueError: if an argument is out of range (the message names it).
    """
    validate.integer_at_least("total_steps", total_steps, 1)
    validate.finite("max_lr", max_lr)
    validate.non_negative("max_lr", max_lr)
    validate.open_unit_interval("pct_start", pct_start)
    validate.positive("div_factor", div_factor)
    validate.positive("final_div_factor", final_div_factor)
    validate.one_of("anneal", anneal, _ANNEALS)
    validate.unit_interval("base_momentum", base_momentum, closed_right=True)
    validate.unit_interval("max_momentum", max_momentum, closed_right=True)

    initial_lr = float(max_lr) / float(div_factor)
    min_lr = initial_lr / float(final_div_factor)
    base_m, max_m = float(base_momentum), float(max_momentum)
    # Phase ends in float64 with PyTorch's operation order, so both pick the same phase.
    if three_phase:
        phases = [
            (float(pct_start * total_steps) - 1, initial_lr, float(max_lr), max_m, base_m),
            (float(2 * pct_start * total_steps) - 2, float(max_lr), initial_lr, base_m, max_m),
            (float(total_steps) - 1, initial_lr, min_lr, max_m, max_m),
        ]
    else:
        phases = [
            (float(pct_start * total_steps) - 1, initial_lr, float(max_lr), max_m, base_m),
            (float(total_steps) - 1, float(max_lr), min_lr, base_m, max_m),
        ]
    if phases[0][0] <= 0:
        raise ValueError(
            f"pct_start * total_steps must exceed 1 so the warm-up phase spans a step, "
            f"got pct_start={pct_start!r}, total_steps={total_steps!r}"
        )
    if three_phase and phases[1][0] >= phases[2][0]:
        raise ValueError(
            f"with three_phase, pct_start must satisfy 2 * pct_start * total_steps - 2 < total_steps - 1 "
            f"(roughly pct_start < 0.5), got pct_start={pct_start!r}, total_steps={total_steps!r}"
        )
    last_step = int(total_steps) - 1

    def make(lr: bool) -> Schedule:
        def schedule(count: jax.typing.ArrayLike) -> jax.Array:
            step = _count.elapsed(_count.as_count(count), 0, last_step)
            begin, pieces = 0.0, []
            for end, lr_start, lr_end, m_start, m_end in phases:
                first, last = (lr_start, lr_end) if lr else (m_start, m_end)
                done, left = step - jnp.float32(begin), jnp.float32(end) - step
                pieces.append((end, _anneal(jnp.float32(first), jnp.float32(last), done, left, anneal)))
                begin = end
            value = pieces[-1][1]
            for end, piece in reversed(pieces[:-1]):
                value = jnp.where(step <= jnp.float32(end), piece, value)
            return value

        return schedule

    return OneCycleSchedules(learning_rate=make(True), momentum=make(False))
