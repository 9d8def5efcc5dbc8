"""DoG and DoWG against Optax (float32, float64) and NumPy."""

from __future__ import annotations

import contrib_harness as h
import jax.numpy as jnp
import numpy as np
import pytest

from optcompose import contrib

ROWS = h.rows(["dog", "dog_heuristic", "dog_learning_rate", "dowg"])


def test_rows_match_numpy_and_optax():
    h.check_parity(ROWS)


@pytest.mark.slow
def test_rows_match_optax_in_float64():
    h.check_parity(ROWS, x64=True)


@pytest.mark.slow
def test_eager_equals_jit():
    h.eager_matches_jit(ROWS[0], steps=2)


def test_first_steps():
    w = {"w": jnp.asarray([3.0, 4.0])}
    g = {"w": jnp.asarray([0.6, 0.8])}
    tx = contrib.dog(init_step=("distance", 0.5), eps=0.0)
    u, _ = tx.update(g, tx.init(w), w)  # eta = r_eps / ||g|| = 0.5
    np.testing.assert_allclose(np.asarray(u["w"]), [-0.3, -0.4], rtol=1e-6)
    tx = contrib.dog(init_step=("heuristic", 0.1), eps=0.0)
    u, _ = tx.update(g, tx.init(w), w)  # r_eps = 0.1 * (1 + ||w||) = 0.6
    np.testing.assert_allclose(np.asarray(u["w"]), [-0.36, -0.48], rtol=1e-6)
    tx = contrib.dowg(init_estim_sq_dist=0.25, eps=0.0)
    u, _ = tx.update(g, tx.init(w), w)  # eta = r^2 / (r ||g||) = 0.5
    np.testing.assert_allclose(np.asarray(u["w"]), [-0.3, -0.4], rtol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"init_step\[0\]"):
        contrib.dog(init_step=("distanse", 1.0))
    with pytest.raises(TypeError, match="init_step"):
        contrib.dog(init_step=1.0)
    with pytest.raises(ValueError, match="init_estim_sq_dist"):
        contrib.dowg(init_estim_sq_dist=-1.0)
    tx = contrib.dog()
    with pytest.raises(ValueError, match="params"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))
