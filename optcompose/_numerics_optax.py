"""Optax's public numerics helpers, by Optax's names and signatures.

Optax exports these at its top level (``optax.safe_norm``, ``optax.update_moment`` ...) and code
written for Optax calls them directly; optcompose's own transforms use ``_leafwise`` and
``_numerics`` instead. Every function here works on pytrees (``None`` leaves pass through) or on
one array, exactly as its Optax namesake:

* moments: ``update_moment``, ``update_moment_per_elem_norm``, ``update_infinity_moment``,
  ``bias_correction``;
* norms with a finite gradient at 0: ``safe_norm``, ``safe_root_mean_squares``;
* counters: ``safe_increment`` (integer *and* floating counts, saturating at the dtype's
  maximum) and its older name ``safe_int32_increment``;
* ``scale_gradient``: the identity in the forward pass, a scaled cotangent in the backward pass.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _is_none(x: Any) -> bool:
    return x is None


def _per_leaf(fn, updates: Any, moments: Any) -> Any:
    """``fn(g, m)`` over the leaves of ``updates``; a ``None`` update gives ``None``."""
    return jax.tree.map(lambda g, m: None if g is None else fn(g, m), updates, moments, is_leaf=_is_none)


def update_moment(updates: Any, moments: Any, decay: Any, order: Any) -> Any:
    """The exponential moving average of the ``order``-th power of the updates.

    ``m_t = (1 - decay) * g_t**order + decay * m_{t-1}`` per leaf (Kingma & Ba 2014, Algorithm 1,
    with ``order`` 1 for the first moment). ``g**order`` is the plain power, so for complex
    ``g`` and ``order=2`` it is ``g*g``, not ``|g|^2``; use ``update_moment_per_elem_norm`` for that.

    Args:
      updates: a pytree of arrays (``None`` leaves stay ``None``).
      moments: the previous moments, same structure.
      decay: the EMA's decay, a scalar.
      order: the power of the updates.

    Returns:
      The new moments, a pytree like ``updates``.
    """
    return _per_leaf(lambda g, m: (1 - decay) * (g**order) + decay * m, updates, moments)


def _elementwise_power(g: jax.Array, order: Any) -> jax.Array:
    if not jnp.iscomplexobj(g):
        return g**order
    half = order / 2
    if float(half).is_integer():  # an integer power lowers to multiplications
        half = int(half)
    return ((g * jnp.conj(g)).real) ** half


def update_moment_per_elem_norm(updates: Any, moments: Any, decay: Any, order: Any) -> Any:
    """The exponential moving average of ``|g|**order``: ``m_t = (1 - decay) |g_t|^order + decay m_{t-1}``.

    For real ``g`` the power is ``g**order`` (so an odd ``order`` keeps the sign, as in Optax);
    for complex ``g`` it is ``(g conj(g))**(order / 2)``, real-valued. With ``order=2`` this is
    Adam's second moment ``E|g|^2`` for real and complex parameters alike.

    Args:
      updates: a pytree of arrays (``None`` leaves stay ``None``).
      moments: the previous moments, same structure.
      decay: the EMA's decay, a scalar.
      order: the power.

    Returns:
      The new moments.
    """
    return _per_leaf(lambda g, m: (1 - decay) * _elementwise_power(g, order) + decay * m, updates, moments)


def update_infinity_moment(updates: Any, moments: Any, decay: Any, eps: Any) -> Any:
    """Adamax's exponentially weighted infinity norm (Kingma & Ba 2014, §7.1)::

        u_t = max(|g_t| + eps, decay * u_{t-1})

    Args:
      updates: a pytree of arrays (``None`` leaves stay ``None``).
      moments: the previous infinity moments, same structure.
      decay: the decay of the running maximum.
      eps: added to ``|g|``, so the moment is never below ``eps``.

    Returns:
      The new infinity moments.
    """
    return _per_leaf(lambda g, m: jnp.maximum(jnp.abs(g) + eps, decay * m), updates, moments)


def bias_correction(moment: Any, decay: Any, count: Any) -> Any:
    """Removes the zero-initialisation bias of an EMA: ``m / (1 - decay**count)`` per leaf.

    ``1 - decay**count`` is computed at the precision of ``decay`` and ``count`` (float32 for
    Python numbers) and only then cast to each leaf's dtype, so a bfloat16 moment stays bfloat16
    without ``decay**count`` rounding to 1 (which would divide by zero).

    Args:
      moment: a pytree of arrays.
      decay: the EMA's decay.
      count: the number of EMA updates so far (>= 1).

    Returns:
      The corrected moments, each in its leaf's dtype.
    """
    denominator = 1 - jnp.asarray(decay) ** count
    return jax.tree.map(lambda m: m / denominator.astype(m.dtype), moment)


def safe_norm(
    x: jax.typing.ArrayLike,
    min_norm: jax.typing.ArrayLike,
    ord: int | float | str | None = None,
    axis: None | tuple[int, ...] | int = None,
    keepdims: bool = False,
) -> jax.Array:
    """``max(norm(x), min_norm)`` whose gradient is finite (0) where the norm is at most ``min_norm``.

    ``jnp.maximum(jnp.linalg.norm(x), min_norm)`` has a NaN gradient at ``x = 0`` (the norm's
    derivative ``x / |x|`` is evaluated even though the other branch is taken). Here the norm is
    evaluated a second time on an input that holds ones wherever the result will be
    ``min_norm``, so the branch that is not taken has a finite derivative.

    Args:
      x: an array.
      min_norm: the lower bound of the result.
      ord: the order of the norm, as ``jnp.linalg.norm`` (None: 2-norm / Frobenius).
      axis: the axes to reduce, as ``jnp.linalg.norm`` (None: all of a vector or matrix).
      keepdims: keep the reduced axes with size 1.

    Returns:
      The norm, at least ``min_norm``.
    """
    x = jnp.asarray(x)
    kept = jnp.linalg.norm(x, ord=ord, axis=axis, keepdims=True)
    small_kept = kept <= min_norm
    harmless = jnp.where(small_kept, jnp.ones_like(x), x)
    norm = jnp.linalg.norm(harmless, ord=ord, axis=axis, keepdims=keepdims)
    small = small_kept if keepdims else jnp.reshape(small_kept, jnp.shape(norm))
    return jnp.where(small, min_norm, norm)


def safe_root_mean_squares(x: jax.typing.ArrayLike, min_rms: jax.typing.ArrayLike) -> jax.Array:
    """``max(sqrt(mean(|x|^2)), min_rms)`` with a finite (0) gradient where the rms is at most ``min_rms``.

    Args:
      x: an array (complex entries contribute ``|x|^2``).
      min_rms: the lower bound of the result.

    Returns:
      The root mean square of ``x``, at least ``min_rms``.
    """
    x = jnp.asarray(x)

    def rms(y):
        return jnp.sqrt(jnp.mean((y * jnp.conj(y)).real))

    small = rms(x) <= min_rms
    return jnp.where(small, min_rms, rms(jnp.where(small, jnp.ones_like(x), x)))


def safe_increment(count: jax.typing.ArrayLike) -> jax.typing.ArrayLike:
    """``count + 1``, staying at the dtype's maximum instead of overflowing.

    Integer counts saturate at ``iinfo(dtype).max`` (an int32 count stops at 2**31 - 1 rather
    than wrapping to -2**31); floating counts at ``finfo(dtype).max``.

    Args:
      count: an integer or floating-point counter (any shape).

    Returns:
      The incremented counter, same dtype.

    Raises:
      ValueError: for other dtypes (bool, complex).
    """
    dtype = jnp.asarray(count).dtype
    if jnp.issubdtype(dtype, jnp.integer):
        largest = np.iinfo(dtype).max
    elif jnp.issubdtype(dtype, jnp.floating):
        largest = jnp.finfo(dtype).max
    else:
        raise ValueError(
            f"safe_increment needs an integer or floating-point count, got dtype {dtype} "
            "(subdtypes of jnp.integer or jnp.floating are accepted)"
        )
    largest = jnp.asarray(largest, dtype)
    return jnp.where(count < largest, count + jnp.asarray(1, dtype), largest)


safe_int32_increment = safe_increment
"""Optax's older name of ``safe_increment`` (the same function)."""


