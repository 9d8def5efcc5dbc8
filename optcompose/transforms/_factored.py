"""Memory-light second moments (Adafactor's factored RMS, SM3) and per-block scalings.

``scale_by_factored_rms`` and ``scale_by_sm3`` keep statistics that are smaller than the
parameters (a row and a column vector for a matrix, one vector per axis), so their states are not
shaped like the parameters; they are built with ``_shaped.shaped``. ``scale_by_param_block_norm``
/ ``_rms`` and ``clip_by_block_rms`` treat each leaf (a weight matrix, a bias vector) as a block.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optcompose import _validate as validate
from optcompose._base import Updates
from optcompose._hyperparams import Hyperparams
from optcompose._leafwise import Leafwise, abs_sq, leafwise
from optcompose._tree import l2_norm
from optcompose.transforms._shaped import Shaped, shaped


def _decay_rate_pow(i: jax.typing.ArrayLike, exponent: jax.typing.ArrayLike = 0.8) -> jax.Array:
    """Adafactor's second-moment decay at step ``i`` (0 for the first): ``1 - (i + 1)**(-exponent)``."""
    exponent = jnp.asarray(exponent)
    dtype = exponent.dtype if jnp.issubdtype(exponent.dtype, jnp.floating) else jnp.float32
    steps = jnp.asarray(i).astype(dtype) + 1.0
    return 1.0 - steps ** (-exponent.astype(dtype))


def _factored_dims(shape: tuple[int, ...], factored: bool, min_dim_size_to_factor: int) -> tuple[int, int] | None:
    """The axes (second largest, largest) whose statistics are kept apart, or None (not factored).

    A leaf is factored when ``factored`` is set, it has at least 2 axes, and its two largest axes
    both have at least ``min_dim_size_to_factor`` entries. Ties go to the earlier axis first.
    """
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(np.asarray(shape), kind="stable")
    second, largest = int(order[-2]), int(order[-1])
    if shape[second] < min_dim_size_to_factor:
        return None
    return second, largest


class FactoredState(NamedTuple):
    count: jax.Array
    v_row: Updates
    v_col: Updates
    v: Updates
    hyperparams: Hyperparams


def _inverse_root(x: jax.Array) -> jax.Array:
    """``x ** -0.5``, and 0 where ``x`` is 0 (a coordinate with zero statistics gets no update)."""
    positive = x > 0
    return jnp.where(positive, jax.lax.rsqrt(jnp.where(positive, x, 1.0)), 0.0)


def _factored_rms(g, v_row, v_col, v, *, hp, count, factored, min_dim_size_to_factor, decay_rate_fn):
    offset = jnp.asarray(hp.step_offset).astype(count.dtype)
    decay = jnp.asarray(decay_rate_fn(count - offset, hp.decay_rate)).astype(hp.decay_rate.dtype)
    square = jnp.real(abs_sq(g)) + hp.epsilon
    dims = _factored_dims(jnp.shape(g), factored, min_dim_size_to_factor)
    if dims is None:
        v = decay * jnp.real(v) + (1.0 - decay) * square
        return g * _inverse_root(v), jnp.zeros_like(v_row), jnp.zeros_like(v_col), v
    second, largest = dims
    v_row = decay * jnp.real(v_row) + (1.0 - decay) * jnp.mean(square, axis=largest)
    v_col = decay * jnp.real(v_col) + (1.0 - decay) * jnp.mean(square, axis=second)
    # v_row lost the axis `largest`; `second` is one position lower there when it came after it.
    row_axis = second - 1 if second > largest else second
    row_mean = jnp.mean(v_row, axis=row_axis, keepdims=True)
    row_factor = _inverse_root(v_row / jnp.where(row_mean > 0, row_mean, 1.0))
    col_factor = _inverse_root(v_col)
    u = g * jnp.expand_dims(row_factor, largest) * jnp.expand_dims(col_factor, second)
    return u, v_row, v_col, jnp.zeros_like(v)


