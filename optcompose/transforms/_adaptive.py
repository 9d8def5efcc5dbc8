"""Per-parameter adaptive scaling: Adagrad (rss), RMSprop (rms, stddev) and Adam."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import ScalarOrSchedule, Updates
from optcompose._hyperparams import Hyperparams
from optcompose._leafwise import Leafwise, abs_sq, ema_step, leafwise
from optcompose._numerics import bias_correction_factor


def safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    """``numerator / denominator``, and 0 where the denominator is exactly 0.

    With ``eps = 0`` a coordinate that never saw a gradient has ``0 / 0``: its update is 0, not
    NaN. A NaN or inf anywhere still propagates (only an exact 0 denominator is special).
    """
    zero = denominator == 0
    return jnp.where(zero, 0.0, numerator / jnp.where(zero, 1.0, denominator))


def divide_by_root(g: jax.Array, second_moment: jax.Array, eps: jax.Array, eps_in_sqrt: bool) -> jax.Array:
    """``g / sqrt(s + eps)`` or ``g / (sqrt(s) + eps)``; 0 where the denominator is 0 (``s = eps = 0``).

    ``s`` is clamped at 0 first (a round-off negative variance is not a NaN), and a denominator
    that is not positive (0, or NaN from an overflowed ``inf - inf`` variance) gives update 0. For
    complex ``g`` the second moment is real-valued and only its real part is used.
    """
    second_moment = jnp.maximum(jnp.real(second_moment), 0.0)
    denominator = jnp.sqrt(second_moment + eps) if eps_in_sqrt else jnp.sqrt(second_moment) + eps
    positive = denominator > 0
    return jnp.where(positive, g / jnp.where(positive, denominator, 1.0), 0.0)


class ScaleByRssState(NamedTuple):
    sum_of_squares: Updates
    hyperparams: Hyperparams


def _rss(g, s, *, hp, eps_in_sqrt):
    s = s + abs_sq(g)
    return divide_by_root(g, s, hp.eps, eps_in_sqrt), s


def scale_by_rss(initial_accumulator_value: float = 0.1, eps: float = 1e-7, *, eps_in_sqrt: bool = True) -> Leafwise:
    """Adagrad's scaling by the root of the sum of squared gradients (Duchi et al. 2011)::

        G_t = G_{t-1} + |g_t|^2,         G_0 = initial_accumulator_value
        u_t = g_t / sqrt(G_t + eps)      (eps_in_sqrt=True, Optax's form)
        u_t = g_t / (sqrt(G_t) + eps)    (eps_in_sqrt=False, torch.optim.Adagrad's form)

    A coordinate whose accumulator is still exactly 0 (never saw a gradient) gets update 0.
    """
    validate.non_negative("initial_accumulator_value", initial_accumulator_value)
    validate.non_negative("eps", eps)
    return leafwise(
        _rss, ScaleByRssState, hyperparams={"eps": eps}, fill={"sum_of_squares": initial_accumulator_value},
        static={"eps_in_sqrt": eps_in_sqrt}, name="scale_by_rss",
    )  # fmt: skip


class ScaleByRmsState(NamedTuple):
    count: jax.Array
    nu: Updates
    hyperparams: Hyperparams


def _rms(g, nu, *, hp, t, eps_in_sqrt, bias_correction):
    nu = ema_step(nu, abs_sq(g), hp.decay)
    correction = bias_correction_factor(hp.decay, t) if bias_correction else 1.0
    return divide_by_root(g, nu * correction, hp.eps, eps_in_sqrt), nu


def scale_by_rms(
    decay: ScalarOrSchedule = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> Leafwise:
    """RMSprop's scaling by a running root mean square (Tieleman & Hinton 2012, lecture 6e)::

        nu_t = decay * nu_{t-1} + (1 - decay) * |g_t|^2,     nu_0 = initial_scale
        nu_hat = nu_t / (1 - decay**t)    if bias_correction else nu_t
        u_t = g_t / sqrt(nu_hat + eps)    (eps_in_sqrt=True, Optax's default)
        u_t = g_t / (sqrt(nu_hat) + eps)  (eps_in_sqrt=False, torch.optim.RMSprop's form)

    torch's ``alpha`` is our ``decay`` (torch's default 0.99; ours 0.9, as Optax).
    """
    validate.unit_interval("decay", decay)
    validate.non_negative("eps", eps)
    validate.non_negative("initial_scale", initial_scale)
    return leafwise(
        _rms, ScaleByRmsState, hyperparams={"decay": decay, "eps": eps}, fill={"nu": initial_scale},
        static={"eps_in_sqrt": eps_in_sqrt, "bias_correction": bias_correction}, name="scale_by_rms",
    )  # fmt: skip


class ScaleByRStdDevState(NamedTuple):
    count: jax.Array
    mu: Updates
    nu: Updates
    hyperparams: Hyperparams


def _stddev(g, mu, nu, *, hp, t, eps_in_sqrt, bias_correction):
    mu = ema_step(mu, g, hp.decay)
    nu = ema_step(nu, abs_sq(g), hp.decay)
    correction = bias_correction_factor(hp.decay, t) if bias_correction else 1.0
    variance = nu * correction - abs_sq(mu * correction)
    return divide_by_root(g, variance, hp.eps, eps_in_sqrt), mu, nu


def scale_by_stddev(
    decay: ScalarOrSchedule = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> Leafwise:
    """Centered RMSprop: scale by a running standard deviation (Graves 2013, eq. 38–40)::

        mu_t = decay * mu_{t-1} + (1 - decay) * g_t
        nu_t = decay * nu_{t-1} + (1 - decay) * |g_t|^2
        var_t = max(nu_hat - |mu_hat|^2, 0)     (hats: bias-corrected if bias_correction)
        u_t = g_t / sqrt(var_t + eps)   or   g_t / (sqrt(var_t) + eps)

    The clamp at 0 keeps round-off from turning a tiny negative variance into NaN.
    """
    validate.unit_interval("decay", decay)
    validate.non_negative("eps", eps)
    validate.non_negative("initial_scale", initial_scale)
    return leafwise(
        _stddev, ScaleByRStdDevState, hyperparams={"decay": decay, "eps": eps}, fill={"nu": initial_scale},
        static={"eps_in_sqrt": eps_in_sqrt, "bias_correction": bias_correction}, name="scale_by_stddev",
    )  # fmt: skip


class ScaleByAdamState(NamedTuple):
    count: jax.Array
    mu: Updates
    nu: Updates
    hyperparams: Hyperparams


def _adam(g, mu, nu, *, hp, t, nesterov):
    mu = ema_step(mu, g, hp.b1)
    nu = ema_step(nu, abs_sq(g), hp.b2)
    if nesterov:
        correction, next_correction = bias_correction_factor(hp.b1, t), bias_correction_factor(hp.b1, t + 1)
        mu_hat = hp.b1 * mu * next_correction + (1.0 - hp.b1) * g * correction
    else:
        mu_hat = mu * bias_correction_factor(hp.b1, t)
    nu_hat = nu * bias_correction_factor(hp.b2, t)
    return safe_divide(mu_hat, jnp.sqrt(jnp.real(nu_hat) + hp.eps_root) + hp.eps), mu, nu


def scale_by_adam(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any | None = None,
) -> Leafwise:
    """Adam's scaling (Kingma & Ba 2014, Algorithm 1); Nadam with ``nesterov`` (Dozat 2016)::

        m_t = b1 * m_{t-1} + (1 - b1) * g_t
        v_t = b2 * v_{t-1} + (1 - b2) * |g_t|^2
        m_hat = m_t / (1 - b1**t)
        m_hat = b1 * m_t / (1 - b1**(t+1)) + (1 - b1) * g_t / (1 - b1**t)     (nesterov)
        v_hat = v_t / (1 - b2**t)
        u_t = m_hat / (sqrt(v_hat + eps_root) + eps)      (0 where the denominator is 0: eps = 0)

    At t = 1 with b1 = 0.9 the correction multiplies m by 1 / (1 - 0.9) = 10. The moments are
    stored in ``mu_dtype`` / ``nu_dtype`` (default: the parameter's dtype); the arithmetic runs in
    float32 (or wider) whatever the storage, so bfloat16 moments halve the state's memory only.
    """
    validate.unit_interval("b1", b1)
    validate.unit_interval("b2", b2)
    validate.non_negative("eps", eps)
    validate.non_negative("eps_root", eps_root)
    return leafwise(
        _adam, ScaleByAdamState, hyperparams={"b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root},
        dtypes={"mu": mu_dtype, "nu": nu_dtype}, static={"nesterov": nesterov}, name="scale_by_adam",
    )  # fmt: skip
