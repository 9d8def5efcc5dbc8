"""Pytree helpers: structure checks whose errors name the pytree path, norms, masks, counters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

INT32_MAX = np.iinfo(np.int32).max


def is_record(x: Any) -> bool:
    """Whether ``x`` is a NamedTuple instance (a transform's state record)."""
    return isinstance(x, tuple) and hasattr(x, "_fields")


def path_str(path: Sequence[Any]) -> str:
    """``(DictKey('dense'), DictKey('kernel'))`` -> ``"['dense']['kernel']"``; ``()`` -> ``"<root>"``."""
    return jax.tree_util.keystr(tuple(path)) or "<root>"


def _level(tree: Any) -> tuple[Any, list[tuple[Any, Any]]] | None:
    """One level of ``tree``: (node structure, [(key, child)]), or None when ``tree`` is a leaf."""
    flat, level = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda node: node is not tree)
    if level.num_nodes == 1 and level.num_leaves == 1 and flat and flat[0][0] == ():
        return None
    return level, [(path[0], child) for path, child in flat]


def _describe(tree: Any) -> str:
    return "a leaf" if _level(tree) is None else f"a {type(tree).__name__} node"


def first_difference(
    first: Any, second: Any, names: Sequence[str] = ("the first", "the second"), path: tuple[Any, ...] = ()
) -> str:
    """Describes the first pytree path where two structures differ (empty string if none).

    Walks both trees together, depth first in flattening order, and stops at the first node whose
    kind, container type or keys differ, so the message names the place to look, for example
    ``"['dense']['bias'] is in params but not in updates"``.
    """
    here = path_str(path)
    first_level, second_level = _level(first), _level(second)
    if first_level is None and second_level is None:
        return ""
    if first_level is None or second_level is None or type(first) is not type(second):
        return f"at {here} {names[0]} has {_describe(first)} but {names[1]} has {_describe(second)}"
    first_keys = [key for key, _ in first_level[1]]
    second_keys = [key for key, _ in second_level[1]]
    if first_keys != second_keys:
        for key in first_keys:
            if key not in second_keys:
                return f"{path_str((*path, key))} is in {names[0]} but not in {names[1]}"
        for key in second_keys:
            if key not in first_keys:
                return f"{path_str((*path, key))} is in {names[1]} but not in {names[0]}"
        return f"at {here} the keys come in a different order ({first_keys} vs {second_keys})"
    if first_level[0] != second_level[0]:
        return f"at {here} the nodes differ in their static data ({first_level[0]} vs {second_level[0]})"
    for (key, first_child), (_, second_child) in zip(first_level[1], second_level[1], strict=True):
        found = first_difference(first_child, second_child, names, (*path, key))
        if found:
            return found
    return ""


def check_same_structure(trees: Sequence[Any], names: Sequence[str]) -> None:
    """Raises ``ValueError`` naming the first differing pytree path if structures differ."""
    reference = jax.tree.structure(trees[0])
    for tree, name in zip(trees[1:], names[1:], strict=True):
        if jax.tree.structure(tree) != reference:
            where = first_difference(trees[0], tree, (names[0], name))
            raise ValueError(f"{names[0]} and {name} must have the same pytree structure, but {where}")


class NotFloatingError(TypeError):
    """A leaf that must take part in floating-point arithmetic has an integer, bool or float0 dtype.

    Raised at trace time by :func:`check_floating_leaf` (through ``numerics.widen``); :func:`map`
    adds the pytree path of the offending leaf to the message.
    """

    located = False


FLOATING_POLICY = (
    "optcompose transforms do floating-point arithmetic and accept only floating-point leaves "
    "(float16, bfloat16, float32, float64, complex); route integer leaves around the optimizer, for "
    "example partition({'float': tx, 'int': set_to_zero()}, labels)"
)


def _dtype_name(x: Any) -> str:
    dtype = jnp.result_type(x)
    return "float0" if dtype == jax.dtypes.float0 else str(dtype)