def scale_by_factored_rms(
    factored: bool = True,
    decay_rate: float = 0.8,
    step_offset: int = 0,
    min_dim_size_to_factor: int = 128,
    epsilon: float = 1e-30,
    decay_rate_fn: Callable[[Any, Any], Any] = _decay_rate_pow,
) -> Shaped:
    """Scales by a factored estimate of the gradients' root mean square (Shazeer & Stern 2018, Alg. 4)::

        beta_t = decay_rate_fn(t - 1 - step_offset, decay_rate)    (default 1 - t**(-decay_rate))
        G = |g_t|^2 + epsilon
        matrices (two largest axes r, c of size >= min_dim_size_to_factor):
            R_t = beta_t R_{t-1} + (1 - beta_t) mean_c(G)          (v_row)
            C_t = beta_t C_{t-1} + (1 - beta_t) mean_r(G)          (v_col)
            u_t = g_t / sqrt(R_t C_t / mean(R_t))
        other leaves:
            V_t = beta_t V_{t-1} + (1 - beta_t) G                  (v)
            u_t = g_t / sqrt(V_t)

    The unused fields of each leaf hold a zero of shape ``(1,)`` (Optax's state). Leading axes
    beyond the two factored ones are batch axes of the statistics. A coordinate whose statistic is
    exactly 0 (``epsilon = 0`` and zero gradients) gets update 0 instead of NaN. Computed in
    float32 from the unrounded new statistics; Optax uses them after rounding to the storage
    dtype (the same in float32; in bfloat16 the two differ at bfloat16's resolution).

    Args:
      factored: factor the statistics of matrices (False: a full second moment for every leaf).
      decay_rate: the decay schedule's exponent.
      step_offset: subtracted from the step before ``decay_rate_fn`` (for fine-tuning).
      min_dim_size_to_factor: factor only when the two largest axes have at least this size.
      epsilon: added to the squared gradients.
      decay_rate_fn: ``f(step, decay_rate) -> beta`` (a function of the 0-based step).

    Returns:
      A transform with state ``FactoredState``.
    """
    validate.non_negative("decay_rate", decay_rate)
    validate.finite("step_offset", step_offset)
    validate.integer_at_least("min_dim_size_to_factor", min_dim_size_to_factor, 0)
    validate.non_negative("epsilon", epsilon)
    if not callable(decay_rate_fn):
        raise TypeError(f"decay_rate_fn must be a function f(step, decay_rate), got {decay_rate_fn!r}")

    def init_leaf(p):
        one = jnp.zeros((1,), p.dtype)
        dims = _factored_dims(jnp.shape(p), factored, min_dim_size_to_factor)
        if dims is None:
            return one, one, jnp.zeros_like(p)
        second, largest = dims
        row = jnp.zeros(tuple(n for axis, n in enumerate(p.shape) if axis != largest), p.dtype)
        col = jnp.zeros(tuple(n for axis, n in enumerate(p.shape) if axis != second), p.dtype)
        return row, col, one

    return shaped(
        _factored_rms, FactoredState, init_leaf,
        hyperparams={"decay_rate": decay_rate, "step_offset": step_offset, "epsilon": epsilon},
        static={"factored": bool(factored), "min_dim_size_to_factor": int(min_dim_size_to_factor),
                "decay_rate_fn": decay_rate_fn},
        name="scale_by_factored_rms",
    )  # fmt: skip


class ScaleBySM3State(NamedTuple):
    mu: Updates
    nu: Updates
    hyperparams: Hyperparams


def _sm3(g, mu, nu, *, hp):
    if jnp.iscomplexobj(g):
        raise TypeError("scale_by_sm3 is defined for real parameters only (its cover statistics are maxima)")
    rank = max(jnp.ndim(g), 1)
    shape = jnp.shape(g) if jnp.ndim(g) else (1,)
    grad = jnp.reshape(g, shape)
    own = jnp.where(hp.b2 == 1.0, 1.0, 1.0 - hp.b2)
    if rank == 1:
        cover = jnp.reshape(mu[0], shape)
    else:
        covers = [jnp.reshape(m, [n if axis == i else 1 for axis, n in enumerate(shape)]) for i, m in enumerate(mu)]
        cover = functools.reduce(jnp.minimum, covers)
    accumulator = own * grad * grad + hp.b2 * cover
    positive = accumulator > 0
    scaled = grad * jnp.where(positive, jax.lax.rsqrt(jnp.where(positive, accumulator + hp.eps, 1.0)), 0.0)
    nu = (1.0 - hp.b1) * jnp.reshape(scaled, jnp.shape(g)) + hp.b1 * nu
    if rank == 1:
        new_mu = [jnp.reshape(accumulator, jnp.shape(mu[0]))]
    else:
        new_mu = [jnp.max(accumulator, axis=tuple(a for a in range(rank) if a != i)) for i in range(rank)]
    return nu, new_mu, nu


