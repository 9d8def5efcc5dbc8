r"""Euclidean projections of pytrees onto convex sets (and onto spheres).

Each function returns :math:`\operatorname{argmin}_{p \in C} \|x - p\|_2^2` for a set :math:`C`,
treating a pytree as one flat vector (all leaves together). They are meant for projected gradient
descent: ``params = projection(optax.apply_updates(params, updates))``.

Norms are taken from squared sums where the formula allows, so a zero tree gives finite values and
finite gradients (``projection_l2_ball(0.)`` has gradient 1); the sphere projections are undefined
at the origin and give NaN there, as in Optax.
"""

from __future__ import annotations

import operator
from functools import reduce
from typing import Any

import jax
import jax.numpy as jnp
from jax import flatten_util

ArrayLike = Any


def _leaves_sum(values: list[jax.Array]) -> jax.Array:
    return reduce(operator.add, values, 0)


def _tree_vdot(x: Any, y: Any) -> jax.Array:
    """``<x, y>`` summed over all leaves, each product at full precision."""
    products = jax.tree.map(
        lambda a, b: jnp.vdot(jnp.asarray(a), jnp.asarray(b), precision=jax.lax.Precision.HIGHEST), x, y
    )
    return _leaves_sum(jax.tree.leaves(products))


def _tree_squared_l2(tree: Any) -> jax.Array:
    return _leaves_sum([jnp.sum(jnp.real(leaf * jnp.conj(leaf))) for leaf in map(jnp.asarray, jax.tree.leaves(tree))])


def _tree_l1(tree: Any) -> jax.Array:
    return _leaves_sum([jnp.sum(jnp.abs(leaf)) for leaf in jax.tree.leaves(tree)])


def _like_tree(bound: Any, tree: Any) -> Any:
    """A bound given as one scalar/array applies to every leaf; a pytree bound is used leaf by leaf."""
    if jax.tree_util.treedef_is_leaf(jax.tree.structure(bound)):
        return jax.tree.map(lambda _: bound, tree)
    return bound


def projection_non_negative(tree: Any) -> Any:
    r"""Projection onto the non-negative orthant, :math:`p = \max(x, 0)` element-wise.

    .. math:: \operatorname{argmin}_{p \ge 0} \|x - p\|_2^2

    Args:
      tree: pytree to project.

    Returns:
      A pytree with the structure of ``tree``. The gradient at ``x = 0`` is 0 (as ``jax.nn.relu``).
    """
    return jax.tree.map(jax.nn.relu, tree)


def projection_box(tree: Any, lower: Any, upper: Any) -> Any:
    r"""Projection onto the box ``lower <= p <= upper``: element-wise clipping.

    .. math:: \operatorname{argmin}_{l \le p \le u} \|x - p\|_2^2 = \min(\max(x, l), u)

    Args:
      tree: pytree to project.
      lower: lower bound: a scalar (or array) applied to every leaf, or a pytree with the structure
        of ``tree``. Optax accepts a scalar bound only for a single-array tree; this accepts it for
        any tree.
      upper: upper bound, given like ``lower``.

    Returns:
      A pytree with the structure of ``tree``. Where ``lower > upper`` the result is ``upper``
      (``jnp.clip``).
    """
    return jax.tree.map(jnp.clip, tree, _like_tree(lower, tree), _like_tree(upper, tree))


def projection_hypercube(tree: Any, scale: Any = 1) -> Any:
    r"""Projection onto the hypercube :math:`[0, \text{scale}]^n` (the unit cube by default).

    Args:
      tree: pytree to project.
      scale: side of the cube, a scalar or a pytree with the structure of ``tree``.

    Returns:
      ``projection_box(tree, 0, scale)``.
    """
    return projection_box(tree, lower=0, upper=scale)


