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
  sharded, including ZeRO-1 optimizer states);
* **the code's configuration is never silently overridden**: hyperparameters are state data, so a
  checkpoint carries the learning rate, betas, weight decay... it was saved with. When a saved
  constant hyperparameter differs from the target's (the code now says ``sgd(0.01)``, the run was
  saved with ``sgd(1.0)``), ``restore`` raises ``HyperparamsMismatchError`` listing each one with its
  path and both values; ``hyperparams="code"`` takes the target's values, ``hyperparams="saved"``
  keeps the checkpoint's (for runs changed with ``set_hyperparams``). Scheduled entries are not
  compared: every update recomputes them as ``schedule(count)`` from the restored count;
* **integrity**: ``save`` writes a SHA-256 digest of every array beside the checkpoint
  (``optcompose.json``); ``restore`` verifies each restored array against it and raises
  ``CheckpointCorruptedError`` naming the array (``verify=False`` skips the check, for speed);
* **flat parameters** (``optcompose.flat_params``) are stored as the pytree they hold and restored
  into the target's form (flat or not), so runs with flat and with tree parameters resume each
  other's checkpoints;
* **layout**: a flat state buffer (``optcompose.flat_state``) is saved with its layout (tree
  structure and leaf shapes) and only restores into a target of the same layout; otherwise the
  error names the first differing leaf.

orbax-checkpoint is an optional dependency (``pip install optcompose[examples]``); it is
imported when ``save`` or ``restore`` runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optcompose._hyperparams import Hyperparams, _is_injected
from optcompose._tree import path_str
from optcompose.speed import FlatTree
from optcompose.speed._flat_params import expand_params, reflatten_params

__all__ = ["CheckpointCorruptedError", "HyperparamsMismatchError", "restore", "save"]

_META = "optcompose.json"


class HyperparamsMismatchError(ValueError):
    """A saved constant hyperparameter differs from the value the code (the target) gives it."""


class CheckpointCorruptedError(ValueError):
    """A restored array does not match the digest written when it was saved."""


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
                f"pytree paths {seen[key]} and {path_str(path)} map to the same checkpoint name; rename one of the keys"
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


def _digest(value: Any) -> str | None:
    """SHA-256 of an array's bytes (None for an array this process cannot read whole)."""
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        return None
    array = np.ascontiguousarray(np.asarray(value))
    return hashlib.sha256(array.tobytes()).hexdigest()


def _layouts(tree: Any) -> dict[str, dict[str, Any]]:
    """The layout of every flat state buffer in ``tree``, by the path of its ``FlatTree``."""
    found = {}
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, FlatTree))
    for path, node in flat:
        if isinstance(node, FlatTree):
            leaves = [
                path_str(p)
                for p, _ in jax.tree_util.tree_flatten_with_path(node.treedef.unflatten([0] * node.treedef.num_leaves))[
                    0
                ]
            ]
            found[path_str(path)] = {"leaves": leaves, "shapes": [list(s) for s in node.shapes]}
    return found


def save(path: str | os.PathLike, tree: Any, *, force: bool = False) -> None:
    """Writes every array of ``tree`` to the directory ``path`` (which must not exist unless ``force``).

    ``tree`` is any pytree: ``{'params': ..., 'opt_state': ..., 'step': ...}``, a Flax
    ``TrainState``, an ``nnx.State``. Sharded arrays are written shard by shard. Beside the arrays,
    ``optcompose.json`` holds each array's SHA-256 digest and the layout of flat state buffers.
    Returns once the checkpoint is complete on disk.
    """
    ocp = _orbax()
    path = os.path.abspath(os.fspath(path))
    tree = expand_params(tree)  # flat parameters are saved as their pytree
    keys, names, leaves, _ = _flatten(tree)
    arrays = [_as_array(leaf) for leaf in leaves]
    nested = _nest(keys, arrays)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, nested, force=force)
        checkpointer.wait_until_finished()
    meta = {"format": 1, "digests": dict(zip(names, map(_digest, arrays), strict=True)), "layouts": _layouts(tree)}
    if jax.process_index() == 0:
        with open(os.path.join(path, _META), "w", encoding="utf-8") as handle:
            json.dump(meta, handle)


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


def _read_meta(path: str, verify: bool) -> dict[str, Any]:
    meta_path = os.path.join(path, _META)
    if not os.path.exists(meta_path):
        if verify:
            raise CheckpointCorruptedError(
                f"{path} has no {_META} (digests and layouts): it was written by an older optcompose or "
                "its save was interrupted; pass verify=False to restore it unchecked"
            )
        return {"digests": {}, "layouts": {}}
    with open(meta_path, encoding="utf-8") as handle:
        return json.load(handle)


def _check_layouts(saved: dict[str, Any], like: Any) -> None:
    for where, layout in _layouts(like).items():
        old = saved.get(where)
        if old is None:
            raise ValueError(f"{where} is a flat state buffer in the target but was not saved as one")
        for i, (leaf, shape) in enumerate(zip(layout["leaves"], layout["shapes"], strict=False)):
            if i >= len(old["leaves"]) or old["leaves"][i] != leaf or old["shapes"][i] != shape:
                was = f"{old['leaves'][i]} of shape {tuple(old['shapes'][i])}" if i < len(old["leaves"]) else "nothing"
                raise ValueError(
                    f"the flat state buffer {where} was saved with another layout: at position {i} the target has "
                    f"{leaf} of shape {tuple(shape)}, the checkpoint {was}"
                )
        if len(old["leaves"]) != len(layout["leaves"]):
            raise ValueError(
                f"the flat state buffer {where} was saved with {len(old['leaves'])} leaves, the target has "
                f"{len(layout['leaves'])}"
            )


