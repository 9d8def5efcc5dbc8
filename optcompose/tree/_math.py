"""Arithmetic, reductions and moment updates over whole pytrees (Optax's ``optax.tree`` maths).

Every function maps over the leaves of its pytree arguments with :func:`jax.tree.map`, so the
trees must share one structure. ``None`` is a pytree node without leaves, so a ``None`` in the
trees is carried through untouched (and is skipped by the reductions), unless a function's
docstring says otherwise. Reductions over an empty tree return their identity as a Python
number (``0`` for sums, ``-inf`` / ``inf`` for max / min) rather than an array.

The formulas and the order of every operation follow Optax 0.2.8, so results agree bit for bit
with ``optax.tree``; where ours is more lenient (it accepts inputs Optax rejects) the docstring says
so.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import jax
import jax.numpy as jnp

_NEG_INF = -float("inf")
_POS_INF = float("inf")


def _is_none(x: Any) -> bool:
    return x is None


def _map_unless_none(fn: Any, first: Any, *others: Any) -> Any:
    """``jax.tree.map(fn, first, *others)``, but a ``None`` in ``first`` stays ``None``.

    ``None`` counts as a leaf of ``first`` here, so whatever sits at that place in ``others`` (an
    array, a subtree, ``None``) is ignored and the output keeps ``None``.
    """

    def leafwise(x: Any, *ys: Any) -> Any:
        return None if x is None else fn(x, *ys)

    return jax.tree.map(leafwise, first, *others, is_leaf=_is_none)


def _fold_add(values: Any) -> Any:
    """``0 + v_1 + v_2 + ...`` in leaf order (Python's ``sum``: empty gives the integer 0)."""
    total = 0
    for value in values:
        total = total + value
    return total


def tree_add(tree_x: Any, tree_y: Any, *other_trees: Any) -> Any:
    r"""Leaf-wise sum of two or more pytrees.

    .. math:: \text{out}_i = x_i + y_i + \sum_k z^{(k)}_i

    Args:
      tree_x: a pytree.
      tree_y: a pytree with the structure of ``tree_x``.
      *other_trees: further pytrees with that structure, added as well.

    Returns:
      A pytree with the common structure. Each leaf is computed as ``0 + x + y + ...`` (Python's
      ``sum``), so leaves follow JAX's promotion for ``+`` with a weak integer zero: bool leaves
      become int32, the float dtypes are kept. ``None`` entries stay ``None``.
    """
    return jax.tree.map(lambda *leaves: _fold_add(leaves), tree_x, tree_y, *other_trees)


def tree_sub(tree_x: Any, tree_y: Any) -> Any:
    r"""Leaf-wise difference ``x - y`` of two pytrees of one structure.

    Args:
      tree_x: the minuend pytree.
      tree_y: the subtrahend, with the structure of ``tree_x``.

    Returns:
      A pytree of ``x_i - y_i`` (JAX's dtype promotion per leaf); ``None`` entries stay ``None``.
    """
    return jax.tree.map(operator.sub, tree_x, tree_y)


def tree_mul(tree_x: Any, tree_y: Any) -> Any:
    r"""Leaf-wise (Hadamard) product ``x * y`` of two pytrees of one structure.

    Args:
      tree_x: a pytree.
      tree_y: a pytree with the structure of ``tree_x``.

    Returns:
      A pytree of ``x_i * y_i``; ``None`` entries stay ``None``.
    """
    return jax.tree.map(operator.mul, tree_x, tree_y)


def tree_div(tree_x: Any, tree_y: Any) -> Any:
    r"""Leaf-wise true division ``x / y`` of two pytrees of one structure.

    Args:
      tree_x: the numerator pytree.
      tree_y: the denominator, with the structure of ``tree_x``.

    Returns:
      A pytree of ``x_i / y_i`` (integer leaves give floats, division by zero gives inf / nan as
      in :func:`jax.numpy.true_divide`); ``None`` entries stay ``None``.
    """
    return jax.tree.map(operator.truediv, tree_x, tree_y)


def tree_scale(scalar: jax.typing.ArrayLike, tree: Any) -> Any:
    r"""Multiplies every leaf by one scalar: ``out_i = scalar * x_i``.

    Args:
      scalar: a scalar (Python number or 0-d array). A Python float is weakly typed, so bfloat16
        leaves stay bfloat16.
      tree: a pytree.

    Returns:
      A pytree with the structure of ``tree``; ``None`` entries stay ``None``.
    """
    return jax.tree.map(lambda x: scalar * x, tree)


def tree_add_scale(tree_x: Any, scalar: jax.typing.ArrayLike, tree_y: Any) -> Any:
    r"""Axpy over pytrees: ``out_i = x_i + scalar * y_i``.

    Args:
      tree_x: a pytree; a ``None`` entry (or ``tree_x=None``) gives ``None`` in the output whatever
        ``tree_y`` holds there.
      scalar: a scalar, converted with :func:`jax.numpy.asarray` (a Python float stays weakly
        typed, so bfloat16 trees stay bfloat16).
      tree_y: a pytree with the structure of ``tree_x`` (below its ``None`` entries).

    Returns:
      A pytree with the structure of ``tree_x``.
    """
    scalar = jnp.asarray(scalar)
    return _map_unless_none(lambda x, y: x + scalar * y, tree_x, tree_y)


def _explicit_out_sharding(a: jax.Array) -> Any:
    """A replicated output sharding when ``a`` lives on a mesh whose axes are all explicit."""
    mesh = jax.typeof(a).sharding.mesh
    if mesh.axis_names and mesh.are_all_axes_explicit:
        return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return None


def _leaf_vdot(a: Any, b: Any) -> jax.Array:
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"vdot needs leaves of one shape, got {a.shape} and {b.shape}")
    if jax.dtypes.issubdtype(a.dtype, jnp.complexfloating):
        a = jnp.conj(a)
    # A full contraction instead of jnp.vdot: no ravel, so no resharding of sharded leaves.
    return jnp.tensordot(a, b, a.ndim, precision=jax.lax.Precision.HIGHEST, out_sharding=_explicit_out_sharding(a))


