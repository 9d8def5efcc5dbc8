"""MADGRAD (Defazio & Jelassi 2021): momentumized, adaptive, dual averaged gradients."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import GradientTransformationExtraArgs, Params, ScalarOrSchedule, Updates, chain
from optcompose._hyperparams import Hyperparams
from optcompose._leafwise import abs_sq, leafwise
from optcompose.contrib._common import WithInit, copy_tree
from optcompose.transforms._decay import add_decayed_weights


class MadgradState(NamedTuple):
    """State of ``scale_by_madgrad``.

    Attributes:
      count: the step count ``k``.
      grad_sum_sq: ``nu_k = sum_i lambda_i |g_i|^2``.
      s: ``s_k = sum_i lambda_i g_i``.
      x0: the initial parameters.
      hyperparams: ``learning_rate``, ``momentum``, ``eps``.
    """

    count: jax.Array
    grad_sum_sq: Updates
    s: Updates
    x0: Params
    hyperparams: Hyperparams


def _madgrad(g, nu, s, x0, *, hp, t, w):
    weight = (hp.learning_rate + hp.eps) * jnp.sqrt(t.astype(hp.eps.dtype))
    nu = nu + weight * abs_sq(g)
    s = s + weight * g
    z = x0 - s / (jnp.cbrt(jnp.real(nu)) + hp.eps)
    target = (1.0 - hp.momentum) * z + hp.momentum * w
    return target - w, nu, s, x0


def scale_by_madgrad(
    learning_rate: ScalarOrSchedule, momentum: float = 0.9, eps: float = 1e-6
) -> GradientTransformationExtraArgs:
    """MADGRAD's step (Defazio & Jelassi 2021, Algorithm 1), as a displacement of the parameters::

        lambda_k = (lr_k + eps) sqrt(k + 1)
        s_k  = s_{k-1} + lambda_k g_k;     nu_k = nu_{k-1} + lambda_k |g_k|^2
        z    = x_0 - s_k / (nu_k^(1/3) + eps)
        u    = (1 - momentum) z + momentum x - x

    (``lr_k + eps`` keeps the weights positive for a zero learning rate, as Optax.) The update already
    contains the learning rate: do not chain ``scale_by_learning_rate`` after it.

    Args:
      learning_rate: the step size (a number or a schedule).
      momentum: the averaging weight in ``[0, 1]``.
      eps: added to the cube root and to the learning rate.

    Returns:
      A transform with state ``MadgradState``; ``update`` needs params. Under x64 Optax computes
      ``sqrt(k + 1)`` in float32 (``jnp.sqrt`` of an int32): ours is float64, 6e-8 apart measured.
    """
    validate.non_negative("learning_rate", learning_rate)
    validate.unit_interval("momentum", momentum, closed_right=True)
    validate.non_negative("eps", eps)
    inner = leafwise(
        _madgrad, MadgradState, hyperparams={"learning_rate": learning_rate, "momentum": momentum, "eps": eps},
        name="scale_by_madgrad",
    )  # fmt: skip
    return WithInit(inner, x0=copy_tree)


def madgrad(
    learning_rate: ScalarOrSchedule, momentum: float = 0.9, weight_decay: float = 0.0, eps: float = 1e-6
) -> GradientTransformationExtraArgs:
    """MADGRAD (Defazio & Jelassi 2021): ``scale_by_madgrad`` of ``g + weight_decay * w`` (coupled decay).

    Args:
      learning_rate: the step size (a number or a schedule).
      momentum: the averaging weight ``c`` of ``x = (1 - c) z + c x``.
      weight_decay: L2 decay added to the gradients first.
      eps: added to the cube root (and to the learning rate in the weights).

    Returns:
      ``chain(add_decayed_weights, scale_by_madgrad)``; ``update`` needs params.
    """
    validate.non_negative("weight_decay", weight_decay)
    return chain(add_decayed_weights(weight_decay), scale_by_madgrad(learning_rate, momentum, eps))
