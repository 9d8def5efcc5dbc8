"""Euclidean projections (``optcompose/projections/_projections.py``).

Compared with Optax 0.2.8 on arrays and pytrees (value, structure, dtype, gradient; with and
without ``jax.jit``), with the defining properties checked directly (the result lies in the set, is
idempotent, and the simplex Jacobian is the sparsemax one), and finite gradients at the origin. No
PyTorch counterparts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from losses_helpers import _np, assert_close, compare_with_optax

from optcompose import projections

P = optax.projections
RNG = np.random.default_rng(10)
X = (2 * RNG.normal(size=(5,))).astype(np.float32)
X[0] = 0.0
TREE = {"w": (2 * RNG.normal(size=(2, 3))).astype(np.float32), "b": np.array([0.0, 1.5], np.float32)}
A = {"w": RNG.normal(size=(2, 3)).astype(np.float32), "b": RNG.normal(size=(2,)).astype(np.float32)}




def leaves(tree):
    return np.concatenate([_np(x).ravel() for x in jax.tree.leaves(tree)])


def test_non_negative_box_and_hypercube():
    ours, theirs = projections, P
    result, grad = compare_with_optax(
        ours.projection_non_negative, theirs.projection_non_negative, {"tree": ((TREE,), {})}
    )["tree"]
    assert np.all(leaves(result) >= 0) and grad["b"][0] == 0  # relu's gradient at 0
    cases = {"array": ((X, -1.0, 0.5), {}), "tuple": (((X, X[::-1]), (-1.0, 0.0), (0.5, 2.0)), {})}
    compare_with_optax(ours.projection_box, theirs.projection_box, cases)
    compare_with_optax(ours.projection_hypercube, theirs.projection_hypercube, {"array": ((X, 2.0), {})})
    # a scalar bound applies to every leaf of a tree (Optax accepts it only for a single array)
    clipped = projections.projection_hypercube(TREE)
    assert_close(clipped, jax.tree.map(lambda x: np.clip(x, 0, 1), TREE))


def test_simplex():
    with_inf = X.copy()
    with_inf[3] = -np.inf  # gets nothing
    cases = {"array": ((with_inf, 1.0), {}), "tree": ((TREE, 2.0), {})}
    results = compare_with_optax(projections.projection_simplex, P.projection_simplex, cases)
    tree_result = results["tree"][0]
    assert np.all(leaves(tree_result) >= 0) and abs(leaves(tree_result).sum() - 2.0) < 1e-5
    assert results["array"][0][3] == 0 and abs(float(results["array"][0].sum()) - 1) < 1e-6
    # Jacobian: diag(s) - s s^T / |S| on the support s (sparsemax)
    p, jac_fwd, jac_rev = jax.jit(
        lambda x: (
            projections.projection_simplex(x),
            jax.jacfwd(projections.projection_simplex)(x),
            jax.jacrev(projections.projection_simplex)(x),
        )
    )(X)
    support = (_np(p) > 0).astype(float)
    expected = np.diag(support) - np.outer(support, support) / support.sum()
    assert_close(jac_fwd, expected, atol=1e-6)
    assert_close(jac_rev, expected, atol=1e-6)


@pytest.mark.slow
def test_projections_are_idempotent():
    for projection in (projections.projection_simplex, projections.projection_l1_ball, projections.projection_l2_ball):
        once = projection(TREE, 2.0)
        assert_close(projection(once, 2.0), once, atol=1e-6)
    assert_close(projections.projection_simplex(np.array([0.0, 0.0, -np.inf], np.float32)), [0.5, 0.5, 0.0])


def test_l1_projections():
    sphere, _ = compare_with_optax(
        projections.projection_l1_sphere, P.projection_l1_sphere, {"tree": ((TREE, 1.5), {})}
    )["tree"]
    assert abs(np.abs(leaves(sphere)).sum() - 1.5) < 1e-5
    cases = {"outside": ((TREE, 1.5), {}), "inside": ((TREE, 100.0), {})}
    results = compare_with_optax(projections.projection_l1_ball, P.projection_l1_ball, cases)
    assert_close(results["outside"][0], sphere)
    assert_close(results["inside"][0], TREE)


def test_l2_and_linf_projections():
    sphere, _ = compare_with_optax(
        projections.projection_l2_sphere, P.projection_l2_sphere, {"tree": ((TREE, 1.5), {})}
    )["tree"]
    assert abs(np.linalg.norm(leaves(sphere)) - 1.5) < 1e-5
    cases = {"outside": ((TREE, 1.5), {}), "inside": ((TREE, 100.0), {})}
    results = compare_with_optax(projections.projection_l2_ball, P.projection_l2_ball, cases)
    assert_close(results["outside"][0], sphere)
    assert_close(results["inside"][0], TREE)
    box, _ = compare_with_optax(projections.projection_linf_ball, P.projection_linf_ball, {"tree": ((TREE, 0.7), {})})[
        "tree"
    ]
    assert np.abs(leaves(box)).max() <= 0.7 + 1e-7


def test_gradients_at_the_origin_are_finite():
    grads = jax.jit(
        lambda x: [jax.grad(f)(x) for f in (projections.projection_l2_ball, projections.projection_l1_ball)]
    )(0.0)
    assert [float(g) for g in grads] == [1.0, 1.0]
    batched = jax.jit(jax.vmap(jax.grad(lambda x: projections.projection_l1_ball(x).sum())))(
        np.zeros((2, 3), np.float32)
    )
    assert np.all(np.isfinite(batched))
    assert np.all(np.isnan(projections.projection_l2_sphere(np.zeros(3, np.float32))))  # undefined there, as Optax


def test_vector_hyperplane_halfspace():
    vector, _ = compare_with_optax(projections.projection_vector, P.projection_vector, {"tree": ((TREE, A), {})})[
        "tree"
    ]
    x, a = leaves(TREE), leaves(A)
    assert_close(leaves(vector), a * (x @ a) / (a @ a), rtol=1e-5)
    plane, _ = compare_with_optax(
        projections.projection_hyperplane, P.projection_hyperplane, {"tree": ((TREE, A, 0.5), {})}
    )["tree"]
    assert abs(leaves(plane) @ a - 0.5) < 1e-5
    cases = {"violated": ((TREE, A, float(x @ a) - 1.0), {}), "satisfied": ((TREE, A, float(x @ a) + 1.0), {})}
    results = compare_with_optax(projections.projection_halfspace, P.projection_halfspace, cases)
    assert abs(leaves(results["violated"][0]) @ a - (x @ a - 1.0)) < 1e-5
    assert_close(results["satisfied"][0], TREE)


def _check_dtypes(part):
    calls = {
        "non_negative": lambda m, x: m.projection_non_negative(x),
        "simplex": lambda m, x: m.projection_simplex(x),
        "l1_sphere": lambda m, x: m.projection_l1_sphere(x),
        "l2_ball": lambda m, x: m.projection_l2_ball(x),
        "linf_ball": lambda m, x: m.projection_linf_ball(x, 0.5),
        "halfspace": lambda m, x: m.projection_halfspace(x, x[::-1], 0.1),
    }
    if part == "bfloat16":
        x16 = jnp.asarray(X, jnp.bfloat16)
        ours = jax.jit(lambda z: {n: c(projections, z) for n, c in calls.items()})(x16)
        theirs = jax.eval_shape(lambda z: {n: c(P, z) for n, c in calls.items()}, x16)
        for name in calls:
            assert ours[name].dtype == theirs[name].dtype and np.all(np.isfinite(_np(ours[name]))), name
        # Optax's l1 ball fails on bfloat16 (its two branches differ in dtype); this keeps the dtype
        ball = jax.jit(projections.projection_l1_ball)(x16)
        assert ball.dtype == jnp.bfloat16 and abs(float(jnp.abs(ball.astype(jnp.float32)).sum()) - 1) < 1e-2
        return
    with jax.enable_x64(True):
        x64 = jnp.asarray(X, jnp.float64)
        ours, theirs = jax.jit(lambda z: [{n: c(m, z) for n, c in calls.items()} for m in (projections, P)])(x64)
        for name in calls:
            assert ours[name].dtype == theirs[name].dtype == jnp.float64, name
            assert_close(ours[name], theirs[name], rtol=1e-12, atol=1e-12, err_msg=name)


def test_bfloat16():
    _check_dtypes("bfloat16")


@pytest.mark.slow
def test_float64():
    _check_dtypes("float64")
