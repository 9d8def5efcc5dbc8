"""Kronecker-factored preconditioning: the piece Shampoo and SOAP share.

A gradient tensor ``G`` of order ``k`` gets one factor per dimension ``i``: the Gram matrix of its
mode-``i`` unfolding, ``S_i = G_(i) G_(i)^H`` (``G G^T`` and ``G^T G`` for a matrix, Gupta et al.
2018). Shampoo applies inverse roots of the accumulated factors, SOAP rotates into their
eigenbases. This module holds what both need, as pure ``jax.numpy`` on static shapes:

* **the layout** (``kronecker_layout``): which dimensions get a factor, after optionally merging
  small adjacent dimensions (``merge_dims``) and cutting large ones into blocks of ``block_size``.
  A dimension gets no factor (identity) when it is 1, larger than ``max_dim``, or belongs to a
  leaf of order < 2 (unless ``precondition_1d``). Blocks are independent tensors with their own
  factors (Anil et al. 2020, Section 5): the tensor is zero-padded to whole blocks and the blocks
  stacked on a leading axis, so every factor of a leaf is one ``(blocks, b, b)`` array and every
  matrix routine runs batched. Zero padding is exact for Shampoo: a padded block's factors are
  ``diag(S, 0)``, whose damped inverse root restricted to the real rows is that of ``S``.
* **statistics** (``factor_grams``): the ``S_i`` of every block, by one batched matmul each;
* **mode products** (``mode_product``, ``precondition``): ``G x_i M_i`` for every factor;
* **inverse roots** (``inverse_root``): ``(S + eps * lambda_max I)^(-1/p)`` from ``eigh``, the
  eigenvalues clipped at 0 (rounding makes tiny ones negative) and floored at the dtype's smallest
  normal number so a zero factor gives a large finite root instead of ``inf``;
* **eigenbases** (``eigenbasis``, ``refresh_eigenbasis``): ``eigh`` with the eigenvalues in
  descending order, and SOAP's cheap refresh: one power-iteration step ``S Q`` on the columns
  sorted by their estimated eigenvalues ``diag(Q^H S Q)``, then a QR factorization.

The decompositions (``eigh``, ``qr``) run one matrix per LAPACK call on CPU (``per_matrix``):
jaxlib's CPU LAPACK kernels (0.10) split a batch over XLA's intra-op thread pool and block that
thread until the pieces finish, so as many batched calls running at once as the pool has threads
(two on a 2-core machine: two factors of one leaf, or two leaves) wait on each other forever.

Complex tensors use conjugate transposes throughout, so every factor is Hermitian and a global
phase of ``G`` leaves the factors unchanged. All matrix products run at ``Precision.HIGHEST``
(float32 products on GPUs would otherwise use TF32). The routines work in the dtype they are
given; the callers widen to float32 (float64 for float64 parameters) first.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap

HIGHEST = jax.lax.Precision.HIGHEST


def merge_dims(shape: Sequence[int], limit: int) -> tuple[int, ...]:
    """Greedily merges adjacent dimensions while their product stays ``<= limit``.

    Left to right, a running product absorbs the next dimension if the result fits, otherwise it
    is emitted and a new product starts; dimensions of size 1 disappear into their neighbours.
    ``(3, 3, 64, 128)`` with ``limit=1024`` becomes ``(576, 128)``; ``(1, 1)`` becomes ``(1,)``.
    This is the rule of the SOAP authors' ``merge_dims`` and of distributed Shampoo's
    ``merge_small_dims``.
    """
    merged: list[int] = []
    running = 1
    for d in shape:
        if running * d <= limit:
            running *= d
            continue
        if running > 1:
            merged.append(running)
        running = d
    if running > 1 or not merged:
        merged.append(running)
    return tuple(merged)


class KroneckerLayout(NamedTuple):
    """How one leaf is viewed for Kronecker-factored preconditioning (static: plain Python ints).

    Attributes:
      shape: the leaf's shape.
      merged: the shape it is reshaped to (``shape`` unless dimensions are merged).
      block: the block edge per merged dimension (the dimension itself when not blocked).
      grid: the number of blocks per merged dimension.
      preconditioned: per merged dimension, whether it has a factor.
    """

    shape: tuple[int, ...]
    merged: tuple[int, ...]
    block: tuple[int, ...]
    grid: tuple[int, ...]
    preconditioned: tuple[bool, ...]

    @property
    def num_blocks(self) -> int:
        return math.prod(self.grid)

    @property
    def factor_axes(self) -> tuple[int, ...]:
        """The merged dimensions that have a factor, in order."""
        return tuple(i for i, p in enumerate(self.preconditioned) if p)

    @property
    def factor_shapes(self) -> tuple[tuple[int, int, int], ...]:
        """``(num_blocks, b, b)`` per factor."""
        return tuple((self.num_blocks, self.block[i], self.block[i]) for i in self.factor_axes)

    @property
    def blocked_shape(self) -> tuple[int, ...]:
        """The shape of ``to_blocks(x)``: ``(num_blocks, *block)``."""
        return (self.num_blocks, *self.block)


def kronecker_layout(
    shape: Sequence[int],
    *,
    max_dim: int,
    block_size: int | None = None,
    merge: bool = False,
    precondition_1d: bool = False,
) -> KroneckerLayout:
    """The layout of a leaf of ``shape`` (see the module docstring).

    Args:
      shape: the leaf's shape.
      max_dim: dimensions above this get no factor (checked before blocking, after merging).
      block_size: preconditioned dimensions above this are cut into blocks of this size (the last
        one zero-padded); ``None``: no blocking.
      merge: merge small adjacent dimensions first (``merge_dims(shape, max_dim)``).
      precondition_1d: give 1-D leaves a factor too (0-D leaves never get one).
    """
    shape = tuple(int(d) for d in shape)
    merged = merge_dims(shape, max_dim) if merge and shape else shape
    eligible = len(shape) >= 2 or (precondition_1d and len(shape) == 1)
    preconditioned = tuple(bool(eligible and 1 < d <= max_dim) for d in merged)
    block, grid = [], []
    for d, p in zip(merged, preconditioned, strict=True):
        b = min(d, block_size) if (p and block_size is not None) else d
        block.append(b)
        grid.append(-(-d // b) if b else 1)
    return KroneckerLayout(shape, merged, tuple(block), tuple(grid), preconditioned)


def to_blocks(x: jax.Array, layout: KroneckerLayout) -> jax.Array:
    """``x`` (of ``layout.shape``) as ``(num_blocks, *block)``: merged, zero-padded, blocks stacked."""
    x = jnp.reshape(x, layout.merged)
    k = len(layout.merged)
    padding = [(0, n * b - d) for d, b, n in zip(layout.merged, layout.block, layout.grid, strict=True)]
    if any(high for _, high in padding):
        x = jnp.pad(x, padding)
    interleaved = [size for pair in zip(layout.grid, layout.block, strict=True) for size in pair]
    x = jnp.reshape(x, interleaved)
    x = jnp.transpose(x, [*range(0, 2 * k, 2), *range(1, 2 * k, 2)])
    return jnp.reshape(x, layout.blocked_shape)


def from_blocks(blocks: jax.Array, layout: KroneckerLayout) -> jax.Array:
    """The inverse of ``to_blocks``: the stacked blocks back in ``layout.shape`` (padding dropped)."""
    k = len(layout.merged)
    x = jnp.reshape(blocks, (*layout.grid, *layout.block))
    x = jnp.transpose(x, [axis for i in range(k) for axis in (i, k + i)])
    x = jnp.reshape(x, [n * b for n, b in zip(layout.grid, layout.block, strict=True)])
    if any(n * b != d for d, b, n in zip(layout.merged, layout.block, layout.grid, strict=True)):
        x = x[tuple(slice(0, d) for d in layout.merged)]
    return jnp.reshape(x, layout.shape)


def _adjoint(m: jax.Array) -> jax.Array:
    return jnp.conj(jnp.swapaxes(m, -1, -2))


def gram(blocks: jax.Array, axis: int) -> jax.Array:
    """``X_(axis) X_(axis)^H`` per block: ``(num_blocks, b, b)`` for the block axis ``axis`` (0-based,
    not counting the leading block axis)."""
    x = jnp.moveaxis(blocks, axis + 1, 1)
    x = jnp.reshape(x, (x.shape[0], x.shape[1], -1))
    return jnp.matmul(x, _adjoint(x), precision=HIGHEST)


def factor_grams(blocks: jax.Array, layout: KroneckerLayout) -> tuple[jax.Array, ...]:
    """The Gram matrix of every factor of ``layout``, in order."""
    return tuple(gram(blocks, axis) for axis in layout.factor_axes)


def mode_product(blocks: jax.Array, matrix: jax.Array, axis: int) -> jax.Array:
    """``blocks x_axis matrix``: each block's mode-``axis`` unfolding left-multiplied by its matrix."""
    x = jnp.moveaxis(blocks, axis + 1, -1)
    y = jnp.einsum("b...j,bij->b...i", x, matrix, precision=HIGHEST)
    return jnp.moveaxis(y, -1, axis + 1)