def _is_node(x: Any) -> bool:
    return isinstance(x, Hyperparams) or _is_injected(x)


def _constant_nodes(tree: Any) -> list[tuple[str, Any]]:
    """(path, Hyperparams node) of every node whose constant entries are the configuration. The nodes
    inside an ``inject_hyperparams`` state's ``inner_state`` are rebuilt from its wrapper's dict at
    every update (scheduled values land in them as constants), so only the wrapper's dict counts."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_node)
    found = []
    for path, node in flat:
        if isinstance(node, Hyperparams):
            found.append((path_str(path), node))
        elif _is_injected(node) and isinstance(node.hyperparams, Hyperparams):
            found.append((path_str((*path, jax.tree_util.GetAttrKey("hyperparams"))), node.hyperparams))
    return found


def _hyperparam_paths(tree: Any) -> list[tuple[str, Any, str]]:
    """(path of the node, node, entry name) of every constant (unscheduled) hyperparameter."""
    return [(where, node, name) for where, node in _constant_nodes(tree) for name in node if name not in node.scheduled]


def _reconcile_hyperparams(restored: Any, like: Any, mode: str | None) -> Any:
    if mode == "saved":
        return restored
    code = {(where, name): node[name] for where, node, name in _hyperparam_paths(like)}
    differing = []
    for where, node, name in _hyperparam_paths(restored):
        ours = code.get((where, name))
        if ours is None or isinstance(ours, jax.ShapeDtypeStruct) or not hasattr(ours, "dtype"):
            continue
        if not np.array_equal(np.asarray(ours), np.asarray(node[name])):
            differing.append((f"{where}['{name}']", str(np.asarray(node[name])), str(np.asarray(ours))))
    if not differing:
        return restored
    if mode is None:
        lines = "\n".join(f"  {where}: saved {saved}, code {ours}" for where, saved, ours in differing)
        raise HyperparamsMismatchError(
            f"the checkpoint's hyperparameters differ from the code's:\n{lines}\n"
            "pass hyperparams='code' to use the code's values or hyperparams='saved' to keep the checkpoint's"
        )

    def with_code(where: str, node: Hyperparams) -> Hyperparams:
        return node.replace(**{n: code[(where, n)] for n in node if (where, n) in code and n not in node.scheduled})

    def take_code(path, node):
        if isinstance(node, Hyperparams):
            return with_code(path_str(path), node)
        if _is_injected(node) and isinstance(node.hyperparams, Hyperparams):
            where = path_str((*path, jax.tree_util.GetAttrKey("hyperparams")))
            return node._replace(hyperparams=with_code(where, node.hyperparams))
        return node

    return jax.tree_util.tree_map_with_path(take_code, restored, is_leaf=_is_node)


def restore(path: str | os.PathLike, like: Any, *, hyperparams: str | None = None, verify: bool = True) -> Any:
    """Reads the checkpoint at ``path`` into the structure of ``like``.

    ``like`` gives the pytree structure (NamedTuples, ``Hyperparams``, a ``TrainState`` with its
    ``tx`` and ``apply_fn``) and, per array, where to put it: a ``jax.Array`` or
    ``jax.ShapeDtypeStruct`` with a sharding restores with that sharding, anything else to the
    default device. The saved shapes and dtypes must equal those of ``like``; otherwise a
    ``ValueError`` names the first path that differs, as it does for a missing or extra array.

    Args:
      path: the checkpoint directory written by ``save``.
      like: the target (see above); its constant hyperparameters are the code's configuration.
      hyperparams: ``None`` (default) raises ``HyperparamsMismatchError`` when a saved constant
        hyperparameter differs from ``like``'s; ``"code"`` takes ``like``'s values; ``"saved"``
        keeps the checkpoint's. (With abstract ``like`` leaves there is nothing to compare.)
      verify: check every restored array against the digest written by ``save``.

    Raises:
      FileNotFoundError: ``path`` holds no complete checkpoint (missing, empty, or a killed save).
      HyperparamsMismatchError, CheckpointCorruptedError, ValueError: see above.
    """
    if hyperparams not in (None, "code", "saved"):
        raise ValueError(f"hyperparams must be None, 'code' or 'saved', got {hyperparams!r}")
    ocp = _orbax()
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path) or not os.listdir(path):
        raise FileNotFoundError(f"no checkpoint at {path}: the directory is missing or empty")
    target, like = like, expand_params(like)  # flat parameters were saved as their pytree
    keys, names, leaves, treedef = _flatten(like)
    abstract = [_abstract(leaf) for leaf in leaves]
    sidecar = _read_meta(path, verify)
    _check_layouts(sidecar.get("layouts", {}), like)
    with ocp.StandardCheckpointer() as checkpointer:
        try:
            saved = _saved_arrays(checkpointer, path)
        except (FileNotFoundError, TypeError, ValueError) as err:
            raise FileNotFoundError(f"no complete checkpoint at {path} (was its save interrupted?): {err}") from err
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
    if verify:
        digests = sidecar.get("digests", {})
        for name, value in zip(names, values, strict=True):
            expected = digests.get(name)
            if expected is not None and _digest(value) not in (None, expected):
                raise CheckpointCorruptedError(
                    f"{name} in the checkpoint at {path} does not match the digest written at save time: "
                    "the files were changed or damaged"
                )
    values = [_like_type(leaf, value) for leaf, value in zip(leaves, values, strict=True)]
    restored = _reconcile_hyperparams(jax.tree_util.tree_unflatten(treedef, values), like, hyperparams)
    return reflatten_params(restored, target)
