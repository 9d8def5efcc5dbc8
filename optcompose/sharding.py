"""Shardings for optimizer states: replicate them, or split the moments over devices (ZeRO-1).

Data-parallel training keeps a full copy of the parameters on every device; the optimizer state
need not follow. ZeRO stage 1 (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward
Training Trillion Parameter Models") splits the state along the data-parallel axis, so each of
``n`` devices holds ``1/n`` of Adam's ``mu`` and ``nu``. Under ``jax.jit`` that is only a choice
of ``NamedSharding`` per state leaf; XLA inserts the gathers the update needs. ``state_shardings``
makes that choice from the parameters' own shardings:

* a leaf shaped like its parameter (a moment) keeps the parameter's ``PartitionSpec`` and is
  additionally split over ``axis`` on its first dimension that the parameter does not split
  already and that the axis size divides;
* every other leaf (step counts, hyperparameters, scalars) is replicated.

``bytes_per_device`` measures what that saves.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["bytes_per_device", "replicated", "shard_leaf_spec", "state_shardings"]


def _shape(leaf: Any) -> tuple[int, ...]:
    return tuple(np.shape(leaf)) if not hasattr(leaf, "shape") else tuple(leaf.shape)


def _spec_axes(entry: Any) -> tuple[Hashable, ...]:
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, tuple) else (entry,)


def shard_leaf_spec(shape: tuple[int, ...], base: PartitionSpec, mesh: Mesh, axis: str = "data") -> PartitionSpec:
    """``base`` with ``axis`` added on the first free dimension of ``shape`` it divides.

    Returns ``base`` unchanged if ``axis`` already appears in it (the leaf is split over the
    data axis already, as in fully sharded training) or if no dimension fits; a scalar is
    always replicated.
    """
    if axis not in mesh.shape:
        raise ValueError(f"axis {axis!r} is not an axis of the mesh; its axes are {tuple(mesh.shape)}")
    if len(base) > len(shape):
        raise ValueError(f"PartitionSpec {base} has more entries than the shape {shape} has dimensions")
    entries = list(base) + [None] * (len(shape) - len(base))
    if any(axis in _spec_axes(entry) for entry in entries):
        return PartitionSpec(*entries)
    size = mesh.shape[axis]
    for dim, (extent, entry) in enumerate(zip(shape, entries, strict=True)):
        if entry is None and extent % size == 0 and extent >= size:
            entries[dim] = axis
            return PartitionSpec(*entries)
    return PartitionSpec(*entries)


def replicated(tree: Any, mesh: Mesh) -> Any:
    """A ``NamedSharding`` that replicates each leaf of ``tree`` over every device of ``mesh``."""
    return jax.tree.map(lambda _: NamedSharding(mesh, PartitionSpec()), tree)


def _is_sharding(x: Any) -> bool:
    return isinstance(x, (jax.sharding.Sharding, PartitionSpec))


def _spec_of(sharding: Any) -> PartitionSpec:
    if isinstance(sharding, PartitionSpec):
        return sharding
    return getattr(sharding, "spec", PartitionSpec())


def _mesh_of(param_shardings: Any) -> Mesh | None:
    for sharding in jax.tree.leaves(param_shardings, is_leaf=_is_sharding):
        if isinstance(sharding, NamedSharding):
            return sharding.mesh
    return None


def state_shardings(
    opt_state: Any,
    param_shardings: Any = None,
    mesh: Mesh | None = None,
    axis: str = "data",
    *,
    params: Any = None,
) -> Any:
    """ZeRO-1 shardings for ``opt_state`` (arrays, or the ``jax.eval_shape`` of ``tx.init``).

    Args:
      opt_state: the state, or its shapes: a pytree of arrays or ``jax.ShapeDtypeStruct``.
      param_shardings: a pytree of ``NamedSharding`` (or ``PartitionSpec``, with ``mesh``) with
        the parameters' structure, or ``None`` for replicated parameters. Each subtree of the
        state with the parameters' structure (``mu``, ``nu``, ``trace``...) starts from these
        specs; other array leaves (such as the moments of a ``masked`` transform, where
        ``MaskedNode`` replaces the excluded leaves) start from a replicated spec.
      mesh: the device mesh; taken from ``param_shardings`` when omitted.
      axis: the mesh axis the data is split over; the moments are split over it as well.
      params: optional parameters (or shapes), used to recognise moments when
        ``param_shardings`` is ``None``.

    Returns:
      A pytree of ``NamedSharding`` with the structure of ``opt_state``, for ``jax.device_put``
      or the ``out_shardings`` of a jitted step.
    """
    if mesh is None:
        mesh = _mesh_of(param_shardings)
        if mesh is None:
            raise ValueError("state_shardings needs a mesh: pass mesh=, or NamedShardings as param_shardings")
    if axis not in mesh.shape:
        raise ValueError(f"axis {axis!r} is not an axis of the mesh; its axes are {tuple(mesh.shape)}")

    reference = param_shardings if param_shardings is not None else params
    param_def = None if reference is None else jax.tree.structure(reference, is_leaf=_is_sharding)
    param_specs = (
        None
        if param_shardings is None
        else [_spec_of(s) for s in jax.tree.leaves(param_shardings, is_leaf=_is_sharding)]
    )

    def generic(leaf: Any, base: PartitionSpec | None = None) -> NamedSharding:
        shape = _shape(leaf)
        base = PartitionSpec() if base is None else base
        if not shape:
            return NamedSharding(mesh, PartitionSpec())
        if len(base) > len(shape):  # not shaped like its parameter after all
            base = PartitionSpec()
        return NamedSharding(mesh, shard_leaf_spec(shape, base, mesh, axis))

    def is_param_shaped(node: Any) -> bool:
        if param_def is None or param_def.num_leaves == 0:
            return False
        return jax.tree.structure(node) == param_def

    def assign(node: Any) -> Any:
        if is_param_shaped(node):
            leaves = param_def.flatten_up_to(node)
            specs = param_specs or [PartitionSpec()] * len(leaves)
            return param_def.unflatten([generic(leaf, spec) for leaf, spec in zip(leaves, specs, strict=True)])
        return generic(node)

    return jax.tree.map(assign, opt_state, is_leaf=is_param_shaped)


def _leaf_bytes(leaf: Any, sharding: Any) -> dict[Any, int]:
    shape = _shape(leaf)
    itemsize = np.dtype(leaf.dtype).itemsize
    if sharding is None:
        sharding = getattr(leaf, "sharding", None)
    if sharding is None:
        return {None: int(np.prod(shape, dtype=np.int64)) * itemsize}
    shard = sharding.shard_shape(shape)
    nbytes = int(np.prod(shard, dtype=np.int64)) * itemsize
    return dict.fromkeys(sharding.device_set, nbytes)


def bytes_per_device(tree: Any, shardings: Any = None) -> dict[Any, int]:
    """Bytes of ``tree`` held on each device, ``{device: bytes}``.

    ``tree`` holds ``jax.Array`` leaves (their own shardings are used) or shapes, in which case
    ``shardings`` (a matching pytree of ``Sharding``) says where they would live. Leaves without
    any sharding are counted under the key ``None``.
    """
    leaves = jax.tree.leaves(tree)
    if shardings is None:
        sharding_leaves = [None] * len(leaves)
    else:
        sharding_leaves = jax.tree.leaves(shardings, is_leaf=_is_sharding)
        if len(sharding_leaves) != len(leaves):
            raise ValueError(
                f"shardings must have one Sharding per leaf of tree: got {len(sharding_leaves)} for "
                f"{len(leaves)} leaves"
            )
    totals: dict[Any, int] = {}
    for leaf, sharding in zip(leaves, sharding_leaves, strict=True):
        for device, nbytes in _leaf_bytes(leaf, sharding).items():
            totals[device] = totals.get(device, 0) + nbytes
    return totals
