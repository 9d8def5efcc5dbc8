"""Sophia and Hutchinson's estimator against Optax (float32, float64, the same random probes) and NumPy."""

from __future__ import annotations

import contrib_harness as h
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optcompose import contrib

ROWS = h.rows(["sophia", "hutchinson_estimator_diag_hessian"])


def test_rows_match_numpy_and_optax():
    h.check_parity(ROWS)


@pytest.mark.slow
def test_rows_match_optax_in_float64():
    h.check_parity(ROWS, x64=True)


def test_hutchinson_draws_optax_probes_on_a_coupled_loss():
    """A non-separable loss: the estimate depends on the random signs, which must be Optax's."""
    params = {"a": jnp.asarray([1.0, -0.5, 2.0]), "b": jnp.asarray([[0.3, 0.7], [-1.2, 0.4]])}
    loss = lambda p: jnp.sum(p["a"]) ** 2 * jnp.sum(p["b"] ** 2) + jnp.prod(p["a"])
    ours, theirs = contrib.hutchinson_estimator_diag_hessian(), optax.contrib.hutchinson_estimator_diag_hessian()

    def three(tx):
        state, out = tx.init(params), []
        for _ in range(3):
            estimate, state = tx.update(params, state, params, obj_fn=loss)
            out.append(estimate)
        return out

    got, want = jax.jit(lambda: three(ours))(), jax.jit(lambda: three(theirs))()
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_eager_equals_jit():
    h.eager_matches_jit(ROWS[0], steps=2)


def test_missing_arguments_and_bad_arguments():
    w = {"w": jnp.ones(2)}
    tx = contrib.sophia(0.1)
    with pytest.raises(ValueError, match="obj_fn"):
        tx.update(w, tx.init(w), w)
    with pytest.raises(ValueError, match="params"):
        tx.update(w, tx.init(w), obj_fn=lambda p: 0.0)
    with pytest.raises(ValueError, match="update_interval"):
        contrib.sophia(0.1, update_interval=0)
    with pytest.raises(ValueError, match="clip_threshold"):
        contrib.sophia(0.1, clip_threshold=0.0)
    with pytest.raises(ValueError, match="gamma"):
        contrib.sophia(0.1, gamma=-1.0)
    with pytest.raises(TypeError, match="hessian_diagonal_fn"):
        contrib.sophia(0.1, hessian_diagonal_fn=3)
