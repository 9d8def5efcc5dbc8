"""Early input checks shared by the losses: each names the argument and says what it got.

The checks only look at static facts (shapes, ranks, dtypes), so they run the same way eagerly and
under ``jax.jit``. They raise ``TypeError`` for a wrong dtype and ``ValueError`` for a wrong shape,
and they only reject inputs the computation could not have accepted anyway (Optax raises, with a
vaguer message, or JAX fails deeper down).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def shape_of(value: Any) -> tuple[int, ...]:
    """The shape of an array or of anything ``numpy`` can turn into one (lists, Python numbers)."""
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None else np.shape(value)


def dtype_of(value: Any, name: str = "the input") -> np.dtype:
    """The dtype JAX would give ``value`` (a Python float is float32, or float64 under x64)."""
    try:
        return jax.dtypes.result_type(value)
    except TypeError as err:
        raise TypeError(f"{name} must be an array or a number, got {value!r} of type {type(value).__name__}") from err


def floating(name: str, value: Any) -> None:
    """Raises ``TypeError`` unless ``value`` has a real floating dtype (float16/bfloat16/32/64)."""
    dtype = dtype_of(value, name)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name} must have a floating dtype (e.g. float32), got dtype {dtype}")


def integer(name: str, value: Any) -> None:
    """Raises ``TypeError`` unless ``value`` has a (signed or unsigned) integer dtype."""
    dtype = dtype_of(value, name)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{name} must have an integer dtype (class indices, e.g. int32), got dtype {dtype}")


def same_shape(name_a: str, a: Any, name_b: str, b: Any) -> None:
    """Raises ``ValueError`` unless ``a`` and ``b`` have exactly the same shape (no broadcasting)."""
    shape_a, shape_b = shape_of(a), shape_of(b)
    if shape_a != shape_b:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {shape_a} and {shape_b}")


def broadcastable(name_a: str, a: Any, name_b: str, b: Any) -> tuple[int, ...]:
    """Returns the broadcast shape of ``a`` and ``b``; raises ``ValueError`` when there is none."""
    return broadcast_shapes(name_a, shape_of(a), name_b, shape_of(b))


def broadcast_shapes(name_a: str, shape_a: tuple[int, ...], name_b: str, shape_b: tuple[int, ...]) -> tuple[int, ...]:
    """Like :func:`broadcastable`, given the two shapes."""
    try:
        return np.broadcast_shapes(shape_a, shape_b)
    except ValueError:
        raise ValueError(
            f"{name_a} and {name_b} must have broadcast-compatible shapes, got {shape_a} and {shape_b}"
        ) from None


def rank(name: str, value: Any, expected: int) -> None:
    """Raises ``ValueError`` unless ``value`` has exactly ``expected`` dimensions."""
    shape = shape_of(value)
    if len(shape) != expected:
        raise ValueError(f"{name} must have rank {expected}, got shape {shape} (rank {len(shape)})")


def at_least_rank(name: str, value: Any, minimum: int) -> None:
    """Raises ``ValueError`` unless ``value`` has at least ``minimum`` dimensions."""
    shape = shape_of(value)
    if len(shape) < minimum:
        raise ValueError(f"{name} must have at least {minimum} dimension(s), got shape {shape}")


def normalize_axis(name: str, axis: Any, ndim: int) -> int:
    """Returns ``axis`` as an index in ``[0, ndim)``; ``ValueError``/``TypeError`` when it is not one."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {axis!r} of type {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of bounds for an array with {ndim} dimension(s)")
    return int(axis) % ndim


def normalize_axes(name: str, axis: Any, ndim: int) -> tuple[int, ...]:
    """Returns an int or a tuple of ints as a tuple of distinct indices in ``[0, ndim)``."""
    axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    normalized = tuple(normalize_axis(name, a, ndim) for a in axes)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"{name}={axis!r} repeats an axis")
    return normalized
