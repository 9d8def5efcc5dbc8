"""AdEMAMix (Pagliardini et al. 2024) and its simplified form (Morwani et al. 2025)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import GradientTransformationExtraArgs, ScalarOrSchedule, Updates, chain
from optcompose._hyperparams import Hyperparams
from optcompose._leafwise import abs_sq, ema_step, leafwise
from optcompose._numerics import bias_correction_factor
from optcompose.contrib._common import Restated
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._scaling import scale_by_learning_rate


class ScaleByAdemamixState(NamedTuple):
    """State of ``scale_by_ademamix``.

    Attributes:
      count: the step count of the fast EMA and the second moment.
      count_m2: the step count of the slow EMA and ``alpha`` (equal to ``count``).
      m1: the fast EMA of the gradients.
      m2: the slow EMA of the gradients.
      nu: the EMA of the squared gradients.
      hyperparams: ``b1``, ``b2``, ``b3``, ``alpha``, ``eps``, ``eps_root``.
    """

    count: jax.Array
    count_m2: jax.Array
    m1: Updates
    m2: Updates
    nu: Updates
    hyperparams: Hyperparams


class _AdemamixRecord(NamedTuple):
    count: jax.Array
    m1: Updates
    m2: Updates
    nu: Updates
    hyperparams: Hyperparams


def _ademamix(g, m1, m2, nu, *, hp, t):
    m1 = ema_step(m1, g, hp.b1)
    m2 = ema_step(m2, g, hp.b3)
    nu = ema_step(nu, abs_sq(g), hp.b2)
    m1_hat = m1 * bias_correction_factor(hp.b1, t)
    nu_hat = nu * bias_correction_factor(hp.b2, t)
    return (m1_hat + hp.alpha * m2) / (jnp.sqrt(jnp.real(nu_hat) + hp.eps_root) + hp.eps), m1, m2, nu


def scale_by_ademamix(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 6.0,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    mu_dtype: Any | None = None,
) -> GradientTransformationExtraArgs:
    """AdEMAMix's scaling (Pagliardini et al. 2024, Algorithm 1, without its warm-up schedules)::

        m1_t = b1 m1_{t-1} + (1 - b1) g_t          (fast EMA, bias-corrected)
        m2_t = b3 m2_{t-1} + (1 - b3) g_t          (slow EMA, not corrected)
        v_t  = b2 v_{t-1}  + (1 - b2) |g_t|^2
        u_t  = (m1_t / (1 - b1**t) + alpha * m2_t) / (sqrt(v_t / (1 - b2**t) + eps_root) + eps)

    Args:
      b1: decay of the fast EMA.
      b2: decay of the second moment.
      b3: decay of the slow EMA (a number or a schedule; the paper warms it up).
      alpha: weight of the slow EMA (a number or a schedule).
      eps, eps_root: added outside / inside the root.
      mu_dtype: storage dtype of all three moments (as Optax; default: the parameter's).

    Returns:
      A transform whose state is ``ScaleByAdemamixState``. Float32 parity with Optax: 1e-5 over 20
      steps (``1 - b`` from the float32 ``b``; Optax rounds ``1 - b`` computed in double).
    """
    for name, value in (("b1", b1), ("b2", b2)):
        if callable(value):
            raise TypeError(
                f"{name} must be a number (Optax's scale_by_ademamix takes schedules for b3 and alpha only)"
            )
        validate.unit_interval(name, value)
    validate.unit_interval("b3", b3)
    validate.finite("alpha", alpha)
    validate.non_negative("eps", eps)
    validate.non_negative("eps_root", eps_root)
    inner = leafwise(
        _ademamix, _AdemamixRecord,
        hyperparams={"b1": b1, "b2": b2, "b3": b3, "alpha": alpha, "eps": eps, "eps_root": eps_root},
        dtypes={"m1": mu_dtype, "m2": mu_dtype, "nu": mu_dtype}, name="scale_by_ademamix",
    )  # fmt: skip
    return Restated(
        inner,
        lambda s: ScaleByAdemamixState(s.count, s.count, s.m1, s.m2, s.nu, s.hyperparams),
        lambda s: _AdemamixRecord(s.count, s.m1, s.m2, s.nu, s.hyperparams),
    )


def ademamix(
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 5.0,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: jax.typing.ArrayLike = 0.0,
    mask: Any | Callable[[Any], Any] | None = None,
) -> GradientTransformationExtraArgs:
    """AdEMAMix (Pagliardini et al. 2024): AdamW whose numerator mixes a fast and a slow EMA::

        w -> w - lr * (u_t + weight_decay * w)       (u_t from scale_by_ademamix)

    Args:
      learning_rate: the step size (a number or a schedule).
      b1, b2, b3, alpha, eps, eps_root, mu_dtype: as ``scale_by_ademamix`` (note the default
        ``alpha`` is 5 here, 6 there, as in Optax).
      weight_decay: decoupled decay (multiplied by the learning rate).
      mask: which leaves decay.

    Returns:
      ``chain(scale_by_ademamix, add_decayed_weights, scale_by_learning_rate)``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        scale_by_ademamix(b1=b1, b2=b2, b3=b3, alpha=alpha, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


class ScaleBySimplifiedAdEMAMixState(NamedTuple):
    """State of ``scale_by_simplified_ademamix``: step count ``t``, accumulator ``m``, second moment ``n``."""

    t: jax.Array
    m: Updates
    n: Updates
    hyperparams: Hyperparams


class _SimplifiedRecord(NamedTuple):
    count: jax.Array
    m: Updates
    n: Updates
    hyperparams: Hyperparams


def _simplified_ademamix(g, m, n, *, hp, t):
    m = g + hp.b1 * m
    n = ema_step(n, abs_sq(g), hp.b2)
    n_hat = n * bias_correction_factor(hp.b2, t)
    return (m + hp.alpha * g) / (jnp.sqrt(jnp.real(n_hat) + hp.eps_root) + hp.eps), m, n


def scale_by_simplified_ademamix(
    b1: jax.typing.ArrayLike = 0.99,
    b2: jax.typing.ArrayLike = 0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
) -> GradientTransformationExtraArgs:
    """Simplified AdEMAMix's scaling (Morwani et al. 2025, Algorithm 2)::

        m_t = b1 m_{t-1} + g_t                     (an undamped accumulator, no bias correction)
        n_t = b2 n_{t-1} + (1 - b2) |g_t|^2
        u_t = (m_t + alpha g_t) / (sqrt(n_t / (1 - b2**t) + eps_root) + eps)

    ``alpha = 0`` is Adam with ``lr / (1 - b1)`` (up to the first moment's bias correction).

    Args:
      b1: decay of the accumulator (``<= 1``).
      b2: decay of the second moment.
      alpha: weight of the current gradient (a number or a schedule).
      eps, eps_root: added outside / inside the root.

    Returns:
      A transform whose state is ``ScaleBySimplifiedAdEMAMixState``. Complex gradients use
      ``|g|^2`` (Optax squares them, ``g * g``, which is not phase-equivariant).
    """
    for name, value in (("b1", b1), ("b2", b2)):
        if callable(value):
            raise TypeError(f"{name} must be a number (only alpha may be a schedule)")
    validate.unit_interval("b1", b1, closed_right=True)
    validate.unit_interval("b2", b2)
    validate.finite("alpha", alpha)
    validate.non_negative("eps", eps)
    validate.non_negative("eps_root", eps_root)
    inner = leafwise(
        _simplified_ademamix, _SimplifiedRecord,
        hyperparams={"b1": b1, "b2": b2, "alpha": alpha, "eps": eps, "eps_root": eps_root},
        name="scale_by_simplified_ademamix",
    )  # fmt: skip
    return Restated(
        inner,
        lambda s: ScaleBySimplifiedAdEMAMixState(s.count, s.m, s.n, s.hyperparams),
        lambda s: _SimplifiedRecord(s.t, s.m, s.n, s.hyperparams),
    )


def simplified_ademamix(
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.99,
    b2: jax.typing.ArrayLike = 0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    weight_decay: jax.typing.ArrayLike = 0.0,
    mask: Any | Callable[[Any], Any] | None = None,
) -> GradientTransformationExtraArgs:
    """Simplified AdEMAMix (Morwani et al. 2025): ``w -> w - lr * (u_t + weight_decay * w)``.

    Args:
      learning_rate: the step size (a number or a schedule).
      b1, b2, alpha, eps, eps_root: as ``scale_by_simplified_ademamix``.
      weight_decay: decoupled decay (multiplied by the learning rate).
      mask: which leaves decay.

    Returns:
      ``chain(scale_by_simplified_ademamix, add_decayed_weights, scale_by_learning_rate)``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        scale_by_simplified_ademamix(b1=b1, b2=b2, alpha=alpha, eps=eps, eps_root=eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
