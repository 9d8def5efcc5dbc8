"""Flat optimizer state: every per-parameter buffer (moments, traces) kept end to end in one array.

An AdamW state for a model with L parameter leaves holds 2L moment buffers; a jitted step then
passes 4L + 2 arrays in and 3L out (gradients, parameters, m, v), and both XLA's compile time and
JAX's per-call dispatch grow faster than linearly with that count (2000 leaves: ~6 s to compile
and ~60 ms per call on a 2-core machine, before any arithmetic). ``flat_state(tx)`` stores each
such field of ``tx``'s state as one ``FlatTree``: a single 1-D buffer plus the static layout, so
the same step passes 2L + 2 arrays in and L + 2 out.

A ``FlatTree`` still reads like the pytree it stores: ``state[0].mu["dense"]["kernel"]`` and
``state[0].mu.tree`` give the leaves (slices of the buffer, free under ``jit``). Everything else
in the state (counts, hyperparameters) is untouched, so ``get_hyperparams``/``set_hyperparams``
and checkpoints work as before. ``flat_state(tx).update`` computes ``tx.update`` on the unflattened
view and flattens the result (one extra copy of the state per step on the general road);
``optcompose.step`` gives ``sgd``/``adam``/``adamw``/``lamb`` (and chains ending in one) their
one-pass kernel, which updates the flat buffers in place.

A field is stored flat when its pytree has the parameters' structure and shapes and one dtype
(with bfloat16 parameters next to float32 ones and ``mu_dtype=None``, ``mu`` stays a pytree).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from optcompose._base import GradientTransformation, GradientTransformationExtraArgs, _check_transform, call_update
from optcompose._tree import is_record
from optcompose.tree import param_shaped_subtree_map


@jax.tree_util.register_pytree_node_class
class FlatTree:
    """The leaves of a pytree, raveled and concatenated into ``buffer``; indexes like the pytree.

    ``treedef`` and ``shapes`` are static (pytree aux data), ``buffer`` is the only child, so
    ``jax.tree.map`` over a state sees one array where the pytree had many.
    """

    __slots__ = ("buffer", "shapes", "treedef")

    def __init__(self, buffer: Any, treedef: Any, shapes: tuple[tuple[int, ...], ...]):
        self.buffer = buffer
        self.treedef = treedef
        self.shapes = tuple(tuple(s) for s in shapes)

    @classmethod
    def from_tree(cls, tree: Any) -> FlatTree:
        """Stores ``tree`` (float leaves of one dtype) flat; raises ``ValueError`` for mixed dtypes."""
        leaves, treedef = jax.tree.flatten(tree)
        dtypes = {jnp.asarray(leaf).dtype for leaf in leaves}
        if len(dtypes) > 1:
            raise ValueError(f"a FlatTree needs leaves of one dtype, got {sorted(map(str, dtypes))}")
        dtype = dtypes.pop() if dtypes else jnp.float32
        buffer = jnp.concatenate([jnp.ravel(leaf) for leaf in leaves]) if leaves else jnp.zeros((0,), dtype)
        return cls(buffer, treedef, tuple(jnp.shape(leaf) for leaf in leaves))

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(shape) for shape in self.shapes)

    @property
    def tree(self) -> Any:
        """The stored pytree: each leaf a reshaped slice of ``buffer``."""
        leaves, start = [], 0
        for shape, size in zip(self.shapes, self.sizes, strict=True):
            leaves.append(jnp.reshape(self.buffer[start : start + size], shape))
            start += size
        return self.treedef.unflatten(leaves)

    def __getitem__(self, key: Any) -> Any:
        return self.tree[key]

    def __repr__(self) -> str:
        return f"FlatTree({len(self.shapes)} leaves, buffer={self.buffer!r})"

    def tree_flatten(self):
        return (self.buffer,), (self.treedef, self.shapes)

    @classmethod
    def tree_unflatten(cls, aux, children):
        treedef, shapes = aux
        return cls(children[0], treedef, shapes)


def flatten_state(state: Any, params: Any) -> Any:
    """``state`` with each field shaped like ``params`` (one dtype, no masked holes) stored as a ``FlatTree``.

    The fields are found by ``optcompose.tree.param_shaped_subtree_map``, the library's one answer
    to "which parts of a state mirror the parameters?".
    """
    structure = jax.tree.structure(params)

    def to_flat(field: Any) -> Any:
        if jax.tree.structure(field) != structure or len({jnp.result_type(x) for x in jax.tree.leaves(field)}) != 1:
            return field  # masked holes, or mixed dtypes (bfloat16 params next to float32 ones)
        return FlatTree.from_tree(field)

    return param_shaped_subtree_map(to_flat, state, params)


def expand_state(state: Any) -> Any:
    """``state`` with every ``FlatTree`` replaced by the pytree it stores."""
    is_flat = lambda x: isinstance(x, FlatTree)  # noqa: E731
    return jax.tree.map(lambda x: x.tree if is_flat(x) else x, state, is_leaf=is_flat)


def reflatten_like(new_state: Any, old_state: Any) -> Any:
    """``new_state`` (expanded) with the fields that were ``FlatTree`` in ``old_state`` flat again."""
    if isinstance(old_state, FlatTree):
        return FlatTree.from_tree(new_state)
    if is_record(old_state) or isinstance(old_state, tuple):
        if not isinstance(new_state, tuple) or len(new_state) != len(old_state):
            return new_state
        rebuilt = [reflatten_like(n, o) for n, o in zip(new_state, old_state, strict=True)]
        return type(new_state)(*rebuilt) if is_record(new_state) else tuple(rebuilt)
    if isinstance(old_state, Mapping) and type(old_state) is dict and isinstance(new_state, dict):
        return {k: reflatten_like(v, old_state[k]) if k in old_state else v for k, v in new_state.items()}
    return new_state


class FlatState(GradientTransformationExtraArgs):
    """``flat_state(inner)``: ``self.inner`` with its parameter-shaped state fields stored flat."""

    def __new__(cls, inner: GradientTransformation) -> FlatState:
        inner = _check_transform("flat_state argument", inner)

        def init(params):
            return flatten_state(inner.init(params), params)

        def update(updates, state, params=None, **extra_args):
            updates, new_state = call_update(inner, updates, expand_state(state), params, extra_args)
            return updates, reflatten_like(new_state, state)

        self = super().__new__(cls, init, update)
        self.inner = inner
        return self

    def __repr__(self) -> str:
        return f"flat_state({self.inner!r})"


def flat_state(transform: GradientTransformation) -> FlatState:
    """``transform`` with its per-parameter state stored flat (see the module docstring).

    Same updates, same hyperparameters; ``state[i].mu`` is a ``FlatTree`` instead of a pytree.
    ``optcompose.step`` keeps its one-pass kernel for the chains that have one.
    """
    return FlatState(transform)
