"""Transforms that keep (mostly) the sign of the gradient: sign, Lion and Rprop."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import EmptyState, Updates
from optcompose._hyperparams import Hyperparams
from optcompose._leafwise import Leafwise, ema_step, leafwise


def _sign(g, *, hp):
    del hp
    return jnp.sign(g)


def scale_by_sign() -> Leafwise:
    """The sign of every coordinate: ``u -> sign(u)`` (signSGD, Bernstein et al. 2018).

    ``sign(0) = 0``. For complex updates ``sign(u) = u / |u|`` (the unit phase); Optax lists
    sign methods as real-only.

    Returns:
      A stateless ``Leafwise`` transform (state ``EmptyState()``).
    """
    return leafwise(_sign, EmptyState, name="scale_by_sign")


class ScaleByLionState(NamedTuple):
    count: jax.Array
    mu: Updates
    hyperparams: Hyperparams


_LION_MODES = ("hard", "smooth", "refined")


def _lion(g, mu, *, hp, mode):
    mixed = (1.0 - hp.b1) * g + hp.b1 * mu
    if mode == "hard":
        u = jnp.sign(mixed)
    elif mode == "smooth":
        u = jnp.tanh(hp.smooth_beta * mixed)
    else:  # refined: linear near 0, the sign beyond 1
        u = jnp.where(jnp.abs(mixed) < 1.0, mixed, jnp.sign(mixed))
    return u, ema_step(mu, g, hp.b2)


def scale_by_lion(
    b1: float = 0.9,
    b2: float = 0.99,
    mu_dtype: Any | None = None,
    *,
    mode: Literal["hard", "smooth", "refined"] = "hard",
    smooth_beta: float = 1.0,
) -> Leafwise:
    """Lion's scaling, the sign of an interpolated momentum (Chen et al. 2023, "Symbolic Discovery", Alg. 2)::

        c_t   = b1 m_{t-1} + (1 - b1) g_t
        u_t   = sign(c_t)                           (mode="hard", the paper's)
              = tanh(smooth_beta * c_t)             (mode="smooth")
              = c_t if |c_t| < 1 else sign(c_t)     (mode="refined")
        m_t   = b2 m_{t-1} + (1 - b2) g_t

    Every coordinate of the update has magnitude at most 1, so Lion's learning rate is usually
    3-10x smaller than AdamW's.

    Args:
      b1: the interpolation between momentum and gradient for the update, in [0, 1).
      b2: decay of the momentum, in [0, 1).
      mu_dtype: storage dtype of the momentum (default: the parameter's).
      mode: ``"hard"``, ``"smooth"`` or ``"refined"``.
      smooth_beta: the slope of ``tanh`` in the smooth mode (finite).

    Returns:
      A ``Leafwise`` transform with state ``ScaleByLionState``.
    """
    validate.unit_interval("b1", b1)
    validate.unit_interval("b2", b2)
    validate.one_of("mode", mode, _LION_MODES)
    validate.finite("smooth_beta", smooth_beta)
    return leafwise(
        _lion, ScaleByLionState, hyperparams={"b1": b1, "b2": b2, "smooth_beta": smooth_beta},
        dtypes={"mu": mu_dtype}, static={"mode": mode}, name="scale_by_lion",
    )  # fmt: skip


class ScaleByRpropState(NamedTuple):
    step_sizes: Updates
    prev_updates: Updates
    hyperparams: Hyperparams


def _rprop(g, step_sizes, previous, *, hp):
    if jnp.iscomplexobj(g):
        raise TypeError("scale_by_rprop is defined for real parameters only (it compares signs)")
    agreement = g * previous
    factor = jnp.where(agreement > 0, hp.eta_plus, hp.eta_minus)
    changed = jnp.clip(step_sizes * factor, hp.min_step_size, hp.max_step_size)
    step_sizes = jnp.where(agreement == 0, step_sizes, changed)
    step = jnp.where(agreement < 0, 0.0, step_sizes * jnp.sign(g))
    return step, step_sizes, step


def scale_by_rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> Leafwise:
    """Rprop's step, iRprop- (Riedmiller & Braun 1993; Igel & Hüsken 2003, "iRprop-")::

        s_t       = g_t * p_{t-1}                         (p: the previous step, 0 after a sign change)
        delta_t   = clip(delta_{t-1} * eta_plus,  min_step_size, max_step_size)   if s_t > 0
                  = clip(delta_{t-1} * eta_minus, min_step_size, max_step_size)   if s_t < 0
                  = delta_{t-1}                                                     if s_t = 0
        p_t = u_t = 0 if s_t < 0 else delta_t * sign(g_t)

    ``delta_0 = learning_rate``; the result is a step *up* the gradient (``rprop`` appends
    ``scale(-1)``). This is ``torch.optim.Rprop`` (which also clips the first step size, so the
    two differ only when ``learning_rate`` lies outside ``[min_step_size, max_step_size]``).

    Differs from Optax 0.2.8, whose ``scale_by_rprop`` returns the step computed at the previous
    update (its first update is 0 and each later one lags one step behind, masked by the current
    sign change; google-deepmind/optax PR #1725). The step sizes and ``prev_updates`` in the state
    are the same as Optax's.

    Args:
      learning_rate: the initial step size of every coordinate (a number: it only fills the state).
      eta_minus: the factor applied to the step size after a sign change (> 0, usually < 1).
      eta_plus: the factor applied when the sign is kept (> 0, usually > 1).
      min_step_size: the smallest step size (>= 0).
      max_step_size: the largest step size (>= min_step_size).

    Returns:
      A ``Leafwise`` transform with state ``ScaleByRpropState``.
    """
    if callable(learning_rate):
        raise TypeError("scale_by_rprop's learning_rate is the initial step size, a number, not a schedule")
    validate.non_negative("learning_rate", learning_rate)
    validate.positive("eta_minus", eta_minus)
    validate.positive("eta_plus", eta_plus)
    validate.non_negative("min_step_size", min_step_size)
    validate.non_negative("max_step_size", max_step_size)
    if not callable(min_step_size) and not callable(max_step_size) and float(min_step_size) > float(max_step_size):
        raise ValueError(f"min_step_size ({min_step_size!r}) must not exceed max_step_size ({max_step_size!r})")
    validate.fits_float32("learning_rate", learning_rate)
    return leafwise(
        _rprop, ScaleByRpropState,
        hyperparams={"eta_minus": eta_minus, "eta_plus": eta_plus, "min_step_size": min_step_size,
                     "max_step_size": max_step_size},
        fill={"step_sizes": float(learning_rate)}, name="scale_by_rprop",
    )  # fmt: skip
