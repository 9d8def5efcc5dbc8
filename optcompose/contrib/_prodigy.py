"""Prodigy (Mishchenko & Defazio 2023): Adam whose step size is estimated from the distance travelled."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose import _validate as validate
from optcompose._base import GradientTransformationExtraArgs, Params, ScalarOrSchedule, Updates
from optcompose._hyperparams import Hyperparams, HyperparamSpec
from optcompose._leafwise import abs_sq
from optcompose._numerics import power, widen
from optcompose.contrib._common import NO_PARAMS, copy_tree, scalar_dtype, tree_l1, tree_vdot


class ProdigyState(NamedTuple):
    """State of ``prodigy``.

    Attributes:
      exp_avg, exp_avg_sq: Adam's moments of the scaled gradients ``d * g``.
      grad_sum: the weighted sum ``s`` of the scaled gradients.
      params0: the initial parameters ``x_0``.
      estim_lr: the distance estimate ``d``.
      numerator_weighted: the weighted sum of ``<g, x_0 - x>``.
      count: the step count.
      hyperparams: ``learning_rate``, ``beta1``, ``beta2``, ``beta3``, ``eps``, ``estim_lr0``,
        ``estim_lr_coef``, ``weight_decay``.
    """

    exp_avg: Updates
    exp_avg_sq: Updates
    grad_sum: Updates
    params0: Params
    estim_lr: jax.Array
    numerator_weighted: jax.Array
    count: jax.Array
    hyperparams: Hyperparams


def _betas(betas) -> tuple:
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError) as err:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}") from err
    validate.unit_interval("betas[0]", beta1)
    validate.unit_interval("betas[1]", beta2)
    return beta1, beta2


def prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] = (0.9, 0.999),
    beta3: jax.typing.ArrayLike | None = None,
    eps: jax.typing.ArrayLike = 1e-8,
    estim_lr0: jax.typing.ArrayLike = 1e-6,
    estim_lr_coef: jax.typing.ArrayLike = 1.0,
    weight_decay: jax.typing.ArrayLike = 0.0,
    safeguard_warmup: bool = False,
) -> GradientTransformationExtraArgs:
    """Prodigy (Mishchenko & Defazio 2023, Algorithm 4, the Adam version)::

        lr_t  = d_t * learning_rate(t) * sqrt(1 - b2**(t+1)) / (1 - b1**(t+1))
        m     = b1 m + (1 - b1) d_t g;      v = b2 v + (1 - b2) d_t^2 |g|^2
        r     = b3 r + (d_t / d_0) lr_t <g, x_0 - x>
        s     = b3 s + (lr_t or d_t if safeguard_warmup) d_t g / d_0
        d_t+1 = max(d_t, estim_lr_coef * r / ||s||_1)
        w    -> w - lr_t (m / (sqrt(v) + d_t+1 eps) + weight_decay w)

    ``d_0 = estim_lr0``, ``b3 = sqrt(b2)`` by default, ``t`` counts from 0.

    Args:
      learning_rate: a multiplier of the estimated step (a number or a schedule).
      betas: Adam's ``(b1, b2)``.
      beta3: decay of ``r`` and ``s`` (default ``sqrt(b2)``).
      eps: Adam's epsilon, scaled by ``d``.
      estim_lr0: the initial estimate ``d_0``.
      estim_lr_coef: multiplies the estimate.
      weight_decay: decoupled decay, scaled by ``lr_t``.
      safeguard_warmup: use ``d_t`` instead of ``lr_t`` in ``s`` (for warm-up schedules).

    Returns:
      A ``GradientTransformationExtraArgs`` with state ``ProdigyState``; ``update`` needs params.

    While ``s`` is 0 (zero gradients so far) or the estimate overflows (entries near 1e19 and above,
    whose products overflow float32), ``d`` is kept; Optax's ``d`` becomes NaN there. Scalars are
    float32 (float64 for float64 parameters), not the lowest parameter dtype as Optax's.
    """
    beta1, beta2 = _betas(betas)
    if beta3 is None:
        beta3 = float(beta2) ** 0.5
    validate.non_negative("learning_rate", learning_rate)
    validate.unit_interval("beta3", beta3, closed_right=True)
    validate.non_negative("eps", eps)
    validate.positive("estim_lr0", estim_lr0)
    validate.non_negative("estim_lr_coef", estim_lr_coef)
    validate.non_negative("weight_decay", weight_decay)
    spec = HyperparamSpec(
        learning_rate=learning_rate, beta1=beta1, beta2=beta2, beta3=beta3, eps=eps, estim_lr0=estim_lr0,
        estim_lr_coef=estim_lr_coef, weight_decay=weight_decay,
    )  # fmt: skip

    def init(params):
        dtype = scalar_dtype(params)
        hyper = spec.init(dtype)
        return ProdigyState(
            exp_avg=tree_lib.zeros_like(params), exp_avg_sq=tree_lib.zeros_like(params),
            grad_sum=tree_lib.zeros_like(params), params0=copy_tree(params),
            estim_lr=hyper["estim_lr0"], numerator_weighted=jnp.zeros((), dtype), count=jnp.zeros((), jnp.int32),
            hyperparams=hyper,
        )  # fmt: skip

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(NO_PARAMS.format(name="prodigy"))
        h = spec.current(state.hyperparams, state.count)
        dtype = jnp.result_type(state.estim_lr)
        h = {k: jnp.asarray(v).astype(dtype) for k, v in h.items()}
        t = tree_lib.safe_increment(state.count)
        b1, b2, b3, d0, d = h["beta1"], h["beta2"], h["beta3"], h["estim_lr0"], state.estim_lr
        dlr = d * h["learning_rate"] * jnp.sqrt(1.0 - power(b2, t)) / (1.0 - power(b1, t))
        diff = tree_lib.map(lambda p0, p: widen(p0) - widen(p), state.params0, params, names=("params0", "params"))
        numerator_acum = tree_vdot(updates, diff, dtype)
        s_scale = d if safeguard_warmup else dlr

        def moments(g, m, v, s):
            gw = widen(g)
            real = jnp.finfo(jnp.promote_types(gw.dtype, dtype)).dtype
            dg = d.astype(real) * gw
            m_new = b1.astype(real) * widen(m) + (1.0 - b1.astype(real)) * dg
            v_new = b2.astype(real) * widen(v) + (1.0 - b2.astype(real)) * abs_sq(dg)
            s_new = b3.astype(real) * widen(s) + s_scale.astype(real) * dg / d0.astype(real)
            return tuple(x.astype(jnp.result_type(old)) for x, old in ((m_new, m), (v_new, v), (s_new, s)))

        results = tree_lib.map(
            moments, updates, state.exp_avg, state.exp_avg_sq, state.grad_sum,
            names=("updates", "exp_avg", "exp_avg_sq", "grad_sum"),
        )  # fmt: skip
        exp_avg, exp_avg_sq, grad_sum = tree_lib.unzip(results, updates, 3)
        numerator = b3 * state.numerator_weighted + (d / d0) * dlr * numerator_acum
        denominator = tree_l1(grad_sum, dtype)
        estimate = h["estim_lr_coef"] * numerator / jnp.where(denominator > 0, denominator, 1.0)
        new_d = jnp.where((denominator > 0) & jnp.isfinite(estimate), jnp.maximum(d, estimate), d)

        def step(m, v, p):
            real = jnp.finfo(jnp.promote_types(widen(m).dtype, dtype)).dtype
            lr, wd, e = dlr.astype(real), h["weight_decay"].astype(real), new_d.astype(real) * h["eps"].astype(real)
            u = -wd * lr * widen(p) - lr * widen(m) / (jnp.sqrt(jnp.real(widen(v))) + e)
            return u.astype(jnp.result_type(p))

        new_updates = tree_lib.map(step, exp_avg, exp_avg_sq, params, names=("exp_avg", "exp_avg_sq", "params"))
        return new_updates, ProdigyState(
            exp_avg, exp_avg_sq, grad_sum, state.params0, new_d.astype(dtype), numerator.astype(dtype), t,
            spec.advance(state.hyperparams, t),
        )  # fmt: skip

    return GradientTransformationExtraArgs(init, update)
