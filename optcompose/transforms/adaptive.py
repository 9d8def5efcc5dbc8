"""Per-parameter adaptive scaling: Adagrad (rss), RMSprop (rms, stddev) and Adam."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optcompose import validate
from optcompose.base import GradientTransformation, ScalarOrSchedule
from optcompose.hyperparams import Hyperparams, HyperparamSpec
from optcompose.numerics import bias_correction_factor, widen
from optcompose.tree import full_like, safe_increment, unzip, zeros_like
from optcompose.tree import map as tree_map


class ScaleByRssState(NamedTuple):
    sum_of_squares: Any
    hyperparams: Hyperparams


class ScaleByRmsState(NamedTuple):
    count: jax.Array
    nu: Any
    hyperparams: Hyperparams


class ScaleByRStdDevState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any
    hyperparams: Hyperparams


class ScaleByAdamState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any
    hyperparams: Hyperparams


def _divide_by_root(g: jax.Array, second_moment: jax.Array, eps: jax.Array, eps_in_sqrt: bool) -> jax.Array:
    """``g / sqrt(s + eps)`` or ``g / (sqrt(s) + eps)``; 0 where both ``g`` and ``s`` are 0."""
    second_moment = jnp.maximum(second_moment, 0.0)
    denominator = jnp.sqrt(second_moment + eps) if eps_in_sqrt else jnp.sqrt(second_moment) + eps
    safe = jnp.where(denominator > 0, denominator, 1.0)
    return jnp.where(denominator > 0, g / safe, 0.0)


def scale_by_rss(
    initial_accumulator_value: float = 0.1, eps: float = 1e-7, *, eps_in_sqrt: bool = True
) -> GradientTransformation:
    """Adagrad's scaling by the root of the sum of squared gradients (Duchi et al. 2011)::

        G_t = G_{t-1} + g_t^2,           G_0 = initial_accumulator_value
        u_t = g_t / sqrt(G_t + eps)      (eps_in_sqrt=True, Optax's form)
        u_t = g_t / (sqrt(G_t) + eps)    (eps_in_sqrt=False, torch.optim.Adagrad's form)

    A coordinate whose accumulator is still exactly 0 (never saw a gradient) gets update 0.
    """
    validate.non_negative("initial_accumulator_value", initial_accumulator_value)
    validate.non_negative("eps", eps)
    spec = HyperparamSpec(eps=eps)

    def init(params):
        return ScaleByRssState(full_like(params, initial_accumulator_value), spec.init())

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        eps_t = state.hyperparams["eps"]

        def leaf(g, s):
            new_s = widen(s) + jnp.square(widen(g))
            out = _divide_by_root(widen(g), new_s, eps_t, eps_in_sqrt)
            return out.astype(jnp.asarray(g).dtype), new_s.astype(s.dtype)

        pairs = tree_map(leaf, updates, state.sum_of_squares, names=("updates", "sum_of_squares"))
        updates, sums = unzip(pairs, updates, 2)
        return updates, ScaleByRssState(sums, state.hyperparams)

    return GradientTransformation(init, update)


def scale_by_rms(
    decay: ScalarOrSchedule = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformation:
    """RMSprop's scaling by a running root mean square (Tieleman & Hinton 2012, lecture 6e)::

        nu_t = decay * nu_{t-1} + (1 - decay) * g_t^2,     nu_0 = initial_scale
        nu_hat = nu_t / (1 - decay**t)    if bias_correction else nu_t
        u_t = g_t / sqrt(nu_hat + eps)    (eps_in_sqrt=True, Optax's default)
        u_t = g_t / (sqrt(nu_hat) + eps)  (eps_in_sqrt=False, torch.optim.RMSprop's form)

    torch's ``alpha`` is our ``decay`` (torch's default 0.99; ours 0.9, as Optax).
    """
    validate.unit_interval("decay", decay)
    validate.non_negative("eps", eps)
    validate.non_negative("initial_scale", initial_scale)
    spec = HyperparamSpec(decay=decay, eps=eps)

    def init(params):
        return ScaleByRmsState(jnp.zeros((), jnp.int32), full_like(params, initial_scale), spec.init())

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        hp = spec.current(state.hyperparams, state.count)
        count = safe_increment(state.count)
        correction = bias_correction_factor(hp["decay"], count) if bias_correction else 1.0

        def leaf(g, nu):
            new_nu = hp["decay"] * widen(nu) + (1.0 - hp["decay"]) * jnp.square(widen(g))
            out = _divide_by_root(widen(g), new_nu * correction, hp["eps"], eps_in_sqrt)
            return out.astype(jnp.asarray(g).dtype), new_nu.astype(nu.dtype)

        pairs = tree_map(leaf, updates, state.nu, names=("updates", "nu"))
        updates, nu = unzip(pairs, updates, 2)
        return updates, ScaleByRmsState(count, nu, spec.advance(state.hyperparams, count))

    return GradientTransformation(init, update)


def scale_by_stddev(
    decay: ScalarOrSchedule = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformation:
    """Centered RMSprop: scale by a running standard deviation (Graves 2013, eq. 38–40)::

        mu_t = decay * mu_{t-1} + (1 - decay) * g_t
        nu_t = decay * nu_{t-1} + (1 - decay) * g_t^2
        var_t = max(nu_hat - mu_hat^2, 0)     (hats: bias-corrected if bias_correction)
        u_t = g_t / sqrt(var_t + eps)   or   g_t / (sqrt(var_t) + eps)

    The clamp at 0 keeps round-off from turning a tiny negative variance into NaN.
    """
    validate.unit_interval("decay", decay)
    validate.non_negative("eps", eps)
    validate.non_negative("initial_scale", initial_scale)
    spec = HyperparamSpec(decay=decay, eps=eps)

    def init(params):
        return ScaleByRStdDevState(
            jnp.zeros((), jnp.int32), zeros_like(params), full_like(params, initial_scale), spec.init()
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        hp = spec.current(state.hyperparams, state.count)
        count = safe_increment(state.count)
        correction = bias_correction_factor(hp["decay"], count) if bias_correction else 1.0

        def leaf(g, mu, nu):
            g32 = widen(g)
            new_mu = hp["decay"] * widen(mu) + (1.0 - hp["decay"]) * g32
            new_nu = hp["decay"] * widen(nu) + (1.0 - hp["decay"]) * jnp.square(g32)
            variance = new_nu * correction - jnp.square(new_mu * correction)
            out = _divide_by_root(g32, variance, hp["eps"], eps_in_sqrt)
            return out.astype(jnp.asarray(g).dtype), new_mu.astype(mu.dtype), new_nu.astype(nu.dtype)

        triples = tree_map(leaf, updates, state.mu, state.nu, names=("updates", "mu", "nu"))
        updates, mu, nu = unzip(triples, updates, 3)
        return updates, ScaleByRStdDevState(count, mu, nu, spec.advance(state.hyperparams, count))

    return GradientTransformation(init, update)


def scale_by_adam(
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any | None = None,
) -> GradientTransformation:
    """Adam's scaling (Kingma & Ba 2014, Algorithm 1); Nadam with ``nesterov`` (Dozat 2016)::

        m_t = b1 * m_{t-1} + (1 - b1) * g_t
        v_t = b2 * v_{t-1} + (1 - b2) * g_t^2
        m_hat = m_t / (1 - b1**t)
        m_hat = b1 * m_t / (1 - b1**(t+1)) + (1 - b1) * g_t / (1 - b1**t)     (nesterov)
        v_hat = v_t / (1 - b2**t)
        u_t = m_hat / (sqrt(v_hat + eps_root) + eps)

    At t = 1 with b1 = 0.9 the correction multiplies m by 1 / (1 - 0.9) = 10. The moments are
    stored in ``mu_dtype`` / ``nu_dtype`` (default: the parameter's dtype); the arithmetic runs in
    float32 (or wider) whatever the storage, so bfloat16 moments halve the state's memory only.
    """
    validate.unit_interval("b1", b1)
    validate.unit_interval("b2", b2)
    validate.non_negative("eps", eps)
    validate.non_negative("eps_root", eps_root)
    spec = HyperparamSpec(b1=b1, b2=b2, eps=eps, eps_root=eps_root)

    def init(params):
        return ScaleByAdamState(
            jnp.zeros((), jnp.int32), zeros_like(params, mu_dtype), zeros_like(params, nu_dtype), spec.init()
        )

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        hp = spec.current(state.hyperparams, state.count)
        b1_t, b2_t = hp["b1"], hp["b2"]
        count = safe_increment(state.count)
        correction_1 = bias_correction_factor(b1_t, count)
        correction_2 = bias_correction_factor(b2_t, count)
        next_correction_1 = bias_correction_factor(b1_t, safe_increment(count))

        def leaf(g, mu, nu):
            g32 = widen(g)
            new_mu = b1_t * widen(mu) + (1.0 - b1_t) * g32
            new_nu = b2_t * widen(nu) + (1.0 - b2_t) * jnp.square(g32)
            if nesterov:
                mu_hat = b1_t * new_mu * next_correction_1 + (1.0 - b1_t) * g32 * correction_1
            else:
                mu_hat = new_mu * correction_1
            nu_hat = new_nu * correction_2
            out = mu_hat / (jnp.sqrt(nu_hat + hp["eps_root"]) + hp["eps"])
            return out.astype(jnp.asarray(g).dtype), new_mu.astype(mu.dtype), new_nu.astype(nu.dtype)

        triples = tree_map(leaf, updates, state.mu, state.nu, names=("updates", "mu", "nu"))
        updates, mu, nu = unzip(triples, updates, 3)
        return updates, ScaleByAdamState(count, mu, nu, spec.advance(state.hyperparams, count))

    return GradientTransformation(init, update)
