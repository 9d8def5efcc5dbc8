"""MoMo and MoMo-Adam (Schaipp, Ohana, Eickenberg, Defazio & Gower 2023): Polyak-type step sizes
from a model of the loss, built from momentum."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose import _validate as validate
from optcompose._base import GradientTransformationExtraArgs, ScalarOrSchedule, Updates
from optcompose._hyperparams import Hyperparams, HyperparamSpec
from optcompose._leafwise import abs_sq
from optcompose._numerics import power, widen
from optcompose.contrib._common import NO_PARAMS, scalar_dtype, tree_squared_norm, tree_vdot

_TINY = float(jnp.finfo(float).eps)  # Optax's threshold for a zero momentum norm (float64's eps)
_NO_VALUE = "{name} needs the loss: call update(grads, state, params, value=loss) (jax.value_and_grad gives both)"


class MomoState(NamedTuple):
    """State of ``momo``.

    Attributes:
      exp_avg: the momentum ``d`` of the gradients.
      barf: the momentum of the loss values.
      gamma: the momentum of ``<g, x>``.
      lb: the current lower bound of the loss.
      count: the step count.
      hyperparams: ``learning_rate``, ``beta``, ``lower_bound``, ``weight_decay``.
    """

    exp_avg: Updates
    barf: jax.Array
    gamma: jax.Array
    lb: jax.Array
    count: jax.Array
    hyperparams: Hyperparams


def _leaf_real(x, dtype):
    return jnp.finfo(jnp.promote_types(widen(x).dtype, dtype)).dtype


def momo(
    learning_rate: ScalarOrSchedule = 1.0,
    beta: jax.typing.ArrayLike = 0.9,
    lower_bound: jax.typing.ArrayLike = 0.0,
    weight_decay: jax.typing.ArrayLike = 0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformationExtraArgs:
    """MoMo (Schaipp et al. 2023, Algorithm 1): SGD with momentum and a truncated Polyak step::

        d = beta d + (1 - beta) g;  f = beta f + (1 - beta) loss;  gamma = beta gamma + (1 - beta) <g, x>
        (beta = 0 at the first step)
        h   = (1 + lr wd) (f - lb - gamma) + <d, x>
        tau = min(lr, max(h, 0) / ||d||^2)              (0 when ||d||^2 <= float64 eps)
        x  -> x - lr wd / (1 + lr wd) x - tau d

    With ``adapt_lower_bound`` the bound ``lb`` is estimated online (the paper's MoMo*). When the
    Polyak ratio is not finite (inner products of entries near 1e19 and above overflow float32),
    ``tau`` is 0 for that step (only the decay applies) where Optax returns NaN.

    Args:
      learning_rate: the largest step (a number or a schedule).
      beta: the momentum.
      lower_bound: a lower bound of the loss (0 for non-negative losses).
      weight_decay: decoupled decay.
      adapt_lower_bound: estimate the lower bound instead of keeping it.

    Returns:
      A ``GradientTransformationExtraArgs`` with state ``MomoState``; ``update`` needs params and
      the loss: ``update(grads, state, params, value=loss)``.
    """
    validate.non_negative("learning_rate", learning_rate)
    validate.unit_interval("beta", beta)
    validate.finite("lower_bound", lower_bound)
    validate.non_negative("weight_decay", weight_decay)
    spec = HyperparamSpec(learning_rate=learning_rate, beta=beta, lower_bound=lower_bound, weight_decay=weight_decay)

    def init(params):
        dtype = scalar_dtype(params)
        zero = jnp.zeros((), dtype)
        return MomoState(
            tree_lib.zeros_like(params), zero, zero, jnp.asarray(lower_bound, dtype), jnp.zeros((), jnp.int32),
            spec.init(dtype),
        )  # fmt: skip

    def update(updates, state, params=None, *, value=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(NO_PARAMS.format(name="momo"))
        if value is None:
            raise ValueError(_NO_VALUE.format(name="momo"))
        dtype = jnp.result_type(state.barf)
        h = {k: jnp.asarray(v).astype(dtype) for k, v in spec.current(state.hyperparams, state.count).items()}
        bt = jnp.where(state.count == 0, 0.0, h["beta"]).astype(dtype)
        barf = bt * state.barf + (1.0 - bt) * jnp.asarray(value).astype(dtype)

        def moment(d, g):
            c = bt.astype(_leaf_real(g, dtype))
            return (c * widen(d) + (1.0 - c) * widen(g)).astype(jnp.result_type(d))

        exp_avg = tree_lib.map(moment, state.exp_avg, updates, names=("exp_avg", "updates"))
        gamma = bt * state.gamma + (1.0 - bt) * tree_vdot(updates, params, dtype)
        norm = tree_squared_norm(exp_avg, dtype)
        iprod = tree_vdot(exp_avg, params, dtype)
        alpha, wd, lower = h["learning_rate"], h["weight_decay"], h["lower_bound"]
        shrink = 1.0 + alpha * wd
        if adapt_lower_bound:
            cap = shrink * (barf - gamma) + iprod
            lb = jnp.where(cap < shrink * state.lb, jnp.maximum(cap / (2.0 * shrink), lower), state.lb)
        else:
            lb = state.lb
        t1 = jnp.maximum(shrink * (barf - lb - gamma) + iprod, 0.0) / jnp.where(norm <= _TINY, 1.0, norm)
        tau = jnp.minimum(alpha, jnp.where((norm <= _TINY) | ~jnp.isfinite(t1), 0.0, t1))

        def step(d, p):
            real = _leaf_real(p, dtype)
            u = -(alpha * wd / shrink).astype(real) * widen(p) - tau.astype(real) * widen(d)
            return u.astype(jnp.result_type(p))

        new_updates = tree_lib.map(step, exp_avg, params, names=("exp_avg", "params"))
        new_lb = jnp.maximum(barf + iprod - gamma - 0.5 * tau * norm, lower) if adapt_lower_bound else state.lb
        t = tree_lib.safe_increment(state.count)
        return new_updates, MomoState(exp_avg, barf, gamma, new_lb.astype(dtype), t, spec.advance(state.hyperparams, t))

    return GradientTransformationExtraArgs(init, update)


class MomoAdamState(NamedTuple):
    """State of ``momo_adam``: as ``MomoState`` plus ``exp_avg_sq``, Adam's second moment.

    ``hyperparams``: ``learning_rate``, ``b1``, ``b2``, ``eps``, ``lower_bound``, ``weight_decay``.
    """

    exp_avg: Updates
    exp_avg_sq: Updates
    barf: jax.Array
    gamma: jax.Array
    lb: jax.Array
    count: jax.Array
    hyperparams: Hyperparams


def momo_adam(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    lower_bound: jax.typing.ArrayLike = 0.0,
    weight_decay: jax.typing.ArrayLike = 0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformationExtraArgs:
    """MoMo-Adam (Schaipp et al. 2023, Algorithm 3): MoMo in Adam's preconditioned geometry::

        d = b1 d + (1 - b1) g;  v = b2 v + (1 - b2) |g|^2;  D = eps + sqrt(v / (1 - b2**t))
        f, gamma: b1-momenta of the loss and of <g, x>;   c = 1 - b1**t
        h   = (1 + lr wd) (f - c lb - gamma) + <d, x>
        tau = min(lr / c, max(h, 0) / <d, d / D>)
        x  -> x - lr wd / (1 + lr wd) x - tau d / D

    Args:
      learning_rate: the largest step (a number or a schedule).
      b1, b2, eps: Adam's.
      lower_bound, weight_decay, adapt_lower_bound: as ``momo``.

    Returns:
      A ``GradientTransformationExtraArgs`` with state ``MomoAdamState``; ``update`` needs params
      and ``value=loss``. Non-finite Polyak ratios give ``tau = 0`` (see ``momo``).
    """
    validate.non_negative("learning_rate", learning_rate)
    validate.unit_interval("b1", b1)
    validate.unit_interval("b2", b2)
    validate.non_negative("eps", eps)
    validate.finite("lower_bound", lower_bound)
    validate.non_negative("weight_decay", weight_decay)
    spec = HyperparamSpec(
        learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, lower_bound=lower_bound, weight_decay=weight_decay
    )

    def init(params):
        dtype = scalar_dtype(params)
        zero = jnp.zeros((), dtype)
        return MomoAdamState(
            tree_lib.zeros_like(params), tree_lib.zeros_like(params), zero, zero, jnp.asarray(lower_bound, dtype),
            jnp.zeros((), jnp.int32), spec.init(dtype),
        )  # fmt: skip

    def update(updates, state, params=None, *, value=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(NO_PARAMS.format(name="momo_adam"))
        if value is None:
            raise ValueError(_NO_VALUE.format(name="momo_adam"))
        dtype = jnp.result_type(state.barf)
        h = {k: jnp.asarray(v).astype(dtype) for k, v in spec.current(state.hyperparams, state.count).items()}
        t = tree_lib.safe_increment(state.count)
        b1_, b2_ = h["b1"], h["b2"]
        barf = b1_ * state.barf + (1.0 - b1_) * jnp.asarray(value).astype(dtype)
        bc2 = 1.0 - power(b2_, t)

        def moments(d, v, g):
            real = _leaf_real(g, dtype)
            c1, c2, gw = b1_.astype(real), b2_.astype(real), widen(g)
            d_new = c1 * widen(d) + (1.0 - c1) * gw
            v_new = c2 * widen(v) + (1.0 - c2) * abs_sq(gw)
            d_new, v_new = d_new.astype(jnp.result_type(d)), v_new.astype(jnp.result_type(v))
            precond = h["eps"].astype(real) + jnp.sqrt(jnp.real(widen(v_new)) / bc2.astype(real))
            return d_new, v_new, precond

        results = tree_lib.map(
            moments, state.exp_avg, state.exp_avg_sq, updates, names=("exp_avg", "exp_avg_sq", "updates")
        )
        exp_avg, exp_avg_sq, precond = tree_lib.unzip(results, updates, 3)
        weighted = jax.tree.map(lambda d, q: widen(d) / q, exp_avg, precond)
        norm = tree_vdot(exp_avg, weighted, dtype)
        gamma = b1_ * state.gamma + (1.0 - b1_) * tree_vdot(updates, params, dtype)
        iprod = tree_vdot(exp_avg, params, dtype)
        alpha, wd, lower = h["learning_rate"], h["weight_decay"], h["lower_bound"]
        bc1 = 1.0 - power(b1_, t)
        shrink = 1.0 + alpha * wd
        if adapt_lower_bound:
            cap = shrink * (barf - gamma) + iprod
            lb = jnp.where(cap < shrink * bc1 * state.lb, jnp.maximum(cap / (2.0 * bc1 * shrink), lower), state.lb)
        else:
            lb = state.lb
        t1 = jnp.maximum(shrink * (barf - bc1 * lb - gamma) + iprod, 0.0) / jnp.where(norm <= _TINY, 1.0, norm)
        tau = jnp.minimum(alpha / bc1, jnp.where((norm <= _TINY) | ~jnp.isfinite(t1), 0.0, t1))

        def step(d, q, p):
            real = _leaf_real(p, dtype)
            u = -(alpha * wd / shrink).astype(real) * widen(p) - tau.astype(real) * widen(d) / q
            return u.astype(jnp.result_type(p))

        new_updates = tree_lib.map(step, exp_avg, precond, params, names=("exp_avg", "precond", "params"))
        new_lb = jnp.maximum((barf + iprod - gamma - 0.5 * tau * norm) / bc1, lower) if adapt_lower_bound else state.lb
        return new_updates, MomoAdamState(
            exp_avg, exp_avg_sq, barf, gamma, new_lb.astype(dtype), t, spec.advance(state.hyperparams, t)
        )

    return GradientTransformationExtraArgs(init, update)