def precondition(
    blocks: jax.Array, matrices: Sequence[jax.Array], layout: KroneckerLayout, *, adjoint: bool = False
) -> jax.Array:
    """``blocks`` times every factor matrix on its dimension (``adjoint``: their conjugate transposes).

    With inverse roots this is Shampoo's ``L^(-1/4) G R^(-1/4)``; with eigenbases ``Q``,
    ``adjoint=True`` projects into the eigenbasis (``Q_L^H G Q_R``) and ``adjoint=False`` back.
    """
    for axis, matrix in zip(layout.factor_axes, matrices, strict=True):
        blocks = mode_product(blocks, _adjoint(matrix) if adjoint else matrix, axis)
    return blocks


def _hermitian(m: jax.Array) -> jax.Array:
    return 0.5 * (m + _adjoint(m))


def per_matrix(fn: Callable[[jax.Array], Any], matrix: jax.Array) -> Any:
    """``fn`` (a LAPACK routine of a batch ``(..., m, n)``) with one call per matrix on CPU.

    jaxlib's CPU LAPACK kernels (jaxlib 0.10) cut a batch into chunks, schedule them on XLA's
    intra-op pool and block the calling pool thread until they are done; when as many such calls
    run concurrently as the pool has threads, every thread waits for chunks no thread is left to
    run, and the program hangs (seen: Shampoo's ``L`` and ``R`` of one leaf, each a batch of blocks,
    on a loaded 2-core machine; and every single-matrix call turned into a batch by ``jax.vmap``
    over trials in the arena's sweeps). A call on a single matrix runs inline, so on CPU the batch
    goes through ``lax.map`` (a loop, one matrix per call), and ``jax.vmap`` of this function adds
    its axis to that loop instead of to the LAPACK call (a ``custom_vmap`` rule); other platforms
    keep the batched call. Forward- and reverse-mode derivatives are ``fn``'s own (a
    ``custom_jvp`` whose rule differentiates the loop); only a ``vmap`` of a derivative batches
    the LAPACK call again.
    """
    return _one_matrix_per_call(fn)(matrix)