@jax.custom_jvp
def _unit_simplex(values: jax.Array) -> jax.Array:
    """Projection of a 1-D vector onto ``{p >= 0, sum(p) = 1}`` (sort-based, O(n log n)).

    With ``u`` sorted decreasingly, the support size ``k`` is the number of indices ``j`` with
    ``u_j + (1 - sum_{i<=j} u_i) / j > 0`` (a prefix of the sorted order), the threshold is
    ``tau = (sum_{i<=k} u_i - 1) / k`` and the projection ``max(x - tau, 0)``. Low-precision input
    (bfloat16, float16) is computed, and returned, in the default float dtype.
    """
    # Work in at least the default float dtype (float32; float64 under x64), as Optax's does.
    values = values.astype(jnp.promote_types(values.dtype, jnp.result_type(float)))
    descending = -jnp.sort(-values)
    partial_sums = jnp.cumsum(descending)
    ranks = jnp.arange(1, values.shape[0] + 1, dtype=values.dtype)
    support_size = jnp.sum(descending * ranks - partial_sums + 1 > 0)
    tau = (partial_sums[support_size - 1] - 1) / support_size.astype(values.dtype)
    return jax.nn.relu(values - tau)


@_unit_simplex.defjvp
def _unit_simplex_jvp(primals, tangents):
    # On the support S the map is x -> x - mean_S(x) + const; off S it is constant. So the Jacobian
    # is diag(s) - s s^T / |S| with s the support indicator (Martins & Astudillo 2016, eq. 10).
    (values,), (values_dot,) = primals, tangents
    projected = _unit_simplex(values)
    values_dot = values_dot.astype(projected.dtype)
    support = (projected > 0).astype(projected.dtype)
    mean_on_support = jnp.sum(support * values_dot) / jnp.sum(support)
    return projected, support * (values_dot - mean_on_support)


def simplex_last_axis(values: jax.Array) -> jax.Array:
    """Projects every row (last axis) of ``values`` onto the unit simplex; used by the losses."""
    return jnp.vectorize(_unit_simplex, signature="(n)->(n)")(values)


def projection_simplex(tree: Any, scale: ArrayLike = 1) -> Any:
    r"""Projection onto the simplex :math:`\{p \ge 0, \sum_i p_i = \text{scale}\}`.

    .. math:: \operatorname{argmin}_{p \ge 0,\ 1^\top p = s} \|x - p\|_2^2 = \max(x - \tau, 0)

    with the threshold :math:`\tau` found by sorting (Held et al. 1974; Duchi et al., *Efficient
    projections onto the l1-ball*, ICML 2008). All leaves of ``tree`` form one vector. The
    derivative is the one of sparsemax (Martins & Astudillo, ICML 2016): on the support, the
    tangent minus its mean over the support; 0 elsewhere. ``-inf`` entries project to 0.

    Args:
      tree: pytree to project (leaves of any shape; they are flattened together).
      scale: the sum of the result (default 1, the probability simplex); must be > 0.

    Returns:
      A pytree with the structure of ``tree``.
    """
    values, unravel = flatten_util.ravel_pytree(tree)
    return unravel(scale * _unit_simplex(values / scale))


def projection_l1_sphere(tree: Any, scale: ArrayLike = 1) -> Any:
    r"""Projection onto the l1 sphere :math:`\{y : \|y\|_1 = \text{scale}\}`.

    .. math:: y = \operatorname{sign}(x) \odot \Pi_{\Delta_s}(|x|)

    the simplex projection of the magnitudes, signs restored. A zero tree has no sign to restore and
    maps to 0 (not on the sphere), as in Optax.

    Args:
      tree: pytree to project.
      scale: radius of the sphere.

    Returns:
      A pytree with the structure of ``tree``.
    """
    magnitudes = projection_simplex(jax.tree.map(jnp.abs, tree), scale)
    return jax.tree.map(lambda x, m: jnp.sign(x) * m, tree, magnitudes)


def projection_l1_ball(tree: Any, scale: ArrayLike = 1) -> Any:
    r"""Projection onto the l1 ball :math:`\{y : \|y\|_1 \le \text{scale}\}`.

    The tree itself when it is inside the ball, else its projection onto the l1 sphere
    (Duchi et al. 2008). The branch is a ``lax.cond``, so the gradient inside the ball is the
    identity even at ``x = 0``. The result keeps the dtypes of the leaves (Optax raises a
    ``TypeError`` for a bfloat16 array, whose sphere projection comes back in float32).

    Args:
      tree: pytree to project.
      scale: radius of the ball.

    Returns:
      A pytree with the structure of ``tree``.
    """

    def onto_sphere(t):
        # Both branches must have the leaves' dtypes (the simplex works in float32 for bfloat16).
        return jax.tree.map(lambda p, x: p.astype(jnp.result_type(x)), projection_l1_sphere(t, scale), t)

    return jax.lax.cond(_tree_l1(tree) <= scale, lambda t: t, onto_sphere, tree)


