"""scale_by_lbfgs: the two-loop direction against Optax, NumPy and torch.optim.LBFGS's recursion.

The 20-step trajectories on the shared tree are the rows ``scale_by_lbfgs*`` (NumPy reference and
Optax). torch's direction (torch.optim.LBFGS, ``line_search_fn=None``) is compared in
tests/optimizers/test_lbfgs.py; here the direction alone, memory wrap-around, dtypes and edges.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference_wrappers as refw

from optcompose.transforms._lbfgs import ScaleByLBFGSState, scale_by_lbfgs

RNG = np.random.default_rng(0)


def test_signature_and_state_match_optax():
    a, b = inspect.signature(scale_by_lbfgs).parameters, inspect.signature(optax.scale_by_lbfgs).parameters
    assert [(n, p.kind, p.default) for n, p in a.items()] == [(n, p.kind, p.default) for n, p in b.items()]
    assert ScaleByLBFGSState._fields == optax.ScaleByLBFGSState._fields


def _directions(tx, ws, gs):
    def step(state, wg):
        d, state = tx.update(wg[1], state, wg[0])
        return state, d

    return jax.jit(lambda: jax.lax.scan(step, tx.init(ws[0]), (ws, gs)))()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_directions_match_optax_and_numpy_with_memory_wrap_around(dtype):
    """20 (w, g) pairs from a convex quadratic through a memory of 3: the ring buffer wraps six times."""
    with jax.enable_x64(dtype == jnp.float64):
        A = RNG.normal(size=(4, 4))
        A = A @ A.T + np.eye(4)
        ws = np.cumsum(RNG.normal(size=(20, 4)) * 0.3, axis=0)
        gs = ws @ A.T
        ws_j, gs_j = jnp.asarray(ws, dtype), jnp.asarray(gs, dtype)
        state, ours = _directions(scale_by_lbfgs(3), ws_j, gs_j)
        _, theirs = _directions(optax.scale_by_lbfgs(3), ws_j, gs_j)
        rtol = 1e-5 if dtype == jnp.float32 else 1e-12
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * 1e-2)
        assert ours.dtype == dtype and state.weights_memory.dtype == dtype
    memory = refw.LBFGSMemory(3)
    want = np.stack([memory.direction(g, w) for w, g in zip(np.asarray(ws_j, np.float64),
                                                            np.asarray(gs_j, np.float64), strict=True)])
    np.testing.assert_allclose(np.asarray(ours, np.float64), want, rtol=1e-3 if dtype == jnp.float32 else 1e-10)
    assert int(state.count) == 20


def test_direction_is_the_inverse_hessian_on_a_quadratic():
    """With memory >= dimension and exact pairs, H_k g matches A^{-1} g once n independent pairs are in."""
    with jax.enable_x64(True):
        A = np.diag([1.0, 2.0, 5.0])
        tx = scale_by_lbfgs(memory_size=3)
        ws = [np.array([1.0, 1.0, 1.0]), np.array([0.5, 1.0, 1.0]), np.array([0.5, 0.2, 1.0]),
              np.array([0.5, 0.2, 0.1])]  # fmt: skip
        ws = jnp.asarray(np.stack(ws))
        _, d = _directions(tx, ws, ws @ jnp.asarray(A).T)
        np.testing.assert_allclose(np.asarray(d[-1]), ws[-1], rtol=1e-10)  # H g = A^-1 A w = w


def test_complex_bfloat16_and_edges():
    z = jnp.asarray(RNG.normal(size=(5, 3)) + 1j * RNG.normal(size=(5, 3)), jnp.complex64)
    g = jnp.asarray(RNG.normal(size=(5, 3)) + 1j * RNG.normal(size=(5, 3)), jnp.complex64)
    _, ours = _directions(scale_by_lbfgs(2), z, g)
    _, theirs = _directions(optax.scale_by_lbfgs(2), z, g)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    h = jnp.asarray(RNG.normal(size=(3, 2)), jnp.bfloat16)
    state, d = _directions(scale_by_lbfgs(2), h, h)
    assert d.dtype == jnp.bfloat16 and state.diff_params_memory.dtype == jnp.bfloat16
    tx = scale_by_lbfgs(2)
    w = {"a": jnp.zeros(2), "b": None}
    big = jnp.full(2, 1e30)

    @jax.jit
    def edges():
        zero, _ = tx.update({"a": jnp.zeros(2), "b": None}, tx.init(w), w)
        first, state = tx.update(big, tx.init(big), jnp.zeros(2))
        second, state = tx.update(-big, state, jnp.full(2, 1e20))
        return zero, first, second, state

    zero, first, second, state = edges()
    np.testing.assert_array_equal(zero["a"], 0.0)
    assert zero["b"] is None
    # A first gradient of 1e30: a unit step (Optax: 1 / sqrt(inf) = 0, no step).
    np.testing.assert_allclose(np.linalg.norm(np.asarray(first, np.float64)), 1.0, rtol=1e-5)
    # A pair whose <y, s> overflows is dropped and stored as zeros: the next direction stays finite.
    assert np.all(np.isfinite(np.asarray(second))) and float(state.weights_memory[0]) == 0.0
    with pytest.raises(ValueError, match="memory_size"):
        scale_by_lbfgs(0)
    with pytest.raises(ValueError, match="params"):
        tx.update(big, tx.init(big))