def _loop_on_cpu(fn: Callable[[jax.Array], Any], matrix: jax.Array) -> Any:
    batch = matrix.shape[:-2]
    if math.prod(batch) <= 1:
        return fn(matrix)

    def one_at_a_time(m):
        out = jax.lax.map(fn, m.reshape(-1, *m.shape[-2:]))
        return jax.tree.map(lambda x: x.reshape(*batch, *x.shape[1:]), out)

    return jax.lax.platform_dependent(matrix, cpu=one_at_a_time, default=fn)


@functools.cache
def _one_matrix_per_call(fn: Callable[[jax.Array], Any]) -> Callable[[jax.Array], Any]:
    @custom_vmap
    def looped(matrix):
        return _loop_on_cpu(fn, matrix)

    @looped.def_vmap
    def _batched(axis_size, in_batched, matrix):
        del axis_size
        (batched,) = in_batched
        # A vmapped axis comes first (custom_vmap's convention), so the loop takes it as batch.
        out = looped(matrix)
        return out, jax.tree.map(lambda _: batched, out)

    @jax.custom_jvp
    def differentiable(matrix):
        return looped(matrix)

    @differentiable.defjvp
    def _jvp(primals, tangents):
        return jax.jvp(functools.partial(_loop_on_cpu, fn), primals, tangents)

    return differentiable


def _q_factor(matrix: jax.Array) -> jax.Array:
    return jnp.linalg.qr(matrix)[0]


def _eigh(matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
    return tuple(per_matrix(jnp.linalg.eigh, _hermitian(matrix)))


def inverse_root(matrix: jax.Array, p: int, eps: jax.Array, *, relative: bool = True) -> jax.Array:
    """``(S + d I)^(-1/p)`` of a batch of Hermitian PSD matrices, by ``eigh``.

    ``d = eps * lambda_max`` (``relative``, distributed Shampoo's default) or ``eps``. Eigenvalues
    are clipped at 0 before damping and floored at the smallest normal number after, so the result
    is finite for any finite ``S``, zero included.
    """
    values, vectors = _eigh(matrix)
    values = jnp.maximum(values, 0.0)
    damping = eps * jnp.max(values, axis=-1, keepdims=True) if relative else eps
    floor = jnp.finfo(values.dtype).tiny
    scaled = jnp.power(jnp.maximum(values + damping, floor), -1.0 / p)
    return jnp.matmul(vectors * scaled[..., None, :].astype(vectors.dtype), _adjoint(vectors), precision=HIGHEST)


def eigenbasis(matrix: jax.Array) -> jax.Array:
    """The eigenvectors of a batch of Hermitian matrices, as columns, eigenvalues descending."""
    _, vectors = _eigh(matrix)
    return vectors[..., ::-1]


def refresh_eigenbasis(matrix: jax.Array, basis: jax.Array) -> tuple[jax.Array, jax.Array]:
    """SOAP's eigenbasis update (Vyas et al. 2024, Algorithm 4): one power step and a QR.

    The columns of ``basis`` are sorted by their estimated eigenvalues ``diag(Q^H S Q)``
    (descending), multiplied by ``S`` and orthonormalized: ``Q' = qr(S Q[:, order])``. Returns
    ``(Q', order)``; ``order`` (per block) permutes whatever is stored in the old basis (SOAP's
    second moment) to the new column order.
    """
    product = jnp.matmul(matrix, basis, precision=HIGHEST)
    estimate = jnp.real(jnp.sum(jnp.conj(basis) * product, axis=-2))
    order = jnp.argsort(-estimate, axis=-1, stable=True)
    power = jnp.take_along_axis(product, order[..., None, :], axis=-1)
    q = per_matrix(_q_factor, power)
    return q, order