@jax.custom_vjp
def _scaled_backward(inputs: Any, scale: Any) -> Any:
    del scale  # read by the backward rule only
    return inputs


def _scaled_backward_fwd(inputs: Any, scale: Any) -> tuple[Any, Any]:
    return inputs, scale


def _scaled_backward_bwd(scale: Any, cotangent: Any) -> tuple[Any, None]:
    return jax.tree.map(lambda c: c * scale, cotangent), None


_scaled_backward.defvjp(_scaled_backward_fwd, _scaled_backward_bwd)


def scale_gradient(inputs: Any, scale: jax.typing.ArrayLike) -> Any:
    """The identity on ``inputs`` whose gradient is multiplied by ``scale`` in the backward pass.

    ``jax.grad(lambda x: f(scale_gradient(x, s)))(x) == s * jax.grad(f)(x)``. A ``scale`` of 1
    returns ``inputs`` itself; 0 is ``jax.lax.stop_gradient`` (no cotangent flows).

    Args:
      inputs: a pytree of arrays.
      scale: the factor applied to the cotangent (no gradient flows into it).

    Returns:
      ``inputs``, unchanged in the forward pass.
    """
    if isinstance(scale, (int, float)) and not isinstance(scale, bool):
        if scale == 1.0:
            return inputs
        if scale == 0.0:
            return jax.lax.stop_gradient(inputs)
    return _scaled_backward(inputs, scale)
