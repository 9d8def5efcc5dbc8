"""Flat parameters: a model's parameters held as one buffer per dtype that still reads as the pytree.

A jitted step over a model with L parameter leaves takes L parameters and L gradients (and 2L
moments for AdamW) and returns as many; with thousands of small leaves (LoRA adapters, many small
layers) JAX's per-array dispatch and XLA's per-buffer work cost more than the arithmetic.
``flat_params(tree)`` stores the leaves end to end in one 1-D buffer per dtype (a ``FlatParams``);
with ``flat_state(tx)`` for the moments, ``optcompose.step`` then takes and returns 3-4 arrays
(AdamW: g, p, m, v) whatever the leaf count, and runs its one-pass kernel over them (the same
kernel and the same plans as for ``flat_state``: the flat moment buffers have the parameters'
layout, element for element).

The model sees the usual pytree: ``flat.tree`` is that pytree, each leaf a split-and-reshape of its
buffer (free under ``jit``: no copy of the parameters is made before they are used). A loss written
for the tree is used as ``loss(flat.tree, ...)``; ``jax.grad`` with respect to ``flat`` returns the
gradient as a ``FlatParams`` of the same layout (the derivative of the split is one concatenation,
exact), so ``step(tx, grads, state, flat)`` needs no conversion. Works for any pytree of arrays:
plain dicts, Flax linen's ``{'params': ...}`` (``model.apply({'params': flat.tree}, x)``) and an
``nnx.State`` from ``nnx.split`` (``nnx.merge(graphdef, flat.tree, rest)``).

Rules:

* build the optimizer state from the tree, ``tx.init(flat.tree)`` (``flat_state(tx).init(flat.tree)``
  for flat moments); a state built from the buffers themselves (``tx.init(flat)``) would treat the
  buffers as the leaves, so ``step`` refuses it. With thousands of leaves, do it under ``jit``
  (``jax.jit(lambda f: tx.init(f.tree))(flat)``): an eager ``flat.tree`` is a program with one
  output per leaf, which XLA:CPU compiles slowly (2000 leaves: minutes); inside a jitted step the
  views are internal and cost nothing;
* gradients and parameters must have the same layout; a different one raises ``ValueError``
  naming the first differing leaf;
* checkpoints (``optcompose.checkpoint``) store a ``FlatParams`` as its pytree, so a run with flat
  parameters and one with tree parameters resume each other's checkpoints (with the same ``tx``).

Sharding (``NamedSharding``): each buffer is a 1-D array, so it is either replicated (every device
holds it; ``step`` runs the kernel on each) or sharded along its one axis,
``NamedSharding(mesh, P("data"))``: each device stores 1/n of the parameters. ``flat_params(tree,
pad_to=n)`` pads each buffer with zeros to a multiple of ``n`` (the mesh axis size) so it divides
evenly; the padding is no leaf of the tree, has zero gradients and stays zero under every
optimizer. The leaves of ``flat.tree`` are read from the gathered buffer (as ZeRO-3 / FSDP
parameters: an all-gather where the model uses them; with an explicit mesh axis, ``jax.set_mesh``,
an explicit ``reshard`` to replicated, whose derivative hands the gradient back sharded). A sharded
buffer takes XLA's road in ``step``: the update runs on the tree (XLA partitions it as it can) and
the new buffer has the old one's sharding.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optcompose._tree import path_str


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each leaf of a pytree lives in the buffers of a ``FlatParams`` (static, hashable).

    ``dtypes`` are the buffers' dtypes in order of first appearance; leaf ``k`` (in ``treedef``
    order) is ``buffers[group[k]][offset[k] : offset[k] + size]`` reshaped to ``shapes[k]``;
    ``lengths`` are the buffers' lengths (padding included).
    """

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype, ...]
    group: tuple[int, ...]
    offset: tuple[int, ...]
    lengths: tuple[int, ...]

    @classmethod
    def of(cls, tree: Any, pad_to: int = 1) -> Layout:
        """The layout of ``tree``'s array leaves, each buffer padded to a multiple of ``pad_to``."""
        if not isinstance(pad_to, int) or isinstance(pad_to, bool) or pad_to < 1:
            raise ValueError(f"pad_to must be a positive int, got {pad_to!r}")
        flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
        shapes, dtypes, group, offset, used = [], [], [], [], []
        for path, leaf in flat:
            if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
                raise TypeError(f"flat_params needs array leaves; {path_str(path)} is {type(leaf).__name__}")
            dtype = np.dtype(leaf.dtype)
            if dtype not in dtypes:
                dtypes.append(dtype)
                used.append(0)
            g = dtypes.index(dtype)
            shapes.append(tuple(int(d) for d in leaf.shape))
            group.append(g)
            offset.append(used[g])
            used[g] += math.prod(shapes[-1])
        lengths = tuple(-(-n // pad_to) * pad_to for n in used)
        return cls(treedef, tuple(shapes), tuple(dtypes), tuple(group), tuple(offset), lengths)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(shape) for shape in self.shapes)

    @property
    def padded(self) -> bool:
        """Whether some buffer holds padding after its last leaf."""
        used = [0] * len(self.dtypes)
        for g, size in zip(self.group, self.sizes, strict=True):
            used[g] += size
        return tuple(used) != self.lengths

    def paths(self) -> list[str]:
        """The path of every leaf, in ``treedef`` order."""
        skeleton = self.treedef.unflatten([0] * self.treedef.num_leaves)
        return [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(skeleton)[0]]

    def difference(self, other: Layout) -> str | None:
        """``None`` if the layouts are equal, else a sentence naming the first differing leaf."""
        if self == other:
            return None
        ours, theirs = self.paths(), other.paths()
        for k in range(max(len(ours), len(theirs))):
            if k >= len(ours) or k >= len(theirs):
                extra = ours[k] if k < len(ours) else theirs[k]
                return f"leaf {k} ({extra}) is in one layout only ({len(ours)} leaves against {len(theirs)})"
            if ours[k] != theirs[k]:
                return f"leaf {k} is {ours[k]} in one and {theirs[k]} in the other"
            mine = (self.shapes[k], self.dtypes[self.group[k]])
            yours = (other.shapes[k], other.dtypes[other.group[k]])
            if mine != yours:
                return (
                    f"leaf {ours[k]} has shape {mine[0]} and dtype {mine[1]} in one, "
                    f"shape {yours[0]} and dtype {yours[1]} in the other"
                )
        if self.treedef != other.treedef:
            return f"the pytree nodes differ (same leaves): {self.treedef} against {other.treedef}"
        return f"the buffers are padded differently: lengths {self.lengths} against {other.lengths}"

    def check(self, other: Layout, what: str) -> None:
        """Raises ``ValueError`` (``what``: which two things were compared) unless ``other`` equals ``self``."""
        found = self.difference(other)
        if found is not None:
            raise ValueError(f"{what} have different layouts: {found}")


@jax.tree_util.register_pytree_node_class
class FlatParams:
    """A pytree's array leaves stored end to end in ``buffers`` (one 1-D array per dtype).

    The buffers are the only pytree children (``jax.tree.leaves(flat)`` is ``list(flat.buffers)``);
    the ``layout`` is static. ``flat.tree`` (or ``flat["dense"]["kernel"]``) reads the leaves.
    """

    __slots__ = ("buffers", "layout")

    def __init__(self, buffers: tuple[Any, ...], layout: Layout):
        self.buffers = tuple(buffers)
        self.layout = layout

    @classmethod
    def from_tree(cls, tree: Any, *, layout: Layout | None = None, pad_to: int = 1) -> FlatParams:
        """``tree`` stored flat; with ``layout``, in that layout (``ValueError`` naming the first
        differing leaf if ``tree`` does not have it, e.g. gradients of another model)."""
        own = Layout.of(tree, pad_to)
        if layout is None:
            layout = own
        else:  # the same leaves (padding is the layout's own)
            layout.check(dataclasses.replace(own, lengths=layout.lengths), "the pytree and the FlatParams layout")
        leaves = jax.tree.leaves(tree)
        buffers = []
        for g, dtype in enumerate(layout.dtypes):
            parts = [jnp.ravel(leaf) for leaf, k in zip(leaves, layout.group, strict=True) if k == g]
            used = sum(math.prod(p.shape) for p in parts)
            if layout.lengths[g] > used:
                parts.append(jnp.zeros((layout.lengths[g] - used,), dtype))
            buffers.append(jnp.concatenate(parts) if len(parts) > 1 else parts[0])
        return cls(tuple(buffers), layout)

    @property
    def tree(self) -> Any:
        """The stored pytree: each leaf a split-and-reshape of its buffer (its gradient: a concatenation)."""
        layout = self.layout
        pieces: list[list[Any]] = []
        for g, buffer in enumerate(map(_gathered, self.buffers)):
            sizes = [s for s, k in zip(layout.sizes, layout.group, strict=True) if k == g]
            pad = layout.lengths[g] - sum(sizes)
            split = jax.lax.split(buffer, [*sizes, pad] if pad else sizes)
            pieces.append(list(split[: len(sizes)]))
        leaves = []
        taken = [0] * len(self.buffers)
        for shape, g in zip(layout.shapes, layout.group, strict=True):
            leaves.append(jnp.reshape(pieces[g][taken[g]], shape))
            taken[g] += 1
        return layout.treedef.unflatten(leaves)

    def with_buffers(self, buffers: tuple[Any, ...]) -> FlatParams:
        return FlatParams(buffers, self.layout)

    def __getitem__(self, key: Any) -> Any:
        return self.tree[key]

    def __contains__(self, key: Any) -> bool:
        """``key in flat``: whether the pytree's top level has ``key`` (read from the layout, no views)."""
        skeleton = self.layout.treedef.unflatten([0] * self.layout.treedef.num_leaves)
        try:
            return key in skeleton
        except TypeError:
            return False

    def __repr__(self) -> str:
        groups = ", ".join(f"{d.name}[{n}]" for d, n in zip(self.layout.dtypes, self.layout.lengths, strict=True))
        return f"FlatParams({len(self.layout.shapes)} leaves in {groups})"

    def tree_flatten(self):
        return self.buffers, self.layout

    @classmethod
    def tree_unflatten(cls, layout, children):
        return cls(tuple(children), layout)


def _explicit_spec(buffer: Any) -> Any:
    """The ``PartitionSpec`` a buffer carries in its type when sharded over an explicit mesh axis, else None."""
    try:
        sharding = jax.typeof(buffer).sharding
    except (TypeError, AttributeError):
        return None
    spec = getattr(sharding, "spec", None)
    return spec if spec is not None and any(entry is not None for entry in spec) else None


def _gathered(buffer: Any) -> Any:
    """``buffer`` replicated if its type says it is sharded (a split cannot cut through shards there)."""
    if _explicit_spec(buffer) is None:
        return buffer
    mesh = jax.typeof(buffer).sharding.mesh
    return jax.sharding.reshard(buffer, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))


