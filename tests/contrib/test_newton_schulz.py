"""Newton–Schulz orthogonalization against NumPy (float64 to 1e-12), Optax's, and its algebra."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax.contrib._muon as optax_muon
import pytest
import reference_contrib as rc
from helpers import assert_trees_close

from optcompose.contrib._newton_schulz import (
    DEFAULT_NS_COEFFS,
    DION_NS_COEFFS,
    MuonDimensionNumbers,
    check_ns_coeffs,
    orthogonalize_via_newton_schulz,
)

RNG = np.random.default_rng(0)
WIDE, TALL = RNG.normal(size=(3, 5)), RNG.normal(size=(6, 4))


PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")
PRESETS = {"standard": DEFAULT_NS_COEFFS, "dion": DION_NS_COEFFS}


def _compare_with_optax(x, presets):
    """Float64: every preconditioning with every preset equals Optax's orthogonalize_via_newton_schulz
    to 1e-12 (one jitted program for both sides), and the default equals the NumPy iteration."""
    with jax.enable_x64(True):

        def both(x):
            out = {}
            for p in PRECONDITIONINGS:
                for name in presets:
                    args = (x, jnp.asarray(PRESETS[name], jnp.float64), 5, p)
                    theirs = optax_muon.orthogonalize_via_newton_schulz(*args)
                    out[p, name] = orthogonalize_via_newton_schulz(*args), theirs
            # The coefficients as the optimizer stores them (float32 data), as the NumPy iteration takes them.
            return out, orthogonalize_via_newton_schulz(x, jnp.asarray(DEFAULT_NS_COEFFS, jnp.float32))

        pairs, stored = jax.jit(both)(jnp.asarray(x))
        np.testing.assert_allclose(np.asarray(stored), rc.newton_schulz(x), rtol=1e-12, atol=1e-12)
        for key, (ours, theirs) in pairs.items():
            np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-12, atol=1e-12, err_msg=str(key))


def test_matches_numpy_and_optax_in_float64_every_preconditioning():
    _compare_with_optax(WIDE, ["standard"])


@pytest.mark.slow
def test_matches_optax_in_float64_tall_matrices_and_dion_coefficients():
    _compare_with_optax(TALL, ["standard", "dion"])
    _compare_with_optax(WIDE, ["dion"])


def test_float32_matches_numpy_and_keeps_singular_vectors():
    run = jax.jit(lambda x: orthogonalize_via_newton_schulz(x, jnp.asarray(DEFAULT_NS_COEFFS)))
    for x in (WIDE, TALL):
        got = np.asarray(run(jnp.asarray(x, jnp.float32)), np.float64)
        np.testing.assert_allclose(got, rc.newton_schulz(x), rtol=1e-5, atol=1e-5)
        u, _, vt = np.linalg.svd(x, full_matrices=False)
        singular = np.linalg.svd(got, compute_uv=False)
        assert np.all((singular > 0.6) & (singular < 1.3)), singular
        # A polynomial in X X^T keeps the singular vectors: U^T f(X) V is diagonal.
        core = u.T @ got @ vt.T
        np.testing.assert_allclose(core, np.diag(np.diag(core)), atol=1e-5)


def test_transpose_equivariance_and_batched_dimension_numbers():
    coeffs = jnp.asarray(DEFAULT_NS_COEFFS)
    stack = jnp.asarray(RNG.normal(size=(2, 3, 4)), jnp.float32)

    def variants(x, stack):
        ns = lambda m, dims=None: orthogonalize_via_newton_schulz(m, coeffs, dimension_numbers=dims)
        slices = jnp.stack([ns(stack[i]) for i in range(2)])
        batched = ns(stack, MuonDimensionNumbers(reduction_axis=1, output_axis=2))
        moved = jnp.moveaxis(ns(jnp.moveaxis(stack, 0, 2), MuonDimensionNumbers(0, 1)), 2, 0)  # (in, out, batch)
        return ns(x.T), ns(x).T, slices, batched, moved

    transposed, expected, slices, batched, moved = jax.jit(variants)(jnp.asarray(WIDE, jnp.float32), stack)
    assert_trees_close(transposed, expected)
    assert_trees_close(batched, slices)
    assert_trees_close(moved, slices)


def test_complex_matrix_uses_the_conjugate_transpose():
    z = jnp.asarray(WIDE + 1j * RNG.normal(size=WIDE.shape), jnp.complex64)
    got = np.asarray(orthogonalize_via_newton_schulz(z, jnp.asarray(DEFAULT_NS_COEFFS)))
    theirs = np.asarray(optax_muon.orthogonalize_via_newton_schulz(z, jnp.asarray(DEFAULT_NS_COEFFS)))
    np.testing.assert_allclose(got, theirs, rtol=1e-5, atol=1e-5)
    singular = np.linalg.svd(got, compute_uv=False)
    assert np.all((singular > 0.6) & (singular < 1.3)), singular


def test_edge_values_zero_huge_tiny():
    run = jax.jit(jax.vmap(lambda x: orthogonalize_via_newton_schulz(x, jnp.asarray(DEFAULT_NS_COEFFS))))
    got = np.asarray(run(jnp.asarray(np.stack([0 * WIDE, 1e30 * WIDE, 1e-30 * WIDE]), jnp.float32)))
    assert np.all(got[0] == 0)
    assert np.all(np.isfinite(got))


def test_bad_arguments_name_themselves():
    coeffs = jnp.asarray(DEFAULT_NS_COEFFS)
    with pytest.raises(ValueError, match="preconditioning"):
        orthogonalize_via_newton_schulz(jnp.ones((2, 2)), coeffs, preconditioning="qr")
    with pytest.raises(ValueError, match="dimension_numbers"):
        orthogonalize_via_newton_schulz(jnp.ones((2, 2, 2)), coeffs)
    with pytest.raises(ValueError, match="ns_coeffs"):
        orthogonalize_via_newton_schulz(jnp.ones((2, 2)), jnp.ones((4,)))
    with pytest.raises(ValueError, match="disjoint"):
        orthogonalize_via_newton_schulz(jnp.ones((2, 2)), coeffs, dimension_numbers=MuonDimensionNumbers(0, 0))
    with pytest.raises(ValueError, match="ns_coeffs"):
        check_ns_coeffs((1.0, 2.0), 5)
    with pytest.raises(ValueError, match="rows"):
        check_ns_coeffs(DION_NS_COEFFS, 3)
    with pytest.raises(ValueError, match="finite"):
        check_ns_coeffs((1.0, float("nan"), 1.0), 5)
