"""Save and restore training state (parameters, optimizer state, step) with orbax-checkpoint.

Restoring only the parameters and building a fresh optimizer state silently resets Adam's
moments and bias-correction count and restarts every schedule at step 0: the run continues, but
not the run that was saved. ``restore`` therefore brings back the whole state into the structure
of a *target*, a pytree such as ``{'params': p, 'opt_state': tx.init(p), 'step': 0}`` (or its
``jax.eval_shape``, or a ``flax.training.train_state.TrainState``):

* NamedTuple state types, ``Hyperparams`` nodes (with which entries follow a schedule) and any
  other pytree node come from the target's structure; only arrays are stored on disk;
* each array comes back with the dtype it was saved with (``int32`` counts stay ``int32``),
  and a target whose shapes or dtypes differ is refused, naming the first differing path;
* each array is placed with the target leaf's sharding (``NamedSharding`` targets restore
  sharded, including ZeRO-1 optimizer states).

orbax-checkpoint is an optional dependency (``pip install optcompose[examples]``); it is
imported when ``save`` or ``restore`` runs.
"""

from __future__ import annotations

import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optcompose._tree import path_str

__all__ = ["restore", "save"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


def _orbax() -> Any:
    try:
        import orbax.checkpoint as ocp
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "optcompose.integrations.checkpoint needs orbax-checkpoint; install it with "
            "`pip install orbax-checkpoint` (or `pip install optcompose[examples]`)"
        ) from err
    return ocp


def _component(key: Any) -> str:
    """One path entry as a storage-safe name; other characters become ``~XX`` (hex code)."""
    if isinstance(key, jax.tree_util.DictKey):
        raw = str(key.key)
    elif isinstance(key, jax.tree_util.GetAttrKey):
        raw = key.name
    elif isinstance(key, jax.tree_util.SequenceKey):
        raw = str(key.idx)
    elif isinstance(key, jax.tree_util.FlattenedIndexKey):
        raw = str(key.key)
    else:
        raw = str(key)
    return _UNSAFE.sub(lambda m: "".join(f"~{b:02x}" for b in m.group().encode()), raw) or "~"


def _flatten(tree: Any) -> tuple[list[tuple[str, ...]], list[str], list[Any], Any]:
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    keys, names, leaves = [], [], []
    seen: dict[tuple[str, ...], str] = {}
    for path, leaf in flat:
        key = tuple(_component(k) for k in path) or ("~root",)
        if key in seen:
            raise ValueError(
                f"pytree paths {seen[key]} and {path_str(path)} map to the same checkpoint name; "
                "rename one of the keys"
            )
        seen[key] = path_str(path)
        keys.append(key)
        names.append(path_str(path))
        leaves.append(leaf)
    return keys, names, leaves, treedef


def _nest(keys: list[tuple[str, ...]], values: list[Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in zip(keys, values, strict=True):
        node = nested
        for part in key[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"checkpoint name {'/'.join(key)} collides with a leaf")
        node[key[-1]] = value
    return nested


def _lookup(nested: Any, key: tuple[str, ...]) -> Any:
    for part in key:
        if not isinstance(nested, dict) or part not in nested:
            raise KeyError(part)
        nested = nested[part]
    return nested


def _as_array(leaf: Any) -> Any:
    if isinstance(leaf, (jax.Array, np.ndarray)):
        return leaf
    return jnp.asarray(leaf)


def save(path: str | os.PathLike, tree: Any, *, force: bool = False) -> None:
    """Writes every array of ``tree`` to the directory ``path`` (which must not exist unless ``force``).

    ``tree`` is any pytree: ``{'params': ..., 'opt_state': ..., 'step': ...}``, a Flax
    ``TrainState``, an ``nnx.State``. Sharded arrays are written shard by shard. Returns once the
    checkpoint is complete on disk.
    """
    ocp = _orbax()
    path = os.path.abspath(os.fspath(path))
    keys, _, leaves, _ = _flatten(tree)
    nested = _nest(keys, [_as_array(leaf) for leaf in leaves])
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, nested, force=force)
        checkpointer.wait_until_finished()


def _abstract(leaf: Any) -> jax.ShapeDtypeStruct:
    if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
        leaf = jnp.asarray(leaf)
    sharding = getattr(leaf, "sharding", None)
    if not isinstance(sharding, jax.sharding.Sharding):
        sharding = None
    return jax.ShapeDtypeStruct(tuple(leaf.shape), jnp.dtype(leaf.dtype), sharding=sharding)


def _saved_arrays(checkpointer: Any, path: str) -> dict[str, Any]:
    metadata = checkpointer.metadata(path)
    tree = getattr(metadata, "item_metadata", metadata)
    tree = getattr(tree, "tree", tree)
    return tree if isinstance(tree, dict) else dict(tree)


def _saved_leaves(saved: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(saved, dict):
        found = []
        for name, child in saved.items():
            found.extend(_saved_leaves(child, (*prefix, name)))
        return found
    return [prefix]


def _like_type(leaf: Any, value: Any) -> Any:
    """NumPy where the target held NumPy, a ``jax.Array`` otherwise."""
    if isinstance(leaf, np.ndarray):
        return np.asarray(value)
    return value if isinstance(value, jax.Array) else jnp.asarray(value)


def restore(path: str | os.PathLike, like: Any) -> Any:
    """Reads the checkpoint at ``path`` into the structure of ``like``.

    ``like`` gives the pytree structure (NamedTuples, ``Hyperparams``, a ``TrainState`` with its
    ``tx`` and ``apply_fn``) and, per array, where to put it: a ``jax.Array`` or
    ``jax.ShapeDtypeStruct`` with a sharding restores with that sharding, anything else to the
    default device. The saved shapes and dtypes must equal those of ``like``; otherwise a
    ``ValueError`` names the first path that differs, as it does for a missing or extra array.
    """
    ocp = _orbax()
    path = os.path.abspath(os.fspath(path))
    keys, names, leaves, treedef = _flatten(like)
    abstract = [_abstract(leaf) for leaf in leaves]
    with ocp.StandardCheckpointer() as checkpointer:
        saved = _saved_arrays(checkpointer, path)
        wanted = set(keys)
        extra = [key for key in _saved_leaves(saved) if key not in wanted]
        for key, name, spec in zip(keys, names, abstract, strict=True):
            try:
                meta = _lookup(saved, key)
            except KeyError:
                raise ValueError(
                    f"the checkpoint at {path} has no array for {name}: it was saved from a different "
                    f"structure (an optimizer of another kind or another model?); it holds "
                    f"{len(_saved_leaves(saved))} arrays"
                ) from None
            saved_shape = tuple(getattr(meta, "shape", spec.shape))
            saved_dtype = getattr(meta, "dtype", spec.dtype)
            if saved_shape != spec.shape or jnp.dtype(saved_dtype) != spec.dtype:
                raise ValueError(
                    f"{name} was saved with shape {saved_shape} and dtype {jnp.dtype(saved_dtype)}, "
                    f"but the target has shape {spec.shape} and dtype {spec.dtype}"
                )
        if extra:
            raise ValueError(
                f"the checkpoint at {path} holds arrays the target lacks, first {'/'.join(extra[0])} "
                f"({len(extra)} in all): the target's structure differs from the saved one"
            )
        restored = checkpointer.restore(path, _nest(keys, abstract))
    values = [_lookup(restored, key) for key in keys]
    values = [_like_type(leaf, value) for leaf, value in zip(leaves, values, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, values)
