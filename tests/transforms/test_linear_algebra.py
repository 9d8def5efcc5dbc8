"""power_iteration, matrix_inverse_pth_root, nnls and multi_normal against Optax, NumPy, SciPy and torch.

torch mappings: ``power_iteration(A)[0]`` is ``torch.linalg.eigvalsh(A)[-1]`` for a symmetric PSD
``A``; ``multi_normal(loc, log_scale).log_prob(x)`` is
``torch.distributions.Normal(loc, exp(log_scale)).log_prob(x).sum()``.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize
import torch

from optcompose.transforms._linear_algebra import matrix_inverse_pth_root, multi_normal, nnls, power_iteration

RNG = np.random.default_rng(0)
M = RNG.normal(size=(5, 5))
SPD = jnp.asarray(M @ M.T + 0.5 * np.eye(5), jnp.float32)


def test_signatures_match_optax():
    for ours, theirs in ((power_iteration, optax.power_iteration), (matrix_inverse_pth_root,
                         optax.matrix_inverse_pth_root), (nnls, optax.nnls), (multi_normal, optax.multi_normal)):
        a, b = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
        assert [(n, p.kind, p.default) for n, p in a.items()] == [(n, p.kind, p.default) for n, p in b.items()]


def test_power_iteration_matches_optax_numpy_and_torch():
    value, vector = jax.jit(power_iteration)(SPD)
    their_value, their_vector = optax.power_iteration(SPD)
    np.testing.assert_allclose(value, their_value, rtol=1e-6)
    np.testing.assert_allclose(vector, their_vector, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(value), torch.linalg.eigvalsh(torch.tensor(np.asarray(SPD))).numpy()[-1],
                               rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(np.abs(vector), np.abs(np.linalg.eigh(np.asarray(SPD, np.float64))[1][:, -1]),
                               rtol=1e-3, atol=1e-4)  # fmt: skip
    # A matrix-vector product on pytrees, with v0.
    mvp = lambda v: {"a": 2.0 * v["a"], "b": 3.0 * v["b"]}
    value, _ = power_iteration(mvp, v0={"a": jnp.ones(2), "b": jnp.ones(1)})
    np.testing.assert_allclose(value, 3.0, rtol=1e-5)
    with pytest.raises(ValueError, match="v0"):
        power_iteration(mvp)
    with pytest.raises(ValueError, match="square"):
        power_iteration(jnp.ones((2, 3)))


@pytest.mark.slow
def test_matrix_inverse_pth_root_matches_optax_and_numpy():
    roots = (1, 2, 4, 8)
    ours = jax.jit(lambda m: [matrix_inverse_pth_root(m, p) for p in roots])(SPD)
    theirs = jax.jit(lambda m: [optax.matrix_inverse_pth_root(m, p) for p in roots])(SPD)
    w, v = np.linalg.eigh(np.asarray(SPD, np.float64))
    for p, (root, error), (their_root, _) in zip(roots, ours, theirs, strict=True):
        np.testing.assert_allclose(root, their_root, rtol=1e-5, atol=1e-6)
        want = (v * (w + 1e-6 * w.max()) ** (-1.0 / p)) @ v.T
        np.testing.assert_allclose(np.asarray(root), want, rtol=2e-3, atol=2e-4)
        assert float(error) < 1e-3
    one, _ = matrix_inverse_pth_root(jnp.array([[4.0]]), 2)
    np.testing.assert_allclose(one, [[0.5]], rtol=1e-5)
    with pytest.raises(ValueError, match="p must be"):
        matrix_inverse_pth_root(SPD, 3)


def test_nnls_matches_optax_and_scipy():
    A = jnp.asarray(RNG.normal(size=(6, 4)), jnp.float32)
    b = jnp.asarray(RNG.normal(size=(6,)), jnp.float32)
    x = jax.jit(nnls, static_argnums=2)(A, b, 2000)
    np.testing.assert_allclose(x, optax.nnls(A, b, 2000), rtol=1e-5, atol=1e-6)
    want, _ = scipy.optimize.nnls(np.asarray(A, np.float64), np.asarray(b, np.float64))
    np.testing.assert_allclose(np.asarray(x), want, atol=1e-4)
    assert float(jnp.min(x)) >= 0.0
    B = jnp.stack([b, -b], axis=1)
    assert nnls(A, B, 10).shape == (4, 2)
    np.testing.assert_array_equal(nnls(jnp.zeros((3, 2)), jnp.ones(3), 5), 0.0)  # L = 0 is treated as 1
    with pytest.raises(ValueError, match="shape"):
        nnls(A, jnp.ones(5), 10)


def test_multi_normal_matches_optax_and_torch():
    loc, log_scale = jnp.array([0.5, -1.0]), jnp.array([0.1, -0.3])
    dist, theirs = multi_normal(loc, log_scale), optax.multi_normal(loc, log_scale)
    key = jax.random.PRNGKey(0)
    np.testing.assert_array_equal(dist.sample((3,), key), theirs.sample((3,), key))
    x = jnp.array([[0.2, -0.5], [1.0, 1.0]])
    np.testing.assert_allclose(dist.log_prob(x), theirs.log_prob(x), rtol=1e-6)
    normal = torch.distributions.Normal(torch.tensor(np.asarray(loc)), torch.tensor(np.exp(np.asarray(log_scale))))
    np.testing.assert_allclose(dist.log_prob(x), normal.log_prob(torch.tensor(np.asarray(x))).sum(-1).numpy(),
                               rtol=1e-5)  # fmt: skip
    assert [p.shape for p in dist.params] == [(2,), (2,)] and dist.log_scale is not None