def projection_l2_sphere(tree: Any, scale: ArrayLike = 1) -> Any:
    r"""Projection onto the l2 sphere: :math:`y = \text{scale} \cdot x / \|x\|_2`.

    Undefined at ``x = 0`` (every point of the sphere is as close): the result is NaN there, as in
    Optax.

    Args:
      tree: pytree to project.
      scale: radius of the sphere.

    Returns:
      A pytree with the structure of ``tree``.
    """
    factor = scale / jnp.sqrt(_tree_squared_l2(tree))
    return jax.tree.map(lambda x: factor * x, tree)


def projection_l2_ball(tree: Any, scale: ArrayLike = 1) -> Any:
    r"""Projection onto the l2 ball: :math:`y = x \cdot \text{scale} / \max(\|x\|_2, \text{scale})`.

    Computed as ``scale / sqrt(max(||x||^2, scale^2))``: no square root of 0 is differentiated, so
    the gradient at ``x = 0`` is the identity (no NaN).

    Args:
      tree: pytree to project.
      scale: radius of the ball.

    Returns:
      A pytree with the structure of ``tree``.
    """
    factor = scale / jnp.sqrt(jnp.maximum(_tree_squared_l2(tree), scale**2))
    return jax.tree.map(lambda x: factor * x, tree)


def projection_linf_ball(tree: Any, scale: ArrayLike = 1) -> Any:
    r"""Projection onto the l-infinity ball: clip every element to ``[-scale, scale]``.

    Args:
      tree: pytree to project.
      scale: radius of the ball (cast to each leaf's dtype, as ``jnp.full_like`` does).

    Returns:
      A pytree with the structure of ``tree``.
    """

    def clip(x):
        x = jnp.asarray(x)
        bound = jnp.asarray(scale).astype(x.dtype)
        return jnp.clip(x, -bound, bound)

    return jax.tree.map(clip, tree)


def projection_vector(x: Any, a: Any) -> Any:
    r"""Projection onto the line spanned by ``a``: :math:`\frac{\langle x, a\rangle}{\langle a, a\rangle} a`.

    Args:
      x: pytree to project.
      a: pytree with the structure of ``x``, the direction (``a = 0`` gives NaN).

    Returns:
      A pytree with the structure of ``a``.
    """
    coefficient = _tree_vdot(x, a) / _tree_vdot(a, a)
    return jax.tree.map(lambda leaf: coefficient * leaf, a)


def projection_hyperplane(x: Any, a: Any, b: ArrayLike) -> Any:
    r"""Projection onto the hyperplane :math:`\{y : \langle a, y\rangle = b\}`.

    .. math:: y = x + \frac{b - \langle a, x\rangle}{\langle a, a\rangle} a

    Args:
      x: pytree to project.
      a: pytree with the structure of ``x``, the normal vector (nonzero).
      b: scalar offset.

    Returns:
      A pytree with the structure of ``x``.
    """
    coefficient = (b - _tree_vdot(x, a)) / _tree_vdot(a, a)
    return jax.tree.map(lambda xi, ai: xi + coefficient * ai, x, a)


def projection_halfspace(x: Any, a: Any, b: ArrayLike) -> Any:
    r"""Projection onto the halfspace :math:`\{y : \langle a, y\rangle \le b\}`.

    .. math:: y = x + \frac{\min(b - \langle a, x\rangle, 0)}{\langle a, a\rangle} a

    ``x`` itself when it already satisfies the constraint.

    Args:
      x: pytree to project.
      a: pytree with the structure of ``x``, the outward normal (nonzero).
      b: scalar offset.

    Returns:
      A pytree with the structure of ``x``.
    """
    coefficient = jnp.minimum((b - _tree_vdot(x, a)) / _tree_vdot(a, a), 0)
    return jax.tree.map(lambda xi, ai: xi + coefficient * ai, x, a)
