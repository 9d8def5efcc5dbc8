"""Small numeric helpers shared by transforms: scaling in float32, moments, bias correction."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose._tree import compute_dtype

COMPUTE_DTYPE = jnp.float32


def widen(x: jax.Array) -> jax.Array:
    """``x`` in its compute dtype (bfloat16/float16 -> float32; float32/float64 unchanged).

    Integer, bool and float0 inputs raise ``tree.NotFloatingError`` (a ``TypeError``): casting the
    result back would silently truncate, so they are refused (see ``tree.FLOATING_POLICY``).
    """
    tree_lib.check_floating_leaf(x)
    x = jnp.asarray(x)
    return x.astype(compute_dtype(x.dtype))


def scale_tree(updates: Any, factor: jax.Array) -> Any:
    """``u -> factor * u`` per leaf, computed in float32, each result in its input's dtype."""
    return tree_lib.map(lambda u: (widen(u) * factor).astype(jnp.asarray(u).dtype), updates, names=("updates",))


def power(base: jax.Array, count: jax.Array) -> jax.Array:
    """``base ** count`` for a float scalar base and an integer count, in the base's dtype (>= float32)."""
    base = jnp.asarray(base)
    dtype = compute_dtype(base.dtype) if jnp.issubdtype(base.dtype, jnp.floating) else COMPUTE_DTYPE
    return jnp.power(base.astype(dtype), jnp.asarray(count).astype(dtype))


def bias_correction_factor(decay: jax.Array, count: jax.Array) -> jax.Array:
    """``1 / (1 - decay**count)``: the factor that removes the zero-initialisation bias of an EMA.

    ``count`` is the number of EMA updates so far (>= 1). At ``decay**count == 1`` (decay 1 or
    count 0) there is no information to debias and the factor is 1.
    """
    denominator = 1.0 - power(decay, count)
    return jnp.where(denominator > 0, 1.0 / jnp.where(denominator > 0, denominator, 1.0), 1.0)
