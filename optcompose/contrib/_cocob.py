"""COCOB-Backprop (Orabona & Tommasi 2017): learning-rate-free steps from coin betting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import GradientTransformationExtraArgs, ScalarOrSchedule, Updates, chain
from optcompose._hyperparams import Hyperparams
from optcompose._leafwise import leafwise
from optcompose.contrib._common import WithInit, copy_tree
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._scaling import scale_by_learning_rate


class COCOBState(NamedTuple):
    """State of ``scale_by_cocob`` (per coordinate).

    Attributes:
      init_particles: the initial parameters ``w_1``.
      cumulative_gradients: ``theta = -sum g``.
      scale: ``L``, the largest ``|g|`` so far (starts at ``eps``).
      subgradients: ``G = sum |g|``.
      reward: ``Reward = max(Reward - g (w - w_1), 0)``.
      hyperparams: ``alpha``.
    """

    init_particles: Updates
    cumulative_gradients: Updates
    scale: Updates
    subgradients: Updates
    reward: Updates
    hyperparams: Hyperparams


def _cocob(g, w0, theta, scale, total, reward, *, hp, w):
    scale = jnp.maximum(scale, jnp.abs(g))
    total = total + jnp.abs(g)
    reward = jnp.maximum(reward - g * (w - w0), 0.0)
    theta = theta - g
    target = w0 + theta / (scale * jnp.maximum(total + scale, hp.alpha * scale)) * (scale + reward)
    return target - w, w0, theta, scale, total, reward


def scale_by_cocob(
    alpha: jax.typing.ArrayLike = 100.0, eps: jax.typing.ArrayLike = 1e-8
) -> GradientTransformationExtraArgs:
    """COCOB-Backprop's step (Orabona & Tommasi 2017, Algorithm 2), per coordinate::

        L = max(L, |g|);  G = G + |g|;  Reward = max(Reward - g (w - w_1), 0);  theta = theta - g
        w_new = w_1 + theta / (L max(G + L, alpha L)) * (L + Reward)
        u = w_new - w

    Args:
      alpha: bounds the step early on (the paper's 100).
      eps: the initial ``L`` (keeps the first division finite).

    Returns:
      A transform with state ``COCOBState``; ``update`` needs params. Real parameters only.
    """
    validate.positive("alpha", alpha)
    validate.positive("eps", eps)
    inner = leafwise(
        _cocob, COCOBState, hyperparams={"alpha": alpha}, fill={"scale": float(eps)}, name="scale_by_cocob"
    )
    return WithInit(inner, init_particles=copy_tree)


def cocob(
    learning_rate: ScalarOrSchedule = 1.0,
    alpha: jax.typing.ArrayLike = 100.0,
    eps: jax.typing.ArrayLike = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.0,
    mask: Any | Callable[[Any], Any] | None = None,
) -> GradientTransformationExtraArgs:
    """COCOB (Orabona & Tommasi 2017): ``scale_by_cocob`` of ``learning_rate * (g + weight_decay * w)``.

    Args:
      learning_rate: scales the gradients fed to the betting rule (default 1: nothing to tune).
      alpha, eps: as ``scale_by_cocob``.
      weight_decay: L2 decay added to the gradients first.
      mask: which leaves decay.

    Returns:
      ``chain(add_decayed_weights, scale_by_learning_rate(flip_sign=False), scale_by_cocob)``.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate, flip_sign=False),
        scale_by_cocob(alpha, eps),
    )