def check_floating_leaf(x: Any) -> None:
    """Raises :class:`NotFloatingError` unless ``x`` has an inexact (floating or complex) dtype."""
    if not jnp.issubdtype(jnp.result_type(x), jnp.inexact):
        raise NotFloatingError(f"got a leaf of dtype {_dtype_name(x)}; {FLOATING_POLICY}")


def check_floating(tree: Any, name: str) -> None:
    """Raises :class:`NotFloatingError` naming the first non-floating leaf of ``tree``."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        try:
            check_floating_leaf(leaf)
        except NotFloatingError:
            raise NotFloatingError(
                f"{name}{jax.tree_util.keystr(tuple(path))} has dtype {_dtype_name(leaf)}; {FLOATING_POLICY}"
            ) from None


def map(fn: Callable[..., Any], tree: Any, *rest: Any, names: Sequence[str] | None = None) -> Any:
    """``jax.tree.map`` whose structure errors name the first differing path.

    ``names`` labels the trees in the message, for example ``("updates", "mu")``. A
    :class:`NotFloatingError` raised by ``fn`` is re-raised naming the leaf's path, such as
    ``updates['dense']['kernel'] has dtype int32``, and so is a shape mismatch between the trees.
    """
    labels = list(names) if names else [f"tree {i}" for i in range(1 + len(rest))]

    def located(path, *leaves):
        try:
            return fn(*leaves)
        except NotFloatingError as err:
            if err.located:
                raise
            offending = [
                (label, _dtype_name(leaf))
                for label, leaf in zip(labels, leaves, strict=False)
                if leaf is not None and not jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
            ]
            label, dtype = offending[0] if offending else (labels[0], "?")
            where = f"{label}{jax.tree_util.keystr(tuple(path))}"
            located_err = NotFloatingError(f"{where} has dtype {dtype}; {FLOATING_POLICY}")
            located_err.located = True
            raise located_err from None
        except (TypeError, ValueError) as err:
            shapes = [jnp.shape(leaf) for leaf in leaves]
            if getattr(err, "located", False) or "shape" not in str(err) or len(set(shapes)) < 2:
                raise
            where = jax.tree_util.keystr(tuple(path))
            described = ", ".join(
                f"{label}{where} has shape {shape}" for label, shape in zip(labels, shapes, strict=False)
            )
            located_err = ValueError(f"{' and '.join(labels)} must have the same shapes, but {described}")
            located_err.located = True
            raise located_err from err

    try:
        return jax.tree_util.tree_map_with_path(located, tree, *rest)
    except ValueError as err:
        if "structure" not in str(err) and "tree" not in str(err).lower():
            raise
        check_same_structure((tree, *rest), labels)
        raise


def compute_dtype(dtype: Any) -> Any:
    """The dtype arithmetic runs in: float32, or the input's dtype when wider (float64, complex).

    Spelled out rather than ``jnp.promote_types``, which refuses float16 -> float32 under
    ``jax.numpy_dtype_promotion("strict")``.
    """
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return dtype
    return dtype if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize >= 4 else jnp.dtype(jnp.float32)


def _magnitude(x: Any) -> jax.Array:
    """``x`` in float32 (or wider); ``|x|`` for complex ``x``, so norms of complex leaves are real."""
    x = jnp.asarray(x)
    x = x.astype(compute_dtype(x.dtype))
    return jnp.abs(x) if jnp.iscomplexobj(x) else x


def squared_norm(tree: Any) -> jax.Array:
    """``sum_i |x_i|^2`` over every leaf, accumulated in float32, or float64 when a leaf is float64."""
    magnitudes = [_magnitude(leaf) for leaf in jax.tree.leaves(tree)]
    wide = any(m.dtype == jnp.float64 for m in magnitudes)
    total = jnp.zeros((), jnp.float64 if wide else jnp.float32)
    for magnitude in magnitudes:
        total = total + jnp.sum(jnp.square(magnitude)).astype(total.dtype)
    return total


def global_norm(updates: Any) -> jax.Array:
    """The l2 norm of all leaves together: ``sqrt(sum_leaves sum_i x_i^2)``.

    When the plain sum of squares overflows float32 (entries above ~1e19) or underflows (below
    ~1e-19), the norm is recomputed as ``m * sqrt(sum (x / m)^2)`` with ``m`` the largest
    magnitude, so it stays finite and accurate; ``lax.cond`` runs that second pass only then.
    """
    leaves_ = [_magnitude(leaf) for leaf in jax.tree.leaves(updates)]
    return _norm_with_fallback(leaves_, squared_norm(leaves_))


def l2_norm(x: jax.Array) -> jax.Array:
    """The l2 norm of one array, in float32 (or wider), finite for any finite entries.

    ``sqrt(sum x^2)``, the same bits as the plain formula whenever that neither overflows nor
    underflows; otherwise (entries of 1e30 or 1e-30) ``m * sqrt(sum (x / m)^2)``, ``m = max |x|``.
    """
    x = _magnitude(x)
    return _norm_with_fallback([x], jnp.sum(jnp.square(x)))


_SQUARE_UNDERFLOW = 1e-30


def _plain_norm(leaves_: list[jax.Array], squared: jax.Array) -> jax.Array:
    del leaves_
    return jnp.sqrt(squared)


def _rescaled_norm(leaves_: list[jax.Array], squared: jax.Array) -> jax.Array:
    largest = jnp.max(jnp.stack([jnp.max(jnp.abs(leaf), initial=0).astype(squared.dtype) for leaf in leaves_]))
    usable = jnp.isfinite(largest) & (largest > 0)
    divisor = jnp.where(usable, largest, 1.0)
    total = jnp.zeros((), squared.dtype)
    for leaf in leaves_:
        total = total + jnp.sum(jnp.square(leaf.astype(squared.dtype) / divisor))
    return jnp.where(usable, largest * jnp.sqrt(total), largest)


def _norm_with_fallback(leaves_: Sequence[jax.Array], squared: jax.Array) -> jax.Array:
    """``sqrt(squared)``, or the rescaled norm when ``squared`` overflowed or (nearly) underflowed."""
    if not leaves_:
        return jnp.sqrt(squared)
    plain_ok = jnp.isfinite(squared) & (squared > _SQUARE_UNDERFLOW)
    # Module-level branches taking operands (not fresh closures), so that outside jit the cond is
    # traced and compiled once per shape instead of on every call (~0.3 s each on CPU).
    return jax.lax.cond(plain_ok, _plain_norm, _rescaled_norm, list(leaves_), squared)


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the dtype's maximum instead of wrapping to negative."""
    maximum = jnp.iinfo(count.dtype).max
    return jnp.where(count < maximum, count + 1, maximum).astype(count.dtype)


