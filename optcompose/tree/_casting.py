"""Dtype queries and casts over pytrees (Optax's ``optax.tree.cast``, ``cast_like``, ``dtype``)."""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

T = TypeVar("T")

_HANDLERS = (None, "promote", "highest", "lowest")


def _leaf_dtype(x: Any) -> Any:
    """The dtype JAX gives a leaf: a JAX array's or struct's own, else that of ``jnp.asarray(x)``.

    So NumPy float64 data reads as float32 unless x64 is enabled, as in Optax.
    """
    if isinstance(x, (jax.Array, jax.ShapeDtypeStruct)):
        return x.dtype
    return jnp.asarray(x).dtype


def _cast_leaf(x: Any, dtype: Any) -> Any:
    if isinstance(x, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(x.shape, dtype, sharding=x.sharding)
    if hasattr(x, "astype"):
        return x.astype(dtype)
    return jnp.asarray(x).astype(dtype)


def tree_cast(tree: Any, dtype: jax.typing.DTypeLike | None) -> Any:
    """Casts every leaf to ``dtype`` with ``astype``; ``dtype=None`` returns ``tree`` itself.

    Args:
      tree: a pytree of arrays. Beyond Optax (whose leaves need an ``astype`` method), Python
        numbers are converted with :func:`jax.numpy.asarray` first and a
        :class:`jax.ShapeDtypeStruct` leaf becomes one of the new dtype (same shape and sharding).
      dtype: the target dtype, or ``None`` to skip the cast.

    Returns:
      The cast pytree (float to integer truncates towards zero, as ``astype`` does).
    """
    if dtype is None:
        return tree
    return jax.tree.map(lambda x: _cast_leaf(x, dtype), tree)


def tree_cast_like(tree: T, other_tree: Any) -> T:
    """Casts each leaf of ``tree`` to the dtype of the matching leaf of ``other_tree``.

    Args:
      tree: the pytree to cast.
      other_tree: a pytree with the structure of ``tree``. A leaf without a ``dtype`` attribute
        (a Python number, a string) leaves the matching leaf of ``tree`` uncast.

    Returns:
      ``tree`` with its leaves cast (same conversions as :func:`tree_cast`).
    """

    def cast(x: Any, reference: Any) -> Any:
        return _cast_leaf(x, reference.dtype) if hasattr(reference, "dtype") else x

    return jax.tree.map(cast, tree, other_tree)


def _is_promoted_to(low: Any, high: Any) -> bool:
    """Whether ``low`` promotes to ``high``: ``promote_types(low, high) == high``."""
    return jnp.promote_types(low, high) == high


def _lowest(first: Any, second: Any) -> Any:
    if _is_promoted_to(second, first):
        return second
    if _is_promoted_to(first, second):
        return first
    raise ValueError(
        f"Cannot compare dtype of dtype1={first!r} and dtype2={second!r}: neither promotes to the other, so "
        "'highest'/'lowest' is undefined for this tree; use mixed_dtype_handler='promote'."
    )


def _highest(first: Any, second: Any) -> Any:
    return second if _lowest(first, second) == first else first


def tree_dtype(tree: Any, mixed_dtype_handler: str | None = None) -> jax.typing.DTypeLike:
    """The dtype of a pytree's leaves.

    Dtypes are ordered by promotion: ``a <= b`` when :func:`jax.numpy.promote_types` of the two is
    ``b``. This is a partial order: bfloat16 and float16 promote to float32, to neither of them.

    Args:
      tree: a pytree of arrays, numbers or :class:`jax.ShapeDtypeStruct` (a Python number has the
        dtype :func:`jax.numpy.asarray` gives it, e.g. float32 for ``1.0`` without x64).
      mixed_dtype_handler: what to do when the leaves' dtypes differ:

        * ``None`` (default): nothing; all leaves must share one dtype.
        * ``'promote'``: fold the dtypes with :func:`jax.numpy.promote_types`.
        * ``'highest'`` / ``'lowest'``: the greatest / least dtype in the order above; every
          pair met must be comparable.

    Returns:
      The dtype. An empty tree gives ``jnp.asarray([]).dtype`` (float32, or float64 under x64)
      whatever the handler.

    Raises:
      ValueError: if leaves differ and the handler is ``None`` (one line per differing leaf,
        naming its path); if ``'highest'``/``'lowest'`` meet two incomparable dtypes; if the
        handler is not one of the four values.
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.asarray([]).dtype
    dtypes = [_leaf_dtype(leaf) for leaf in leaves]
    if mixed_dtype_handler is None:
        expected = dtypes[0]
        problems = [
            f"Expected dtype={expected!r} for {jax.tree_util.keystr(tuple(path))} but got {_leaf_dtype(leaf)}."
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
            if _leaf_dtype(leaf) != expected
        ]
        if problems:
            raise ValueError("\n".join(problems))
        return expected
    if mixed_dtype_handler == "promote":
        return functools.reduce(jnp.promote_types, dtypes)
    if mixed_dtype_handler == "highest":
        return functools.reduce(_highest, dtypes)
    if mixed_dtype_handler == "lowest":
        return functools.reduce(_lowest, dtypes)
    raise ValueError(
        f"Invalid value for mixed_dtype_handler={mixed_dtype_handler!r}; possible values are: "
        + ", ".join(repr(h) for h in _HANDLERS)
    )
