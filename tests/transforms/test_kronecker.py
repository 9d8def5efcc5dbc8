"""The Kronecker-factor piece (optcompose/transforms/_kronecker.py) against NumPy, on tiny shapes.

Layouts (merging, blocking, which dimensions get a factor), blocks in and out (padding exact),
Gram matrices per block, mode products, inverse roots (damped, finite on zero and rank-deficient
factors), eigenbases (descending, orthonormal) and SOAP's power-step refresh, complex inputs; on
CPU every decomposition of Shampoo and SOAP is one LAPACK call per matrix (a batched call can hang:
``per_matrix``).
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_finite, assert_trees_close

from optcompose.optimizers._preconditioned import shampoo, soap
from optcompose.transforms._kronecker import (
    eigenbasis,
    factor_grams,
    from_blocks,
    inverse_root,
    kronecker_layout,
    merge_dims,
    mode_product,
    per_matrix,
    precondition,
    refresh_eigenbasis,
    to_blocks,
)

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "shape, limit, merged",
    [
        ((3, 3, 64, 128), 1024, (576, 128)),
        ((1, 1), 10, (1,)),
        ((1, 5, 1, 7), 40, (35,)),
        ((2, 3, 2, 2), 4, (2, 3, 4)),
        ((5000, 3), 4096, (5000, 3)),
        ((7,), 4, (7,)),
    ],
)
def test_merge_dims(shape, limit, merged):
    assert merge_dims(shape, limit) == merged


def test_layouts():
    layout = kronecker_layout((3, 4), max_dim=10, block_size=2)
    assert (layout.merged, layout.block, layout.grid, layout.preconditioned) == ((3, 4), (2, 2), (2, 2), (True, True))
    assert layout.factor_shapes == ((4, 2, 2), (4, 2, 2))
    one_sided = kronecker_layout((3, 40), max_dim=10, block_size=2)
    assert one_sided.preconditioned == (True, False) and one_sided.blocked_shape == (2, 2, 40)
    assert kronecker_layout((5,), max_dim=10).factor_axes == ()
    assert kronecker_layout((5,), max_dim=10, precondition_1d=True).factor_shapes == ((1, 5, 5),)
    assert kronecker_layout((), max_dim=10).factor_axes == ()
    assert kronecker_layout((1, 6), max_dim=10).preconditioned == (False, True)  # a size-1 dim: no factor
    four_d = kronecker_layout((2, 3, 2, 2), max_dim=10)
    assert four_d.factor_shapes == ((1, 2, 2), (1, 3, 3), (1, 2, 2), (1, 2, 2))
    assert kronecker_layout((2, 3, 2, 2), max_dim=4, merge=True).merged == (2, 3, 4)


@pytest.mark.parametrize("shape, block", [((3, 4), 2), ((5, 2, 3), 2), ((7,), 3), ((), 2), ((2, 3, 2, 2), 2)])
def test_blocks_round_trip_and_equal_numpy_slices(shape, block):
    x = RNG.normal(size=shape).astype(np.float32)
    layout = kronecker_layout(shape, max_dim=100, block_size=block, precondition_1d=True)
    blocks = to_blocks(jnp.asarray(x), layout)
    assert blocks.shape == layout.blocked_shape
    assert_trees_close(from_blocks(blocks, layout), jnp.asarray(x), exact=True)
    if shape:  # block 0 is the corner slice, zero-padded
        corner = x[tuple(slice(0, b) for b in layout.block)]
        padded = np.zeros(layout.block, np.float32)
        padded[tuple(slice(0, s) for s in corner.shape)] = corner
        np.testing.assert_array_equal(np.asarray(blocks[0]), padded)


def test_grams_and_mode_products_match_numpy():
    x = RNG.normal(size=(2, 3, 4))
    layout = kronecker_layout(x.shape, max_dim=10)
    blocks = to_blocks(jnp.asarray(x, jnp.float32), layout)
    grams = factor_grams(blocks, layout)
    for axis, gram in enumerate(grams):
        unfolded = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
        np.testing.assert_allclose(np.asarray(gram[0]), unfolded @ unfolded.T, rtol=1e-5, atol=1e-5)
    m = RNG.normal(size=(3, 3))
    product = mode_product(blocks, jnp.asarray(m, jnp.float32)[None], 1)
    np.testing.assert_allclose(np.asarray(product[0]), np.einsum("ij,ajb->aib", m, x), rtol=1e-5, atol=1e-5)


def test_inverse_root_matches_the_definition():
    a = RNG.normal(size=(4, 6))
    s = a @ a.T
    root = inverse_root(jnp.asarray(s[None], jnp.float32), 4, jnp.asarray(1e-3, jnp.float32))[0]
    lam, v = np.linalg.eigh(s)
    expected = (v * (lam + 1e-3 * lam.max()) ** -0.25) @ v.T
    np.testing.assert_allclose(root, expected, rtol=2e-4, atol=2e-5)
    absolute = inverse_root(jnp.asarray(s[None], jnp.float32), 2, jnp.asarray(0.5, jnp.float32), relative=False)
    np.testing.assert_allclose(np.asarray(absolute[0]), (v * (lam + 0.5) ** -0.5) @ v.T, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("matrix", ["zero", "rank_one", "negative_rounding"])
def test_inverse_root_is_finite_on_singular_factors(matrix):
    a = RNG.normal(size=(5, 1))
    s = {"zero": np.zeros((5, 5)), "rank_one": a @ a.T, "negative_rounding": a @ a.T - 1e-7 * np.eye(5)}[matrix]
    for eps in (0.0, 1e-6):
        root = inverse_root(jnp.asarray(s[None], jnp.float32), 4, jnp.asarray(eps, jnp.float32))
        assert_finite(root)


def test_eigenbasis_is_orthonormal_and_descending():
    a = RNG.normal(size=(2, 4, 4))
    s = jnp.asarray(a @ np.swapaxes(a, 1, 2), jnp.float32)
    q = eigenbasis(s)
    eye = jnp.broadcast_to(jnp.eye(4), (2, 4, 4))
    assert_trees_close(jnp.swapaxes(q, 1, 2) @ q, eye, atol=1e-5)
    values = jnp.einsum("bij,bjk,bki->bi", jnp.swapaxes(q, 1, 2), s, q)
    assert bool(jnp.all(values[:, :-1] >= values[:, 1:]))


def test_refresh_sorts_by_estimated_eigenvalue_and_converges():
    """From the eigenbasis in ascending order, the refresh sorts it (order = reversed) and keeps it
    (up to signs); repeated refreshes from a random basis approach the eigenbasis (power iteration)."""
    a = RNG.normal(size=(4, 4))
    s = jnp.asarray((a @ a.T)[None], jnp.float32)
    ascending = eigenbasis(s)[..., ::-1]
    q, order = refresh_eigenbasis(s, ascending)
    np.testing.assert_array_equal(np.asarray(order[0]), [3, 2, 1, 0])
    assert_trees_close(jnp.abs(q), jnp.abs(eigenbasis(s)), atol=1e-4)
    q = jnp.asarray(np.linalg.qr(RNG.normal(size=(4, 4)))[0][None], jnp.float32)
    for _ in range(200):
        q, _ = refresh_eigenbasis(s, q)
    assert_trees_close(jnp.abs(q), jnp.abs(eigenbasis(s)), atol=2e-3)


def test_projection_and_back_is_the_identity():
    x = jnp.asarray(RNG.normal(size=(3, 4)), jnp.float32)
    layout = kronecker_layout((3, 4), max_dim=10)
    bases = [eigenbasis(g) for g in factor_grams(to_blocks(x, layout), layout)]
    rotated = precondition(to_blocks(x, layout), bases, layout, adjoint=True)
    back = from_blocks(precondition(rotated, bases, layout), layout)
    assert_trees_close(back, x, atol=1e-5)
    # In its own eigenbasis a matrix is diagonal: Q_L^T G Q_R has only the singular values.
    assert float(jnp.max(jnp.abs(rotated[0] * (1.0 - jnp.eye(3, 4))))) < 1e-4


def test_complex_factors_are_hermitian_and_phase_invariant():
    x = RNG.normal(size=(3, 4)) + 1j * RNG.normal(size=(3, 4))
    layout = kronecker_layout((3, 4), max_dim=10)
    grams = factor_grams(to_blocks(jnp.asarray(x, jnp.complex64), layout), layout)
    rotated = factor_grams(to_blocks(jnp.asarray(np.exp(0.7j) * x, jnp.complex64), layout), layout)
    for gram, other in zip(grams, rotated, strict=True):
        assert_trees_close(gram, jnp.conj(jnp.swapaxes(gram, 1, 2)), atol=1e-5)
        assert_trees_close(gram, other, atol=1e-5)
    root = inverse_root(grams[0], 4, jnp.asarray(1e-3, jnp.float32))
    assert root.dtype == jnp.complex64
    assert_finite(root)


@pytest.mark.parametrize("batch", [(), (1,), (3,), (2, 3)])
def test_per_matrix_equals_the_batched_call_bit_for_bit(batch):
    a = RNG.normal(size=(*batch, 5, 5))
    s = jnp.asarray(a @ np.swapaxes(a, -1, -2), jnp.float32)
    for fn in (jnp.linalg.eigh, lambda m: jnp.linalg.qr(m)[0]):
        mapped, batched = jax.jit(lambda m, fn=fn: per_matrix(fn, m))(s), jax.jit(fn)(s)
        for x, y in zip(jax.tree.leaves(mapped), jax.tree.leaves(batched), strict=True):
            assert x.shape == y.shape
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_per_matrix_is_differentiable_and_vmaps_into_its_loop():
    a = RNG.normal(size=(2, 3, 4, 4))
    s = jnp.asarray(a @ np.swapaxes(a, -1, -2), jnp.float32)
    loss = lambda fn: lambda m: jnp.sum(fn(m)[0] ** 2) + jnp.sum(jnp.abs(fn(m)[1][..., 0, :]))  # noqa: E731
    ours, plain = loss(lambda m: per_matrix(jnp.linalg.eigh, m)), loss(jnp.linalg.eigh)
    np.testing.assert_allclose(jax.grad(ours)(s), jax.grad(plain)(s), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.vmap(jax.grad(ours))(s), jax.grad(plain)(s), rtol=1e-5, atol=1e-5)
    tangent = jnp.ones_like(s)
    np.testing.assert_allclose(
        jax.jvp(ours, (s,), (tangent,))[1], jax.jvp(plain, (s,), (tangent,))[1], rtol=1e-5, atol=1e-4
    )
    for nested in (
        jax.vmap(lambda m: per_matrix(jnp.linalg.eigh, m)[0]),
        jax.vmap(jax.vmap(lambda m: per_matrix(jnp.linalg.eigh, m)[0])),
    ):
        np.testing.assert_array_equal(np.asarray(nested(s)), np.asarray(jnp.linalg.eigh(s)[0]))


def _lapack_calls(compiled_text):
    """(target, result shape) of every LAPACK custom call of a compiled CPU program."""
    pattern = re.compile(r"= \(?\w+\[([\d,]*)\][^\n]*custom-call\([^\n]*custom_call_target=\"(lapack_\w+)\"")
    return [(target, tuple(int(d) for d in dims.split(",") if d)) for dims, target in pattern.findall(compiled_text)]


@pytest.mark.parametrize("vmapped", [False, True], ids=["plain", "vmapped"])
@pytest.mark.parametrize("name", ["shampoo", "soap"])
def test_cpu_decompositions_take_one_matrix_per_lapack_call(name, vmapped):
    """jaxlib's CPU LAPACK kernels (0.10) split a batch over XLA's intra-op pool and block the calling
    pool thread until it is done: as many batched calls at once as the pool has threads (2 on a
    2-core machine) wait on each other forever. examples/frontier.py --quick hung so under load (both
    pool threads in ``lapack_ssyevd_ffi`` -> ``jax::ParallelBatchMap`` -> ``BlockingCounter::Wait``,
    Shampoo's ``L`` and ``R`` of a leaf cut into blocks). So no call may see more than one matrix
    (SOAP does not cut into blocks: its factors are ``(1, n, n)``), also under ``jax.vmap`` over
    trials, as the arena's sweeps run it (that hung the arena: every call a batch of trials)."""
    if jax.default_backend() != "cpu":
        pytest.skip("the CPU program is the one checked")
    params = {"w": jnp.ones((6, 4), jnp.float32), "conv": jnp.ones((3, 3, 2, 4), jnp.float32)}
    tx = (
        shampoo(0.1, block_size=2, start_preconditioning_step=0, preconditioning_compute_steps=2)
        if name == "shampoo"
        else soap(0.1, precondition_frequency=2)
    )
    state = tx.init(params)
    update = tx.update
    if vmapped:
        params, state = jax.tree.map(lambda x: jnp.stack([x, x, x]), (params, state))
        update = jax.vmap(tx.update)
    text = jax.jit(update).lower(params, state, params).compile().as_text()
    calls = _lapack_calls(text)
    expected = {"lapack_ssyevd_ffi"} | ({"lapack_sgeqrf_ffi", "lapack_sorgqr_ffi"} if name == "soap" else set())
    assert {target for target, _ in calls} == expected, calls
    batched = [(target, shape) for target, shape in calls if math.prod(shape[:-2]) > 1]
    assert not batched, f"batched LAPACK calls on CPU (they can deadlock XLA's thread pool): {batched}"