def scale_by_sm3(b1: float = 0.9, b2: float = 1.0, eps: float = 1e-8) -> Shaped:
    """SM3's scaling, one accumulator per axis (Anil et al. 2019, "Memory-Efficient Adaptive Optimization")::

        nu'_t(i) = c * g_t(i)^2 + b2 * min over the axes a of mu_{t-1}(a, i_a)   (c = 1 if b2 = 1 else 1 - b2)
        mu_t(a, j) = max over the entries i with i_a = j of nu'_t(i)               (one vector per axis)
        m_t = b1 m_{t-1} + (1 - b1) g_t / sqrt(nu'_t + eps)    (0 where nu'_t = 0)
        u_t = m_t

    With ``b2 = 1`` (the default) this is SM3-II with Adagrad-like sums. A vector keeps one
    accumulator of its own shape; a scalar keeps one of shape ``()`` (Optax's ``mu`` for a
    scalar is an empty list and its update fails). Real parameters only, as in Optax.

    Args:
      b1: the momentum of the output, in [0, 1).
      b2: the decay of the accumulators, in [0, 1] (1: plain sums).
      eps: added under the root.

    Returns:
      A transform with state ``ScaleBySM3State`` (``mu``: a list of per-axis vectors per leaf;
      ``nu``: the momentum, shaped like the parameters).
    """
    validate.unit_interval("b1", b1)
    validate.unit_interval("b2", b2, closed_right=True)
    validate.non_negative("eps", eps)

    def init_leaf(p):
        if jnp.iscomplexobj(p):
            raise TypeError("scale_by_sm3 is defined for real parameters only; got a complex leaf")
        if jnp.ndim(p) == 0:
            return [jnp.zeros((), p.dtype)], jnp.zeros_like(p)
        return [jnp.zeros((n,), p.dtype) for n in jnp.shape(p)], jnp.zeros_like(p)

    return shaped(_sm3, ScaleBySM3State, init_leaf, hyperparams={"b1": b1, "b2": b2, "eps": eps}, name="scale_by_sm3")


class ScaleByParamBlockNormState(NamedTuple):
    hyperparams: Hyperparams


def _param_block_norm(u, *, hp, w):
    return u * jnp.maximum(l2_norm(w), hp.min_scale).astype(jnp.real(u).dtype)


def scale_by_param_block_norm(min_scale: float = 1e-3) -> Leafwise:
    """Scales each leaf's update by the l2 norm of its parameter: ``u -> max(||w||, min_scale) * u``.

    A block is one leaf (a weight matrix, a bias vector). The norm is computed overflow-safe
    (``1e30`` entries do not make it inf). Needs the parameters.

    Args:
      min_scale: the smallest scaling factor (>= 0).

    Returns:
      A ``Leafwise`` transform.
    """
    validate.non_negative("min_scale", min_scale)
    return leafwise(
        _param_block_norm, ScaleByParamBlockNormState, hyperparams={"min_scale": min_scale},
        name="scale_by_param_block_norm",
    )  # fmt: skip


class ScaleByParamBlockRmsState(NamedTuple):
    hyperparams: Hyperparams


def _rms(x: jax.Array) -> jax.Array:
    """``sqrt(mean(|x|^2))``, overflow-safe (through ``l2_norm``); 0 for an empty leaf."""
    size = max(int(np.size(x)), 1)
    return l2_norm(x) / float(np.sqrt(size))


def _param_block_rms(u, *, hp, w):
    return u * jnp.maximum(_rms(w), hp.min_scale).astype(jnp.real(u).dtype)


def scale_by_param_block_rms(min_scale: float = 1e-3) -> Leafwise:
    """Scales each leaf's update by the root mean square of its parameter: ``u -> max(rms(w), min_scale) * u``.

    Adafactor's relative step size (Shazeer & Stern 2018, §8). Needs the parameters.

    Args:
      min_scale: the smallest scaling factor (>= 0); Adafactor's ``epsilon2``.

    Returns:
      A ``Leafwise`` transform.
    """
    validate.non_negative("min_scale", min_scale)
    return leafwise(
        _param_block_rms, ScaleByParamBlockRmsState, hyperparams={"min_scale": min_scale},
        name="scale_by_param_block_rms",
    )  # fmt: skip


class ClipByBlockRmsState(NamedTuple):
    hyperparams: Hyperparams


def _clip_by_block_rms(u, *, hp):
    return u / jnp.maximum(1.0, _rms(u).astype(jnp.real(u).dtype) / hp.threshold)


def clip_by_block_rms(threshold: float) -> Leafwise:
    """Clips each leaf's update to a root mean square of at most ``threshold``::

        u -> u / max(1, rms(u) / threshold)

    (Shazeer & Stern 2018, §6, "update clipping" with ``d = threshold``.)

    Args:
      threshold: the largest rms of a leaf's update (> 0).

    Returns:
      A ``Leafwise`` transform.
    """
    validate.positive("threshold", threshold)
    return leafwise(
        _clip_by_block_rms, ClipByBlockRmsState, hyperparams={"threshold": threshold}, name="clip_by_block_rms"
    )
