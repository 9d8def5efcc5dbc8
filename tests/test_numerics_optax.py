"""Optax's public numerics helpers (optcompose/_numerics_optax.py), against Optax's own."""

from __future__ import annotations

import adaptive_checks as ac
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optcompose import _numerics_optax as nx

TREE = {"a": jnp.array([1.5, -2.0, 0.25]), "b": jnp.array([[0.5, -1.0]]), "none": None}
MOMENT = {"a": jnp.array([0.1, 0.2, -0.3]), "b": jnp.array([[1.0, 2.0]]), "none": None}
COMPLEX = {"z": jnp.array([1 + 2j, -0.5j, 3.0], jnp.complex64)}
COMPLEX_MOMENT = {"z": jnp.array([0.5, 0.25, 1.0], jnp.complex64)}

NAMES = [
    "update_moment", "update_moment_per_elem_norm", "update_infinity_moment", "bias_correction", "safe_norm",
    "safe_root_mean_squares", "safe_increment", "safe_int32_increment", "scale_gradient",
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_signature_is_optax(name):
    ac.assert_same_signature(getattr(nx, name), getattr(optax, name))


@pytest.mark.parametrize("order", [1, 2, 3])
def test_moments_match_optax(order):
    for updates, moments in ((TREE, MOMENT), (COMPLEX, COMPLEX_MOMENT)):
        for ours, theirs in (
            (nx.update_moment, optax.update_moment),
            (nx.update_moment_per_elem_norm, optax.update_moment_per_elem_norm),
        ):
            ac.assert_close(ours(updates, moments, 0.9, order), theirs(updates, moments, 0.9, order))
    ac.assert_close(
        nx.update_infinity_moment(TREE, MOMENT, 0.9, 1e-3), optax.update_infinity_moment(TREE, MOMENT, 0.9, 1e-3)
    )
    ac.assert_close(nx.bias_correction(MOMENT, 0.9, jnp.asarray(3)), optax.bias_correction(MOMENT, 0.9, jnp.asarray(3)))


def test_none_updates_and_bfloat16():
    m = jnp.array([1.0, 2.0, 3.0])
    assert nx.update_moment(None, m, 1, 1) is None
    assert nx.update_moment_per_elem_norm(None, m, 1, 1) is None
    assert nx.update_infinity_moment(None, m, 1, 1) is None
    moments = jnp.logspace(-10, 10, num=21, dtype=jnp.bfloat16)
    for decay in (0.9, 0.999, 0.9995):
        for count in (1, 10, 1000):
            corrected = nx.bias_correction(moments, decay, jnp.asarray(count))
            assert corrected.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(corrected, np.float32)))


@pytest.mark.parametrize(
    "ord, axis, keepdims",
    [(None, None, False), (2, 1, True), (1, 0, False), (np.inf, None, False), ("fro", None, True), (-np.inf, 1, False)],
)
def test_safe_norm_matches_optax_with_zero_gradient_at_zero(ord, axis, keepdims):
    x = jnp.arange(12.0).reshape(3, 4) - 5.0
    for min_norm in (0.0, 3.0, 100.0):
        ac.assert_close(
            nx.safe_norm(x, min_norm, ord, axis, keepdims), optax.safe_norm(x, min_norm, ord, axis, keepdims)
        )
    jacobian = jax.jit(jax.jacfwd(lambda v, m: nx.safe_norm(v, m, ord=ord, axis=axis, keepdims=keepdims)))
    for min_norm in (0.0, 3.0):
        g = jacobian(jnp.zeros((3, 4)), jnp.asarray(min_norm))
        np.testing.assert_array_equal(g, jnp.zeros_like(g))


def test_safe_root_mean_squares():
    x = jnp.array([3.0, -4.0, 0.0, 1 + 0.0])
    for min_rms in (0.0, 1.0, 10.0):
        ac.assert_close(nx.safe_root_mean_squares(x, min_rms), optax.safe_root_mean_squares(x, min_rms))
    np.testing.assert_allclose(nx.safe_root_mean_squares(jnp.array([3j, 4.0]), 0.0), np.sqrt(12.5), rtol=1e-6)
    grad = jax.jit(jax.grad(nx.safe_root_mean_squares))
    for min_rms in (0.0, 3.0):
        assert float(grad(jnp.asarray(0.0), jnp.asarray(min_rms))) == 0.0


@pytest.mark.parametrize("dtype", ["int8", "int32", "uint8", "uint32", "float16", "bfloat16", "float32"])
def test_safe_increment(dtype):
    dtype = jnp.dtype(dtype)
    increment = jax.jit(nx.safe_increment)
    np.testing.assert_array_equal(increment(jnp.asarray(3, dtype)), jnp.asarray(4, dtype))
    largest = jnp.iinfo(dtype).max if jnp.issubdtype(dtype, jnp.integer) else jnp.finfo(dtype).max
    top = jnp.asarray(largest, dtype)
    assert increment(top) == top and increment(top).dtype == dtype
    assert nx.safe_int32_increment is nx.safe_increment


def test_safe_increment_64_bit():
    with jax.enable_x64(True):
        for dtype in (jnp.int64, jnp.uint64, jnp.float64):
            top = jnp.asarray(
                jnp.iinfo(dtype).max if jnp.issubdtype(dtype, jnp.integer) else jnp.finfo(dtype).max, dtype
            )
            assert nx.safe_increment(top) == top


@pytest.mark.parametrize("dtype", ["bool", "complex64"])
def test_safe_increment_refuses_other_dtypes(dtype):
    with pytest.raises(ValueError, match="safe_increment"):
        nx.safe_increment(jnp.asarray(1, dtype))


def test_scale_gradient():
    def f(x):
        return jnp.sum(nx.scale_gradient({"x": x}, 0.25)["x"] ** 2)

    x = jnp.array([1.0, -2.0])
    np.testing.assert_allclose(jax.grad(f)(x), 0.25 * 2 * x)
    assert nx.scale_gradient(TREE, 1.0) is TREE
    np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(nx.scale_gradient(x, 0.0) * 3))(x), 0.0)
    traced = jax.jit(jax.grad(lambda x, s: jnp.sum(nx.scale_gradient(x, s) * 3)))(x, jnp.asarray(0.5))
    np.testing.assert_allclose(traced, 1.5)
    np.testing.assert_array_equal(nx.scale_gradient(x, 7.0), x)
