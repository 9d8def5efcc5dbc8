"""Pytree helpers: structure checks whose errors name the pytree path, norms, masks, counters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

INT32_MAX = np.iinfo(np.int32).max


def path_str(path: Sequence[Any]) -> str:
    """``(DictKey('dense'), DictKey('kernel'))`` -> ``"['dense']['kernel']"``; ``()`` -> ``"<root>"``."""
    return jax.tree_util.keystr(tuple(path)) or "<root>"


def _paths_and_leaves(tree: Any) -> list[tuple[str, Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(path_str(p), leaf) for p, leaf in flat]


def first_difference(first: Any, second: Any) -> str:
    """Describes where two pytrees' structures first differ (empty string if they do not)."""
    first_paths = [p for p, _ in _paths_and_leaves(first)]
    second_paths = [p for p, _ in _paths_and_leaves(second)]
    for a, b in zip(first_paths, second_paths):
        if a != b:
            return f"leaf {a} in the first corresponds to {b} in the second"
    if len(first_paths) != len(second_paths):
        longer, which = (first_paths, "first") if len(first_paths) > len(second_paths) else (second_paths, "second")
        return f"{longer[min(len(first_paths), len(second_paths))]} exists only in the {which}"
    first_def = jax.tree.structure(first)
    second_def = jax.tree.structure(second)
    if first_def != second_def:
        return f"same leaf paths but different container types: {first_def} vs {second_def}"
    return ""


def check_same_structure(trees: Sequence[Any], names: Sequence[str]) -> None:
    """Raises ``ValueError`` naming the first differing pytree path if structures differ."""
    reference = jax.tree.structure(trees[0])
    for tree, name in zip(trees[1:], names[1:]):
        if jax.tree.structure(tree) != reference:
            where = first_difference(trees[0], tree)
            raise ValueError(
                f"{names[0]} and {name} must have the same pytree structure; {where} "
                f"(first = {names[0]}, second = {name})"
            )


def map(fn: Callable[..., Any], tree: Any, *rest: Any, names: Sequence[str] | None = None) -> Any:
    """``jax.tree.map`` whose structure errors name the first differing path.

    ``names`` labels the trees in the message, for example ``("updates", "mu")``.
    """
    try:
        return jax.tree.map(fn, tree, *rest)
    except ValueError as err:
        if "structure" not in str(err) and "tree" not in str(err).lower():
            raise
        labels = list(names) if names else [f"tree {i}" for i in range(1 + len(rest))]
        check_same_structure((tree, *rest), labels)
        raise



def leaves(tree: Any) -> list[Any]:
    return jax.tree.leaves(tree)


def squared_norm(tree: Any) -> jax.Array:
    """``sum_i x_i^2`` over every leaf, accumulated in float32 (or wider)."""
    total = jnp.zeros((), jnp.float32)
    for leaf in jax.tree.leaves(tree):
        leaf = jnp.asarray(leaf)
        wide = jnp.promote_types(leaf.dtype, jnp.float32)
        total = total + jnp.sum(jnp.square(leaf.astype(wide))).astype(total.dtype)
    return total


def global_norm(tree: Any) -> jax.Array:
    """The l2 norm of all leaves together: ``sqrt(sum_leaves sum_i x_i^2)``."""
    return jnp.sqrt(squared_norm(tree))


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1``, saturating at the dtype's maximum instead of wrapping to negative."""
    maximum = jnp.iinfo(count.dtype).max
    return jnp.where(count < maximum, count + 1, maximum).astype(count.dtype)


def zeros_like(tree: Any, dtype: Any = None) -> Any:
    """Zeros with each leaf's shape, in ``dtype`` or the leaf's own dtype."""
    return jax.tree.map(lambda x: jnp.zeros(jnp.shape(x), dtype or jnp.asarray(x).dtype), tree)


def full_like(tree: Any, value: float, dtype: Any = None) -> Any:
    """``value`` in each leaf's shape, in ``dtype`` or the leaf's own dtype."""
    return jax.tree.map(lambda x: jnp.full(jnp.shape(x), value, dtype or jnp.asarray(x).dtype), tree)


def cast_like(tree: Any, like: Any) -> Any:
    """Casts each leaf of ``tree`` to the dtype of the matching leaf of ``like``."""
    return jax.tree.map(lambda x, y: jnp.asarray(x).astype(jnp.asarray(y).dtype), tree, like)


def resolve_mask(mask: Any, params: Any, argument: str = "mask") -> Any:
    """A mask given as a pytree of bools or as ``fn(params) -> pytree of bools``, evaluated."""
    resolved = mask(params) if callable(mask) else mask
    return resolved


def unzip(pairs: Any, like: Any, width: int) -> tuple[Any, ...]:
    """Splits a tree of ``width``-tuples (one per leaf of ``like``) into ``width`` trees.

    Lets a transform compute several outputs per leaf in one function (update and new moments)
    and still return ordinary pytrees.
    """
    structure = jax.tree.structure(like)
    columns = zip(*structure.flatten_up_to(pairs)) if structure.num_leaves else [()] * width
    return tuple(structure.unflatten(list(column)) for column in columns)