def tree_vdot(tree_x: Any, tree_y: Any) -> jax.typing.ArrayLike:
    r"""Inner product of two pytrees, conjugating the first for complex leaves.

    .. math:: \langle x, y \rangle = \sum_{\text{leaves } l} \sum_j \overline{x_{l,j}}\, y_{l,j}

    Each leaf pair is contracted at ``Precision.HIGHEST`` (no TF32/bfloat16 passes on
    accelerators) and the per-leaf results are summed in leaf order, starting from ``0``.

    Args:
      tree_x: a pytree of arrays (or Python numbers).
      tree_y: a pytree with the structure and leaf shapes of ``tree_x``.

    Returns:
      A scalar in the promoted dtype of the leaves; the Python integer ``0`` for an empty tree
      (``{}``, ``()``, ``None``, or a tree of only ``None``).

    Raises:
      ValueError: if two paired leaves differ in shape. (Optax 0.2.8 on JAX >= 0.10 falls into its
        old ``jnp.vdot`` branch, which ravels: it accepts equal sizes in different shapes and
        raises ``TypeError`` otherwise. Its intended branch, like ours, requires equal shapes.)
    """
    return _fold_add(jax.tree.leaves(jax.tree.map(_leaf_vdot, tree_x, tree_y)))


def tree_sum(tree: Any, associative_reduction: bool = False) -> jax.typing.ArrayLike:
    r"""Sum of every element of every leaf.

    .. math:: \sum_{\text{leaves } l} \sum_j x_{l,j}

    Args:
      tree: a pytree.
      associative_reduction: ``False`` (default) adds the per-leaf sums left to right, starting
        from ``0``. ``True`` combines them with :func:`jax.tree.reduce_associative` (a balanced
        tree of additions, which can compile faster for huge pytrees but rounds differently);
        it needs JAX >= 0.6.0.

    Returns:
      A scalar (each leaf summed in its own dtype, then promoted); the Python integer ``0`` for
      an empty tree.

    Raises:
      ValueError: for ``associative_reduction=True`` on a JAX without ``reduce_associative``.
    """
    sums = jax.tree.map(jnp.sum, tree)
    if not associative_reduction:
        return _fold_add(jax.tree.leaves(sums))
    reduce_associative = getattr(jax.tree, "reduce_associative", None)
    if reduce_associative is None:
        raise ValueError(
            "tree_sum(associative_reduction=True) needs jax.tree.reduce_associative (JAX >= 0.6.0); "
            "upgrade JAX or pass associative_reduction=False"
        )
    return reduce_associative(operator.add, sums, identity=0)


def _fold_extreme(tree: Any, reduce_leaf: Any, combine: Any, start: float) -> Any:
    result = start
    for leaf in jax.tree.leaves(tree):
        if jnp.size(leaf) == 0:  # an empty leaf has no extreme; skip it
            continue
        result = combine(result, reduce_leaf(leaf))
    return result