def resharded_like(new: FlatParams, old: FlatParams) -> FlatParams:
    """``new`` with each buffer given the explicit sharding of ``old``'s (a no-op without explicit axes)."""
    buffers = []
    for a, b in zip(new.buffers, old.buffers, strict=True):
        spec = _explicit_spec(b)
        if spec is not None and _explicit_spec(a) != spec:
            a = jax.sharding.reshard(a, jax.sharding.NamedSharding(jax.typeof(b).sharding.mesh, spec))
        buffers.append(a)
    return new.with_buffers(tuple(buffers))


def flat_params(tree: Any, *, pad_to: int = 1) -> FlatParams:
    """``tree`` (a pytree of arrays: dict, linen ``params``, ``nnx.State``) as one buffer per dtype.

    See the module docstring: ``flat.tree`` is the pytree for the model, ``jax.grad`` w.r.t.
    ``flat`` gives flat gradients, ``step(tx, grads, tx.init(flat.tree), flat)`` a one-pass step.
    ``pad_to`` pads each buffer to a multiple of it (to shard it along a mesh axis of that size).
    """
    return FlatParams.from_tree(tree, pad_to=pad_to)


def is_flat_params(x: Any) -> bool:
    return isinstance(x, FlatParams)


def _expand(x: Any) -> Any:
    if not isinstance(x, FlatParams):
        return x
    if all(isinstance(b, jax.Array) for b in x.buffers):
        return x.tree
    return jax.eval_shape(lambda f: f.tree, x)  # abstract buffers (a restore target): abstract leaves