def _dtype_of(x: Any) -> Any:
    return x.dtype if hasattr(x, "dtype") else jnp.result_type(x)


def zeros_like(tree: Any, dtype: Any = None) -> Any:
    """Zeros with each leaf's shape, in ``dtype`` or the leaf's own dtype.

    The one zeros helper of the library: leaves may be arrays, Python numbers or
    ``jax.ShapeDtypeStruct`` (as ``jax.eval_shape`` returns them); ``None`` leaves stay ``None``.
    """
    return jax.tree.map(lambda x: jnp.zeros(jnp.shape(x), dtype or _dtype_of(x)), tree)


def full_like(tree: Any, value: float, dtype: Any = None) -> Any:
    """``value`` in each leaf's shape, in ``dtype`` or the leaf's own dtype."""
    return jax.tree.map(lambda x: jnp.full(jnp.shape(x), value, dtype or _dtype_of(x)), tree)


def unzip(pairs: Any, like: Any, width: int) -> tuple[Any, ...]:
    """Splits a tree of ``width``-tuples (one per leaf of ``like``) into ``width`` trees.

    Lets a transform compute several outputs per leaf in one function (update and new moments)
    and still return ordinary pytrees.
    """
    structure = jax.tree.structure(like)
    columns = zip(*structure.flatten_up_to(pairs), strict=True) if structure.num_leaves else [()] * width
    return tuple(structure.unflatten(list(column)) for column in columns)
