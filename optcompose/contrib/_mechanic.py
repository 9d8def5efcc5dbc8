"""Mechanic (Cutkosky, Defazio & Mehta 2023): a learned scale for any base optimizer."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose import _validate as validate
from optcompose._base import (
    GradientTransformation,
    GradientTransformationExtraArgs,
    OptState,
    Updates,
    _check_transform,
    call_update,
)
from optcompose._hyperparams import Hyperparams, HyperparamSpec
from optcompose._numerics import widen
from optcompose.contrib._common import NO_PARAMS, copy_tree, scalar_dtype, tree_norm, tree_vdot


class MechanicState(NamedTuple):
    """State of ``mechanize``.

    Attributes:
      base_optimizer_state: the base optimizer's state.
      count: the step count.
      r, m, v: per-beta running reward, maximum and second moment of the "gradient" h.
      s: per-beta scales (their sum multiplies the base optimizer's displacement).
      x0: the reference point (the initial parameters).
      hyperparams: ``weight_decay``, ``eps``, ``s_init``.
    """

    base_optimizer_state: OptState
    count: jax.Array
    r: jax.Array
    m: jax.Array
    v: jax.Array
    s: jax.Array
    x0: Updates
    hyperparams: Hyperparams


def mechanize(
    base_optimizer: GradientTransformation,
    weight_decay: jax.typing.ArrayLike = 1e-2,
    eps: jax.typing.ArrayLike = 1e-8,
    s_init: jax.typing.ArrayLike = 1e-6,
    num_betas: int = 6,
) -> GradientTransformationExtraArgs:
    """Mechanic (Cutkosky, Defazio & Mehta 2023, Algorithm 1): scales ``base_optimizer``'s steps.

    With ``Delta_t`` the sum of the base updates so far (``x = x0 + S Delta``, ``S = sum(s)``) and
    ``betas_i = 1 - 0.1**i`` for ``i = 1 .. num_betas``::

        g'   = g + weight_decay * S * ||g|| / (||x|| + eps) * x
        h    = <g', Delta_{t-1}>                    (Delta_{t-1} = (x0 - x) / (S + eps), per Optax)
        m_i  = max(beta_i m_i, |h| + eps);    v_i = beta_i^2 v_i + h^2
        r_i  = beta_i r_i + clip(h, -m_i_old, m_i_old) s_i
        s_i  = (s_init / num_betas * m_i + max(r_i, 0)) / (sqrt(v_i) + eps)
        x   -> x0 + sum(s) * (Delta_{t-1} - base_update)

    Args:
      base_optimizer: any transform (it receives the extra arguments of ``update``).
      weight_decay: the decay that regularises the scale.
      eps: a small constant in the denominators.
      s_init: the initial scale (spread over the betas).
      num_betas: the number of betas.

    Returns:
      A ``GradientTransformationExtraArgs`` with state ``MechanicState``; ``update`` needs params.
      The sign conventions follow Optax's implementation exactly (``Delta`` points from ``x`` back
      to ``x0``). An ``h`` that overflows (entries near 1e19 and above) counts as 0, so the scales
      stay finite where Optax's become NaN.
    """
    base_optimizer = _check_transform("base_optimizer", base_optimizer)
    validate.non_negative("weight_decay", weight_decay)
    validate.non_negative("eps", eps)
    validate.positive("s_init", s_init)
    validate.integer_at_least("num_betas", num_betas, 1)
    spec = HyperparamSpec(weight_decay=weight_decay, eps=eps, s_init=s_init)

    def init(params):
        dtype = scalar_dtype(params)
        hyper = spec.init(dtype)
        zeros = jnp.zeros((num_betas,), dtype)
        return MechanicState(
            base_optimizer_state=base_optimizer.init(params), count=jnp.zeros((), jnp.int32), r=zeros, m=zeros,
            v=zeros, s=jnp.ones((num_betas,), dtype) * hyper["s_init"], x0=copy_tree(params), hyperparams=hyper,
        )  # fmt: skip

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError(NO_PARAMS.format(name="mechanize"))
        dtype = jnp.result_type(state.s)
        hp = {k: v.astype(dtype) for k, v in state.hyperparams.items()}
        base_updates, base_state = call_update(base_optimizer, updates, state.base_optimizer_state, params, extra_args)
        x0 = jax.tree.map(lambda p, x: jnp.where(state.count == 0, p, x), params, state.x0)
        s_sum = jnp.sum(state.s)
        grad_norm = tree_norm(updates, dtype)
        param_norm = tree_norm(params, dtype)
        decay = hp["weight_decay"] * s_sum * grad_norm / (param_norm + hp["eps"])

        def real_of(x):
            return jnp.finfo(jnp.promote_types(widen(x).dtype, dtype)).dtype

        decayed = tree_lib.map(
            lambda g, p: widen(g) + decay.astype(real_of(g)) * widen(p), updates, params, names=("updates", "params")
        )
        delta_prev = tree_lib.map(
            lambda p, z: (widen(z) - widen(p)) / (s_sum + hp["eps"]).astype(real_of(p)), params, x0,
            names=("params", "x0"),
        )  # fmt: skip
        h = tree_vdot(decayed, delta_prev, dtype)
        h = jnp.where(jnp.isfinite(h), h, 0.0)  # an overflowed inner product carries no direction
        clipped = jnp.clip(h, -state.m, state.m)
        betas = jnp.asarray([1.0 - 0.1**i for i in range(1, num_betas + 1)], dtype)
        m = jnp.maximum(betas * state.m, jnp.abs(h) + hp["eps"])
        v = betas**2 * state.v + h**2
        r = betas * state.r + clipped * state.s
        wealth = hp["s_init"] / num_betas * m + jnp.maximum(0.0, r)
        s = wealth / (jnp.sqrt(v) + hp["eps"])
        total = jnp.sum(s)

        def leaf(z, d, u, p):
            real = real_of(p)
            new = widen(z) - total.astype(real) * (d - widen(u))
            return (new - widen(p)).astype(jnp.result_type(p))

        new_updates = tree_lib.map(
            leaf, x0, delta_prev, base_updates, params, names=("x0", "delta", "base updates", "params")
        )
        count = tree_lib.safe_increment(state.count)
        return new_updates, MechanicState(base_state, count, r, m, v, s, x0, state.hyperparams)

    return GradientTransformationExtraArgs(init, update)