def tree_max(tree: Any) -> jax.typing.ArrayLike:
    r"""Largest element over all leaves: ``max_l max_j x_{l,j}``.

    Args:
      tree: a pytree of real arrays or numbers.

    Returns:
      A scalar, folded as ``maximum(...maximum(-inf, max(x_1))..., max(x_n))``; leaves with no
      elements are skipped, and an empty tree gives the Python float ``-inf``. Integer leaves give
      a float result, the fold starting from the float ``-inf``.
    """
    return _fold_extreme(tree, jnp.max, jnp.maximum, _NEG_INF)


def tree_min(tree: Any) -> jax.typing.ArrayLike:
    r"""Smallest element over all leaves: ``min_l min_j x_{l,j}``.

    Args:
      tree: a pytree of real arrays or numbers.

    Returns:
      A scalar; leaves with no elements are skipped, and an empty tree gives the Python float
      ``inf``. Integer leaves give a float result, the fold starting from the float ``inf``.
    """
    return _fold_extreme(tree, jnp.min, jnp.minimum, _POS_INF)


def tree_size(tree: Any) -> int:
    r"""Total number of elements over all leaves, ``sum_l prod(shape_l)``, as a Python int.

    Args:
      tree: a pytree of arrays, numbers (size 1) or :class:`jax.ShapeDtypeStruct`.

    Returns:
      The element count; ``0`` for an empty tree. ``None`` entries count nothing.
    """
    return _fold_add(int(jnp.size(leaf)) for leaf in jax.tree.leaves(tree))


def tree_conj(tree: Any) -> Any:
    """Complex conjugate of every leaf (:func:`jax.numpy.conj`; real leaves are returned as they are).

    Args:
      tree: a pytree.

    Returns:
      A pytree with the structure of ``tree``.
    """
    return jax.tree.map(jnp.conj, tree)


def tree_real(tree: Any) -> Any:
    """Real part of every leaf (:func:`jax.numpy.real`: complex64 gives float32).

    Args:
      tree: a pytree.

    Returns:
      A pytree with the structure of ``tree``.
    """
    return jax.tree.map(jnp.real, tree)


def _modulus_squared(x: Any) -> Any:
    """``re(x)^2 + im(x)^2`` in ``x``'s own (real) dtype."""
    return jnp.square(x.real) + jnp.square(x.imag)


def tree_norm(
    tree: Any,
    ord: int | str | float | None = None,
    squared: bool = False,
) -> jax.Array:
    r"""Vector norm of all leaves taken together, as if they were concatenated into one vector.

    .. math::

       \|x\|_2 = \sqrt{\textstyle\sum_{l,j} |x_{l,j}|^2}, \qquad
       \|x\|_1 = \textstyle\sum_{l,j} |x_{l,j}|, \qquad
       \|x\|_\infty = \max_{l,j} |x_{l,j}|

    This is Optax's plain formula, with its numbers: the squares are summed in each leaf's dtype
    (bfloat16 leaves sum in bfloat16). It is *not* overflow-safe: in float32 any entry above
    about 1.8e19 squares to ``inf``, so the norm of ``[1e30]`` is ``inf`` (Optax gives ``inf``
    too), and entries below about 1e-23 square to zero. For a 2-norm that stays finite and
    accurate there (``1e30`` for ``[1e30]``) use :func:`optcompose.global_norm`, which rescales by
    the largest magnitude when the plain sum overflows or underflows.

    Args:
      tree: a pytree of real or complex arrays.
      ord: ``None`` or ``2`` for the Euclidean norm, ``1`` for the sum of magnitudes, ``jnp.inf``,
        ``'inf'`` or ``'infinity'`` for the largest magnitude.
      squared: return the square of the norm (for ``ord=2`` this skips the square root).

    Returns:
      A 0-d array. For an empty tree: ``0`` for ``ord`` 1 and 2, ``-inf`` for ``ord=inf`` (the
      identity of :func:`tree_max`; ``inf`` when ``squared``).

    Raises:
      ValueError: for any other ``ord``.
    """
    if ord is None or ord == 2:
        total = tree_sum(jax.tree.map(_modulus_squared, tree))
        return jnp.array(total if squared else jnp.sqrt(total))
    if ord == 1:
        value = tree_sum(jax.tree.map(jnp.abs, tree))
    elif ord == jnp.inf or ord in ("inf", "infinity"):
        value = tree_max(jax.tree.map(jnp.abs, tree))
    else:
        raise ValueError(f"Unsupported ord: {ord!r}; use None, 1, 2, jnp.inf, 'inf' or 'infinity'")
    return jnp.array(_modulus_squared(value) if squared else value)