def expand_params(tree: Any) -> Any:
    """``tree`` with every ``FlatParams`` in it replaced by the pytree it holds (checkpoints store that)."""
    return jax.tree.map(_expand, tree, is_leaf=is_flat_params)


def _refill(tree: Any, like: FlatParams) -> FlatParams:
    flat = FlatParams.from_tree(tree, layout=like.layout)
    placed = []
    for new, old in zip(flat.buffers, like.buffers, strict=True):
        sharding = getattr(old, "sharding", None)
        placed.append(jax.device_put(new, sharding) if isinstance(sharding, jax.sharding.Sharding) else new)
    return flat.with_buffers(tuple(placed))


def reflatten_params(tree: Any, like: Any) -> Any:
    """``tree`` (expanded) with the subtrees that are ``FlatParams`` in ``like`` stored flat again, in
    their layouts and with their buffers' shardings."""
    like_leaves, like_def = jax.tree.flatten(like, is_leaf=is_flat_params)
    if not any(isinstance(x, FlatParams) for x in like_leaves):
        return tree
    subtrees = like_def.flatten_up_to(tree)
    rebuilt = [
        _refill(sub, x) if isinstance(x, FlatParams) else sub for sub, x in zip(subtrees, like_leaves, strict=True)
    ]
    return like_def.unflatten(rebuilt)


def contains_flat_params(tree: Any) -> bool:
    return any(isinstance(x, FlatParams) for x in jax.tree.leaves(tree, is_leaf=is_flat_params))
