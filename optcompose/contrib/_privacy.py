"""Differentially private SGD (Abadi et al. 2016): per-example clipping and Gaussian noise."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _validate as validate
from optcompose._base import GradientTransformationExtraArgs, ScalarOrSchedule, chain, identity
from optcompose._hyperparams import Hyperparams, HyperparamSpec
from optcompose._numerics import widen
from optcompose.transforms._momentum import trace
from optcompose.transforms._scaling import scale_by_learning_rate


class DifferentiallyPrivateAggregateState(NamedTuple):
    """State of ``differentially_private_aggregate``: the PRNG key of the next noise draw and the
    hyperparameters ``l2_norm_clip`` and ``noise_multiplier``."""

    rng_key: jax.Array
    hyperparams: Hyperparams


def _as_key(key):
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.key(key)


def differentially_private_aggregate(
    l2_norm_clip: jax.typing.ArrayLike,
    noise_multiplier: jax.typing.ArrayLike,
    key: jax.Array | int | None = None,
    *,
    seed: int | None = None,
) -> GradientTransformationExtraArgs:
    """Aggregates per-example gradients with clipping and noise (Abadi et al. 2016, Algorithm 1)::

        g_i <- g_i * min(1, C / ||g_i||)                    (||.||: over all leaves of example i)
        u   = (sum_i g_i + N(0, (C * noise_multiplier)^2 I)) / B

    The updates must carry the batch as their leading axis (``jax.vmap(jax.grad(loss))``), ``B``
    examples in every leaf.

    Args:
      l2_norm_clip: the bound ``C`` of each example's gradient norm.
      noise_multiplier: the noise's standard deviation in units of ``C``.
      key: a PRNG key or an integer seed (None: key 0, with a warning, as Optax).
      seed: deprecated spelling of an integer ``key``.

    Returns:
      A ``GradientTransformationExtraArgs`` with state ``DifferentiallyPrivateAggregateState``. The
      noise is drawn as Optax draws it (one key per leaf), so float32 results are identical;
      low-precision leaves are clipped and noised in float32 (Optax: in their own dtype).
    """
    if seed is not None:
        warnings.warn('"seed" is deprecated, pass key=seed', DeprecationWarning, stacklevel=2)
        if key is not None:
            raise ValueError("pass only one of key and seed")
        key = seed
    if key is None:
        warnings.warn("differentially_private_aggregate: pass key=...; using key 0", stacklevel=2)
        key = 0
    key = _as_key(key)
    validate.non_negative("l2_norm_clip", l2_norm_clip)
    validate.non_negative("noise_multiplier", noise_multiplier)
    spec = HyperparamSpec(l2_norm_clip=l2_norm_clip, noise_multiplier=noise_multiplier)

    def init(params):
        del params
        return DifferentiallyPrivateAggregateState(rng_key=key, hyperparams=spec.init())

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        grads, structure = jax.tree.flatten(updates)
        if not grads:
            return updates, state
        batch = jnp.shape(grads[0])[0] if jnp.ndim(grads[0]) else None
        if batch is None or any(jnp.ndim(g) < 1 or jnp.shape(g)[0] != batch for g in grads):
            raise ValueError(
                "differentially_private_aggregate needs per-example gradients: every leaf's leading axis is the "
                f"batch, got shapes {[jnp.shape(g) for g in grads]}"
            )
        wide = [widen(g) for g in grads]
        clip = state.hyperparams["l2_norm_clip"]
        std = clip * state.hyperparams["noise_multiplier"]
        norms = jnp.sqrt(sum(jnp.sum(jnp.abs(g) ** 2, axis=tuple(range(1, g.ndim))) for g in wide))
        multipliers = jnp.nan_to_num(jnp.minimum(clip / norms, 1.0), nan=1.0)
        new_key, *keys = jax.random.split(state.rng_key, len(grads) + 1)
        noised = []
        for g, original, k in zip(wide, grads, keys, strict=True):
            total = jnp.tensordot(multipliers.astype(g.dtype), g, axes=1)
            noise = jax.random.normal(k, total.shape, total.dtype)
            noised.append(((total + std.astype(jnp.finfo(total.dtype).dtype) * noise) / batch).astype(original.dtype))
        return structure.unflatten(noised), state._replace(rng_key=new_key)

    return GradientTransformationExtraArgs(init, update)


def dpsgd(
    learning_rate: ScalarOrSchedule,
    l2_norm_clip: jax.typing.ArrayLike,
    noise_multiplier: jax.typing.ArrayLike,
    seed: int,
    momentum: jax.typing.ArrayLike | None = None,
    nesterov: bool = False,
) -> GradientTransformationExtraArgs:
    """DP-SGD (Abadi et al. 2016): ``differentially_private_aggregate`` then SGD, optionally with momentum.

    Args:
      learning_rate: the step size (a number or a schedule).
      l2_norm_clip: the bound of each example's gradient norm.
      noise_multiplier: the noise's standard deviation in units of ``l2_norm_clip``.
      seed: the noise's integer seed (``jax.random.key(seed)``, as Optax).
      momentum: heavy-ball momentum (None: plain SGD).
      nesterov: Nesterov momentum.

    Returns:
      A chain whose ``update`` takes per-example gradients (a leading batch axis in every leaf) and
      returns updates shaped like the parameters.
    """
    validate.non_negative("learning_rate", learning_rate)
    return chain(
        differentially_private_aggregate(l2_norm_clip=l2_norm_clip, noise_multiplier=noise_multiplier, key=seed),
        trace(decay=momentum, nesterov=nesterov) if momentum is not None else identity(),
        scale_by_learning_rate(learning_rate),
    )
