"""Step-count handling shared by every schedule.

Schedules take the step count as a Python int, a NumPy integer, or a JAX integer array (int32, or
int64 with ``jax_enable_x64``), eagerly or under ``jit``/``vmap``. Two hazards are removed here,
before any arithmetic:

* Integers too large for JAX's integer type (``2**62`` as a Python int raises on conversion; as a
  NumPy int64 it silently wraps, to 0 for ``2**62``) saturate on the host at the largest
  representable count. Negative counts are clamped to 0.
* Arithmetic on counts (``count - begin``) is done in the integer type after clipping, so it cannot
  overflow; only the clipped, non-negative difference is converted to float32.

Float counts are accepted too (fractional steps), clipped the same way.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

F32_MAX = float(np.finfo(np.float32).max)


def int_dtype() -> np.dtype:
    """The integer type JAX uses now: int64 under ``jax_enable_x64``, int32 otherwise."""
    return np.dtype(jax.dtypes.canonicalize_dtype(np.int64))


def int_max() -> int:
    """The largest step count representable in :func:`int_dtype`."""
    return int(np.iinfo(int_dtype()).max)


def as_count(count: Any) -> jax.Array:
    """Returns ``count`` as a non-negative JAX array: JAX's integer type, or a float type.

    Host integers beyond the JAX integer range saturate at :func:`int_max`; JAX arrays of any
    integer width are widened or saturated to :func:`int_dtype`; floats are clipped to
    ``[0, int_max()]`` so ``inf`` cannot leak into the arithmetic.
    """
    target = int_dtype()
    top = int_max()
    if not isinstance(count, jax.Array):
        if isinstance(count, (bool, int)):
            return jnp.asarray(min(max(int(count), 0), top), dtype=target)
        host = np.asarray(count)
        if host.dtype == np.bool_ or np.issubdtype(host.dtype, np.integer):
            return jnp.asarray(np.clip(host, 0, top).astype(target))
        if not np.issubdtype(host.dtype, np.floating):
            raise TypeError(f"the step count must be an integer or float, got {count!r}")
        count = jnp.asarray(host)
    dtype = np.dtype(count.dtype)
    if dtype == np.bool_:
        return count.astype(target)
    if np.issubdtype(dtype, np.floating):
        return jnp.clip(count, 0, float(top))
    if not np.issubdtype(dtype, np.integer):
        raise TypeError(f"the step count must be an integer or float array, got dtype {dtype}")
    if np.issubdtype(dtype, np.unsignedinteger):
        if dtype.itemsize >= target.itemsize:
            count = jnp.minimum(count, top)
        return count.astype(target)
    return jnp.maximum(count, 0).astype(target)


def is_int(count: jax.Array) -> bool:
    """Whether a count from :func:`as_count` is integral (exact comparisons are possible)."""
    return bool(jnp.issubdtype(count.dtype, jnp.integer))


def elapsed(count: jax.Array, begin: int = 0, limit: int | None = None) -> jax.Array:
    """``clip(count - begin, 0, limit)`` as float32, the subtraction done without overflow.

    ``count`` comes from :func:`as_count`. For integer counts ``begin`` and ``limit`` saturate at
    the integer range first, so the difference of two representable non-negative numbers is taken
    in the integer type (exact), and only the clipped result is rounded to float32.
    """
    if is_int(count):
        top = int_max()
        diff = jnp.maximum(count - min(begin, top), 0)
        if limit is not None:
            diff = jnp.minimum(diff, min(limit, top))
    else:
        diff = jnp.maximum(count - begin, 0)
        if limit is not None:
            diff = jnp.minimum(diff, limit)
    return diff.astype(jnp.float32)


def reached(count: jax.Array, boundary: int) -> jax.Array:
    """``count >= boundary`` as a boolean array, exact for integer counts of any size."""
    if is_int(count) and boundary > int_max():
        return jnp.zeros(jnp.shape(count), dtype=bool)
    return count >= boundary


def equals(value: Any, number: float) -> bool:
    """Whether a hyperparameter is concretely ``number`` (False for tracers), to pick a fast path."""
    if isinstance(value, jax.core.Tracer) or callable(value):
        return False
    values = np.asarray(value)
    return values.size == 1 and float(values) == number


def f32(value: Any) -> jax.Array:
    """A hyperparameter as a float32 JAX scalar (or array), whatever ``jax_enable_x64`` says."""
    return jnp.asarray(value, dtype=jnp.float32)


def finite_f32(value: jax.Array) -> jax.Array:
    """Saturates a float32 result at the largest finite float32, so no schedule returns inf."""
    return jnp.clip(value.astype(jnp.float32), -F32_MAX, F32_MAX)
