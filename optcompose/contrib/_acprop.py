"""ACProp (Zhuang et al. 2021): AdaBelief's centred second moment, applied one step late."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import GradientTransformationExtraArgs, ScalarOrSchedule, chain
from optcompose._leafwise import Leafwise, abs_sq, ema_step, leafwise
from optcompose._numerics import bias_correction_factor
from optcompose.transforms._adam_variants import ScaleByBeliefState
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._scaling import scale_by_learning_rate


def _acprop(g, mu, nu, *, hp, t):
    new_mu = ema_step(mu, g, hp.b1)
    new_nu = ema_step(nu, abs_sq(g - mu), hp.b2) + hp.eps_root
    first = t == 1
    nu_hat = jnp.where(first, 1.0, jnp.real(nu) * bias_correction_factor(hp.b2, jnp.where(first, t, t - 1)))
    return g / (jnp.sqrt(nu_hat) + hp.eps), new_mu, new_nu


def scale_by_acprop(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-16,
    eps_root: jax.typing.ArrayLike = 1e-16,
) -> Leafwise:
    """ACProp's scaling (Zhuang et al. 2021, Algorithm 2, as Optax implements it)::

        m_t = b1 m_{t-1} + (1 - b1) g_t
        s_t = b2 s_{t-1} + (1 - b2) |g_t - m_{t-1}|^2 + eps_root
        u_t = g_t / (sqrt(s_{t-1} / (1 - b2**(t-1))) + eps)        (u_1 = g_1 / (1 + eps))

    The denominator uses the *previous* belief ``s_{t-1}``, so the step is independent of the
    current gradient's deviation ("asynchronous" update). As in Optax, the numerator is the raw
    gradient (``m`` only enters through ``s``).

    Args:
      b1: decay of the first moment.
      b2: decay of the belief (the second central moment).
      eps: added to the root in the denominator.
      eps_root: added to the belief at every step.

    Returns:
      A transform with state ``ScaleByBeliefState``. Complex gradients use ``|g - m|^2``.
    """
    validate.unit_interval("b1", b1)
    validate.unit_interval("b2", b2)
    validate.non_negative("eps", eps)
    validate.non_negative("eps_root", eps_root)
    return leafwise(
        _acprop, ScaleByBeliefState, hyperparams={"b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root},
        name="scale_by_acprop",
    )  # fmt: skip


def acprop(
    learning_rate: ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-16,
    eps_root: jax.typing.ArrayLike = 1e-16,
    weight_decay: jax.typing.ArrayLike = 0.0,
    mask: Any | Callable[[Any], Any] | None = None,
) -> GradientTransformationExtraArgs:
    """ACProp (Zhuang et al. 2021): ``w -> w - lr * (u_t + weight_decay * w)``, ``u_t`` from ``scale_by_acprop``.

    Args:
      learning_rate: the step size (a number or a schedule).
      b1, b2, eps, eps_root: as ``scale_by_acprop``.
      weight_decay: decoupled decay (multiplied by the learning rate).
      mask: which leaves decay (a pytree of bools or a function of the params).

    Returns:
      ``chain(scale_by_acprop, add_decayed_weights, scale_by_learning_rate)``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        scale_by_acprop(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
