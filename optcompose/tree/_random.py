"""Random pytrees and per-leaf PRNG keys (Optax's ``optax.tree.random_like`` and friends)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax


def tree_split_key_like(rng_key: jax.Array, target_tree: Any) -> Any:
    """One fresh PRNG key per leaf of ``target_tree``, arranged in its structure.

    The keys are ``jax.random.split(rng_key, n)`` for ``n`` leaves, handed out in leaf order, so
    the same key and structure always give the same keys.

    Args:
      rng_key: a typed key (``jax.random.key``) or a raw uint32 key (``jax.random.PRNGKey``).
      target_tree: any pytree; only its structure is used (``None`` entries get no key).

    Returns:
      A pytree of keys with the structure of ``target_tree`` (typed keys of shape ``()`` or raw
      keys of shape ``(2,)``, following ``rng_key``). An empty tree gives an empty tree.
    """
    structure = jax.tree.structure(target_tree)
    keys = jax.random.split(rng_key, structure.num_leaves)
    return jax.tree.unflatten(structure, list(keys))


def _takes_out_sharding(sampler: Callable[..., Any]) -> bool:
    try:
        return "out_sharding" in inspect.signature(sampler).parameters
    except (TypeError, ValueError):  # no introspectable signature
        return False


def tree_random_like(
    rng_key: jax.Array,
    target_tree: Any,
    sampler: Callable[[jax.Array, Sequence[int], jax.typing.DTypeLike], jax.typing.ArrayLike]
    | Callable[[jax.Array, Sequence[int], jax.typing.DTypeLike, jax.sharding.Sharding], jax.typing.ArrayLike] = (
        jax.random.normal
    ),
    dtype: jax.typing.DTypeLike | None = None,
) -> Any:
    """A pytree of random arrays with the structure, shapes (and shardings) of ``target_tree``.

    Leaf ``i`` is ``sampler(key_i, leaf.shape, dtype or leaf.dtype)`` with ``key_i`` from
    :func:`tree_split_key_like`. When ``sampler`` accepts an ``out_sharding`` keyword (as
    :func:`jax.random.normal` does), it also gets the leaf's sharding, so samples of a sharded
    leaf are laid out like it.

    Args:
      rng_key: the PRNG key.
      target_tree: a pytree of arrays or :class:`jax.ShapeDtypeStruct` (leaves need ``shape`` and
        ``dtype``).
      sampler: ``sampler(key, shape, dtype)`` or ``sampler(key, shape, dtype, *, out_sharding)``;
        default :func:`jax.random.normal`.
      dtype: dtype passed to ``sampler``; by default each leaf's dtype. The sampler decides what
        it supports (:func:`jax.random.normal` wants a float dtype, ``jax.random.rademacher`` an
        integer one).

    Returns:
      A pytree of samples with the structure of ``target_tree``.
    """
    keys = tree_split_key_like(rng_key, target_tree)
    if _takes_out_sharding(sampler):
        draw = sampler
    else:

        def draw(key: jax.Array, shape: Any, dtype_: Any, *, out_sharding: Any) -> Any:
            del out_sharding
            return sampler(key, shape, dtype_)

    def sample(leaf: Any, key: jax.Array) -> Any:
        return draw(key, leaf.shape, dtype or leaf.dtype, out_sharding=jax.typeof(leaf).sharding)

    return jax.tree.map(sample, target_tree, keys)


def tree_unwrap_random_key_data(input_tree: Any) -> Any:
    """Replaces typed PRNG key arrays by their raw ``uint32`` data, for comparisons and printing.

    Args:
      input_tree: a pytree; its leaves that are :class:`jax.Array` with a key dtype become
        ``jax.random.key_data(leaf)`` (shape ``(*leaf.shape, 2)`` for threefry).

    Returns:
      A pytree with the structure of ``input_tree``; other leaves are returned as they are.
    """

    def unwrap(x: Any) -> Any:
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.key_data(x)
        return x

    return jax.tree.map(unwrap, input_tree)