def tree_batch_shape(tree: Any, shape: tuple[int, ...] = ()):
    """Prepends batch dimensions to every leaf by broadcasting: ``x -> broadcast_to(x, shape + x.shape)``.

    Args:
      tree: a pytree of arrays or numbers.
      shape: the leading dimensions to add; ``()`` leaves the leaves' shapes as they are.

    Returns:
      A pytree of arrays of shape ``(*shape, *x.shape)`` (every batch entry a copy of ``x``).
    """
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (*shape, *jnp.shape(x))), tree)


def tree_zeros_like(tree: Any, dtype: jax.typing.DTypeLike | None = None) -> Any:
    """Zeros shaped like every leaf (:func:`jax.numpy.zeros_like`), in ``dtype`` or each leaf's dtype.

    Args:
      tree: a pytree of arrays, numbers or :class:`jax.ShapeDtypeStruct`.
      dtype: optional dtype for every output leaf.

    Returns:
      A pytree of arrays with the structure of ``tree``.
    """
    return jax.tree.map(lambda x: jnp.zeros_like(x, dtype=dtype), tree)


def tree_ones_like(tree: Any, dtype: jax.typing.DTypeLike | None = None) -> Any:
    """Ones shaped like every leaf (:func:`jax.numpy.ones_like`), in ``dtype`` or each leaf's dtype.

    Args:
      tree: a pytree of arrays, numbers or :class:`jax.ShapeDtypeStruct`.
      dtype: optional dtype for every output leaf.

    Returns:
      A pytree of arrays with the structure of ``tree``.
    """
    return jax.tree.map(lambda x: jnp.ones_like(x, dtype=dtype), tree)


def tree_full_like(
    tree: Any,
    fill_value: jax.typing.ArrayLike,
    dtype: jax.typing.DTypeLike | None = None,
) -> Any:
    """``fill_value`` in the shape of every leaf (:func:`jax.numpy.full_like`).

    Args:
      tree: a pytree of arrays, numbers or :class:`jax.ShapeDtypeStruct`.
      fill_value: the value of every element (cast to the output dtype: ``1.7`` in an int32 leaf
        gives ``1``).
      dtype: optional dtype for every output leaf; by default each leaf's own dtype.

    Returns:
      A pytree of arrays with the structure of ``tree``.
    """
    return jax.tree.map(lambda x: jnp.full_like(x, fill_value, dtype=dtype), tree)


def tree_clip(
    tree: Any,
    min_value: jax.typing.ArrayLike | None = None,
    max_value: jax.typing.ArrayLike | None = None,
) -> Any:
    """Clips every element to ``[min_value, max_value]`` (:func:`jax.numpy.clip`).

    Args:
      tree: a pytree.
      min_value: lower bound, or ``None`` (default) for none.
      max_value: upper bound, or ``None`` (default) for none. With ``min_value > max_value`` every
        element becomes ``max_value``, as in :func:`jax.numpy.clip`.

    Returns:
      A pytree with the structure of ``tree``.
    """
    return jax.tree.map(lambda x: jnp.clip(x, min_value, max_value), tree)


def tree_update_moment(updates, moments, decay, order):
    r"""One step of the exponential moving average of the ``order``-th power of ``updates``.

    .. math:: m_t = (1 - \beta)\, g_t^{p} + \beta\, m_{t-1}

    with :math:`\beta` = ``decay`` and :math:`p` = ``order`` (Adam's first moment is ``order=1``,
    its second ``order=2``; for complex ``g`` use :func:`tree_update_moment_per_elem_norm`).

    Args:
      updates: pytree of :math:`g_t`. A ``None`` entry (or ``updates=None``) gives ``None``, whatever
        ``moments`` holds there.
      moments: pytree of :math:`m_{t-1}` with the structure of ``updates``.
      decay: :math:`\beta`, a scalar.
      order: :math:`p`, a scalar.

    Returns:
      The pytree of :math:`m_t` (dtype by JAX promotion of ``g``, ``m`` and the scalars).
    """
    return _map_unless_none(lambda g, t: (1 - decay) * (g**order) + decay * t, updates, moments)


