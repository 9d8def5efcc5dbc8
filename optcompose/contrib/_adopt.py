"""ADOPT (Taniguchi et al. 2024): Adam with the second moment of the *previous* step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import GradientTransformationExtraArgs, ScalarOrSchedule, chain
from optcompose._leafwise import Leafwise, abs_sq, leafwise
from optcompose.transforms._adaptive import ScaleByAdamState
from optcompose.transforms._scaling import scale_by_learning_rate


def _default_clip_value(count: jax.Array) -> jax.Array:
    # count ** 0.25 in the default float dtype (float32; float64 under x64), as Optax's int ** float.
    return jnp.asarray(count).astype(jnp.result_type(float)) ** 0.25


def _clip_magnitude(x: jax.Array, bound: jax.Array) -> jax.Array:
    if jnp.iscomplexobj(x):  # clip |x|, keep the phase
        magnitude = jnp.abs(x)
        return jnp.where(magnitude > bound, x * (bound / jnp.where(magnitude > 0, magnitude, 1.0)), x)
    return jnp.clip(x, -bound, bound)


def _adopt(g, mu, nu, *, hp, t, nesterov, use_clipping, clip_value_fn):
    count = t - 1
    first = count == 0
    b1 = jnp.where(first, 1.0, hp.b1).astype(hp.b1.dtype)
    b2 = jnp.where(first, 0.0, hp.b2).astype(hp.b2.dtype)
    new_nu = (1.0 - b2) * abs_sq(g) + b2 * nu
    direction = g / jnp.maximum(jnp.sqrt(jnp.real(nu)), hp.eps)
    if use_clipping:
        direction = _clip_magnitude(direction, jnp.asarray(clip_value_fn(count)).astype(hp.b1.dtype))
    new_mu = (1.0 - b1) * direction + b1 * mu
    u = (1.0 - b1) * direction + b1 * new_mu if nesterov else new_mu
    return u, new_mu, new_nu


def scale_by_adopt(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.9999,
    eps: jax.typing.ArrayLike = 1e-6,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _default_clip_value,
) -> Leafwise:
    """ADOPT's scaling (Taniguchi et al. 2024, Algorithm 2, with the clipped variant of §4)::

        t = 0:   v_0 = |g_0|^2,  m_0 = 0, u_0 = 0
        t > 0:   d_t = clip(g_t / max(sqrt(v_{t-1}), eps), c(t))      c(t) = clip_value_fn(t) = t**0.25
                 m_t = b1 m_{t-1} + (1 - b1) d_t
                 v_t = b2 v_{t-1} + (1 - b2) |g_t|^2
                 u_t = m_t      (nesterov: b1 m_t + (1 - b1) d_t)

    (``t`` counts from 0, as Optax's.) Normalizing by the previous ``v`` decorrelates the step from
    the current gradient, which is what lets ADOPT converge for any ``b2``.

    Args:
      b1, b2: decays of the first and second moments.
      eps: lower bound of ``sqrt(v)``.
      mu_dtype: storage dtype of ``mu`` (default: the parameter's).
      nesterov: look-ahead first moment.
      use_clipping: clip ``d_t`` to ``[-c(t), c(t)]`` (``|d_t| <= c(t)`` for complex, phase kept).
      clip_value_fn: ``c`` as a function of the step count.

    Returns:
      A transform whose state is ``ScaleByAdamState`` (as Optax's), the first update being 0.
    """
    validate.unit_interval("b1", b1)
    validate.unit_interval("b2", b2)
    validate.non_negative("eps", eps)
    if not callable(clip_value_fn):
        raise TypeError(f"clip_value_fn must be a function of the step count, got {clip_value_fn!r}")
    if callable(b1) or callable(b2) or callable(eps):
        raise TypeError("b1, b2 and eps must be numbers (Optax's scale_by_adopt takes no schedules for them)")
    return leafwise(
        _adopt, ScaleByAdamState, hyperparams={"b1": b1, "b2": b2, "eps": eps}, dtypes={"mu": mu_dtype},
        static={"nesterov": nesterov, "use_clipping": use_clipping, "clip_value_fn": clip_value_fn},
        name="scale_by_adopt",
    )  # fmt: skip


def adopt(
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.9999,
    eps: jax.typing.ArrayLike = 1e-6,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _default_clip_value,
) -> GradientTransformationExtraArgs:
    """ADOPT (Taniguchi et al. 2024): ``w -> w - lr * u_t`` with ``u_t`` from ``scale_by_adopt``.

    Args:
      learning_rate: the step size (a number or a schedule).
      b1, b2, eps, mu_dtype, nesterov, use_clipping, clip_value_fn: as ``scale_by_adopt``.

    Returns:
      ``chain(scale_by_adopt, scale_by_learning_rate)``. The first step does not move the parameters
      (it only initializes the second moment).
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        scale_by_adopt(
            b1=b1, b2=b2, eps=eps, mu_dtype=mu_dtype, nesterov=nesterov, use_clipping=use_clipping,
            clip_value_fn=clip_value_fn,
        ),
        scale_by_learning_rate(learning_rate),
    )  # fmt: skip
