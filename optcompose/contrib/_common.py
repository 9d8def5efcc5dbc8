"""Helpers shared by the contributed optimizers: whole-tree reductions, per-leaf options, matrix views.

Everything here computes in float32 (float64 / complex stay as they are), whatever the leaves'
storage dtype, as the rest of the library does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from optcompose import _tree as tree_lib
from optcompose._base import GradientTransformationExtraArgs, call_update
from optcompose._hyperparams import hyperparam_dtype
from optcompose._numerics import widen

NO_PARAMS = "{name} needs params: call update(updates, state, params)"


def scalar_dtype(params: Any) -> Any:
    """The dtype of a transform's scalar state (step sizes, running sums): float32, or float64 when a
    parameter is float64. Optax uses the *lowest* parameter dtype (bfloat16 when any leaf is); a
    float32 scalar keeps low-precision models from rounding their step size to 3 digits."""
    return hyperparam_dtype(params)


def leaves(tree: Any) -> list[jax.Array]:
    """The leaves of ``tree`` widened to float32 (or wider); non-floating leaves raise, naming the path."""
    tree_lib.check_floating(tree, "updates")
    return [widen(x) for x in jax.tree.leaves(tree)]


def tree_vdot(x: Any, y: Any, dtype: Any = jnp.float32) -> jax.Array:
    """``sum over leaves of Re(sum(conj(x) * y))`` in ``dtype`` (or wider): the real inner product.

    For complex leaves this is the inner product of the parameters as a real vector space, the
    quantity every step-size rule here needs (a real number to compare and divide by).
    """
    total = jnp.zeros((), dtype)
    for a, b in zip(leaves(x), leaves(y), strict=True):
        total = total + jnp.sum(jnp.real(jnp.conj(a) * b)).astype(total.dtype)
    return total


def tree_squared_norm(x: Any, dtype: Any = jnp.float32) -> jax.Array:
    """``sum over leaves of sum |x|^2`` in ``dtype`` (or wider); overflows to inf like the plain sum."""
    total = jnp.zeros((), dtype)
    for a in leaves(x):
        total = total + jnp.sum(jnp.real(a * jnp.conj(a))).astype(total.dtype)
    return total


def tree_norm(x: Any, dtype: Any = jnp.float32, *, minus: Any = None) -> jax.Array:
    """The global l2 norm of ``x`` (of ``x - minus`` when given) in ``dtype``, finite for any finite
    entries (1e30 or 1e-30 included).

    ``sqrt(sum |x|^2)`` when that sum neither overflows nor underflows, else ``m * sqrt(sum |x / m|^2)``
    with ``m`` the largest magnitude: the rule of ``optcompose._tree.global_norm``, whose
    ``lax.cond`` runs the rescaled pass only when needed, so the usual case reads ``x`` once.
    ``minus`` (a tree of ``x``'s structure) gives the norm of the difference without storing it:
    the difference is formed inside each reduction (``||x_t - x_0||`` in DoG reads both trees once).
    """
    if minus is not None:
        tree_lib.check_same_structure((x, minus), ("x", "minus"))
    operands = (leaves(x), None if minus is None else leaves(minus))
    values = _differences(*operands)
    squared = tree_squared_norm(values, dtype)
    if not values:
        return jnp.sqrt(squared)
    plain_ok = jnp.isfinite(squared) & (squared > tree_lib._SQUARE_UNDERFLOW)
    return jax.lax.cond(plain_ok, tree_lib._plain_norm, _rescaled_norm, operands, squared)


def _differences(xs: list[jax.Array], ys: list[jax.Array] | None) -> list[jax.Array]:
    return xs if ys is None else [a - b for a, b in zip(xs, ys, strict=True)]


def _rescaled_norm(operands: Any, squared: jax.Array) -> jax.Array:
    values = _differences(*operands)
    return tree_lib._rescaled_norm([jnp.abs(a) if jnp.iscomplexobj(a) else a for a in values], squared)


def tree_l1(x: Any, dtype: Any = jnp.float32) -> jax.Array:
    """``sum over leaves of sum |x|`` in ``dtype`` (or wider)."""
    total = jnp.zeros((), dtype)
    for a in leaves(x):
        total = total + jnp.sum(jnp.abs(a)).astype(total.dtype)
    return total


def copy_tree(tree: Any) -> Any:
    """A copy of every array leaf (so a state slot never aliases the parameters it started from)."""
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


class Option:
    """One leaf's static option (dimension numbers, or ``None``), held so that it is a pytree leaf."""

    __slots__ = ("path", "value")

    def __init__(self, value: Any, path: str = "<root>"):
        self.value, self.path = value, path


def per_leaf_options(spec: Any, tree: Any, is_option: Callable[[Any], bool]) -> Any:
    """``spec`` broadcast to one ``Option`` per leaf of ``tree``.

    ``spec`` is one option for every leaf, a pytree prefix of ``tree`` holding options (``None``
    allowed, meaning "no option"), or a function of ``tree`` returning one. Subtrees of ``tree``
    without leaves (``MaskedNode``) stay as they are.
    """
    if callable(spec) and not is_option(spec):
        spec = spec(tree)
    if spec is None or is_option(spec):
        return jax.tree.map(lambda _: Option(spec), tree)

    def broadcast(option, subtree):
        return jax.tree.map(lambda _: Option(option), subtree)

    try:
        return jax.tree.map(broadcast, spec, tree, is_leaf=lambda x: x is None or is_option(x))
    except ValueError as err:
        raise ValueError(
            "the dimension numbers must be one value, a pytree prefix of the parameters (None where a "
            f"leaf has none) or a function of them; got structure {jax.tree.structure(spec, is_leaf=is_option)} "
            f"for parameters {jax.tree.structure(tree)}"
        ) from err


def normalize_axes(ndim: int, axes: int | Sequence[int]) -> tuple[int, ...]:
    """``axes`` (an int or a sequence) as a tuple of non-negative axis numbers of an ``ndim`` array."""
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    for axis in axes:
        if not -ndim <= axis < ndim:
            raise ValueError(f"axis {axis} is out of range for an array with {ndim} dimensions")
    return tuple(axis % ndim for axis in axes)


class MatrixView:
    """A tensor seen as a batch of matrices: ``(batch, reduction, output)`` and back.

    Batch axes are those named neither as reduction nor as output axes (kept in order).
    """

    def __init__(self, shape: Sequence[int], reduction_axis: Any, output_axis: Any, *, allow_batch: bool = True):
        shape = tuple(shape)
        ndim = len(shape)
        if ndim < 2:
            raise ValueError(f"a matrix view needs an array of rank >= 2, got shape {shape}")
        reduction, output = normalize_axes(ndim, reduction_axis), normalize_axes(ndim, output_axis)
        if set(reduction) & set(output):
            raise ValueError(f"reduction axes {reduction} and output axes {output} must be disjoint (shape {shape})")
        batch = tuple(a for a in range(ndim) if a not in reduction and a not in output)
        if batch and not allow_batch:
            raise ValueError(
                f"every axis must be a reduction or an output axis; axes {batch} of shape {shape} are neither"
            )
        self.order = batch + reduction + output
        self.inverse = tuple(sorted(range(ndim), key=lambda i: self.order[i]))
        size = lambda axes: math.prod(shape[a] for a in axes)
        self.fan_in, self.fan_out = size(reduction), size(output)
        self.flat = (size(batch), self.fan_in, self.fan_out)
        self.unflat = tuple(shape[a] for a in self.order)

    def to_matrices(self, x: jax.Array) -> jax.Array:
        return jnp.transpose(x, self.order).reshape(self.flat)

    def from_matrices(self, x: jax.Array) -> jax.Array:
        return jnp.transpose(x.reshape(self.unflat), self.inverse)


class WithInit(GradientTransformationExtraArgs):
    """``inner`` whose ``init`` also fills some state fields from the parameters (``self.inner``)."""

    def __new__(cls, inner: Any, **fields: Callable[[Any], Any]) -> WithInit:
        def init(params):
            return inner.init(params)._replace(**{name: make(params) for name, make in fields.items()})

        self = super().__new__(cls, init, inner.update)
        self.inner = inner
        return self

    def __repr__(self) -> str:
        return repr(self.inner)


class Restated(GradientTransformationExtraArgs):
    """``inner`` (usually a ``Leafwise`` on a private record) whose state is shown as another record.

    ``to_outer(inner_state)`` builds the public state (Optax's field names), ``to_inner(state)`` reads
    it back; both are pure re-labellings, so ``get_hyperparams`` and checkpoints see one state.
    """

    def __new__(cls, inner: Any, to_outer: Callable[[Any], Any], to_inner: Callable[[Any], Any]) -> Restated:
        def init(params):
            return to_outer(inner.init(params))

        def update(updates, state, params=None, **extra_args):
            updates, inner_state = call_update(inner, updates, to_inner(state), params, extra_args)
            return updates, to_outer(inner_state)

        self = super().__new__(cls, init, update)
        self.inner = inner
        return self

    def __repr__(self) -> str:
        return repr(self.inner)