def tree_update_infinity_moment(updates, moments, decay, eps):
    r"""One step of Adamax's infinity-norm moment: :math:`u_t = \max(|g_t| + \epsilon, \beta\, u_{t-1})`.

    Args:
      updates: pytree of :math:`g_t`; ``None`` entries stay ``None``.
      moments: pytree of :math:`u_{t-1}` with the structure of ``updates``.
      decay: :math:`\beta`, a scalar.
      eps: :math:`\epsilon`, added to :math:`|g_t|` before the maximum.

    Returns:
      The pytree of :math:`u_t`.
    """
    return _map_unless_none(lambda g, t: jnp.maximum(jnp.abs(g) + eps, decay * t), updates, moments)


def _power_of_modulus(g: Any, order: Any) -> Any:
    if jnp.isrealobj(g):
        return g**order
    half = order / 2
    if isinstance(half, float) and half.is_integer():
        half = int(half)  # an integer exponent lowers to repeated multiplication, not exp/log
    return jnp.real(jnp.conj(g) * g) ** half


def tree_update_moment_per_elem_norm(updates, moments, decay, order):
    r"""EMA of the ``order``-th power of each element's modulus (complex-safe :func:`tree_update_moment`).

    .. math:: m_t = (1 - \beta)\, |g_t|^{p} + \beta\, m_{t-1}

    For real ``g`` the power is ``g ** order`` (exactly :func:`tree_update_moment`). For complex
    ``g`` it is ``(re(conj(g) g)) ** (order / 2)``, a real array, with an integral ``order / 2``
    passed as a Python int. (Optax rejects Python complex scalars as ``g``; we accept them.)

    Args:
      updates: pytree of :math:`g_t`; ``None`` entries stay ``None``.
      moments: pytree of :math:`m_{t-1}` with the structure of ``updates``.
      decay: :math:`\beta`, a scalar.
      order: :math:`p`, a scalar.

    Returns:
      The pytree of :math:`m_t` (real for complex ``g`` when ``m`` is real).
    """
    return _map_unless_none(lambda g, t: (1 - decay) * _power_of_modulus(g, order) + decay * t, updates, moments)


@functools.partial(jax.jit, inline=True)
def tree_bias_correction(moment, decay, count):
    r"""Removes the zero-initialisation bias of an EMA: :math:`\hat m = m / (1 - \beta^{t})`.

    The factor :math:`1 - \beta^t` is computed in the precision of ``decay`` and ``count`` (float32
    for Python floats), and only then cast to each leaf's dtype for the division: computing
    :math:`\beta^t` in bfloat16 would round it to 1 and divide by zero. So bfloat16 moments stay
    bfloat16 and finite. As ``count`` grows the correction tends to a no-op. The function is
    jitted (inlined into an enclosing jit).

    Args:
      moment: pytree of EMA values :math:`m_t`.
      decay: :math:`\beta`, a scalar.
      count: :math:`t`, the number of EMA updates so far (``count=0`` divides by zero).

    Returns:
      A pytree with the structure and dtypes of ``moment``.
    """
    correction = 1 - decay**count
    return jax.tree.map(lambda t: t / correction.astype(t.dtype), moment)


def tree_where(condition, tree_x, tree_y):
    """Selects leaf-wise with :func:`jax.numpy.where`: ``x`` where ``condition`` holds, else ``y``.

    Args:
      condition: a boolean scalar (or an array broadcastable against every leaf).
      tree_x: pytree chosen where ``condition`` is true.
      tree_y: pytree with the structure of ``tree_x``, chosen elsewhere.

    Returns:
      A pytree with the structure of ``tree_x`` (dtypes promoted between ``x`` and ``y``).
    """
    return jax.tree.map(lambda x, y: jnp.where(condition, x, y), tree_x, tree_y)


def tree_allclose(
    a: Any,
    b: Any,
    rtol: jax.typing.ArrayLike = 1e-05,
    atol: jax.typing.ArrayLike = 1e-08,
    equal_nan: bool = False,
):
    r"""Whether every leaf pair satisfies :func:`jax.numpy.allclose`: :math:`|a - b| \le atol + rtol |b|`.

    Args:
      a: a pytree.
      b: a pytree with the structure of ``a``.
      rtol: relative tolerance.
      atol: absolute tolerance.
      equal_nan: whether NaNs in the same place count as equal.

    Returns:
      The conjunction over leaves: a boolean 0-d array, or the Python ``True`` for an empty tree.
    """
    verdicts = jax.tree.leaves(
        jax.tree.map(lambda x, y: jnp.allclose(x, y, rtol=rtol, atol=atol, equal_nan=equal_nan), a, b)
    )
    return functools.reduce(operator.and_, verdicts, True)
