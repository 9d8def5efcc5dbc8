"""scale_by_laprop (Ziyin, Wang & Ueda 2020): momentum of the RMS-normalized gradient.

Trajectories of ``laprop`` against NumPy and an Optax twin made of Optax's pieces
(``scale_by_rms(bias_correction=True, eps_in_sqrt=False)`` then ``ema(debias=True)``) are in
tests/optimizers/test_frontier.py (rows ``laprop*``); here the piece's own behaviour and edges.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from optcompose.transforms._laprop import ScaleByLapropState, scale_by_laprop


def test_first_step_is_the_normalized_gradient():
    tx = scale_by_laprop(b1=0.8, b2=0.99, eps=1e-15)
    g = {"w": jnp.asarray([0.1, -3.0, 0.0])}
    u, state = tx.update(g, tx.init(g))
    np.testing.assert_allclose(u["w"], [1.0, -1.0, 0.0], rtol=1e-6)
    assert isinstance(state, ScaleByLapropState) and int(state.count) == 1


def test_momentum_averages_normalized_gradients_not_raw_ones():
    tx = scale_by_laprop(b1=0.5, b2=0.5, eps=0.0)
    state = tx.init({"w": jnp.zeros(1)})
    _, state = tx.update({"w": jnp.asarray([1.0])}, state)
    u, state = tx.update({"w": jnp.asarray([100.0])}, state)
    n = 0.5 * 0.5 * 1.0 + 0.5 * 1e4                      # n_2
    m = 0.5 * (0.5 * 1.0) + 0.5 * 100.0 / np.sqrt(n / 0.75)
    np.testing.assert_allclose(u["w"], [m / 0.75], rtol=1e-6)


@pytest.mark.parametrize("magnitude", [0.0, 1e-30, 1e30])
def test_edge_values_stay_finite(magnitude):
    tx = scale_by_laprop(eps=0.0)
    g = {"w": jnp.full((3,), magnitude, jnp.float32)}
    state = tx.init(g)
    for _ in range(3):
        u, state = tx.update(g, state)
    assert np.all(np.isfinite(u["w"]))


def test_bf16_keeps_dtype_and_mu_dtype_is_honoured():
    g = {"w": jnp.asarray([0.5, -1.0], jnp.bfloat16)}
    tx = scale_by_laprop(mu_dtype=jnp.float32)
    u, state = tx.update(g, tx.init(g))
    assert u["w"].dtype == jnp.bfloat16 and state.mu["w"].dtype == jnp.float32 and state.nu["w"].dtype == jnp.bfloat16


@pytest.mark.parametrize(("kwargs", "name"), [({"b1": 1.0}, "b1"), ({"b2": -0.1}, "b2"), ({"eps": -1.0}, "eps")])
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        scale_by_laprop(**kwargs)
