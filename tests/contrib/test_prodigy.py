"""Prodigy against Optax (float32, float64) and NumPy; the estimate on zero gradients."""

from __future__ import annotations

import contrib_harness as h
import jax.numpy as jnp
import numpy as np
import pytest

from optcompose import contrib

ROWS = h.rows(["prodigy", "prodigy_safeguard"])


def test_rows_match_numpy_and_optax():
    h.check_parity(ROWS)


@pytest.mark.slow
def test_rows_match_optax_in_float64():
    h.check_parity(ROWS, x64=True)


@pytest.mark.slow
def test_eager_equals_jit():
    h.eager_matches_jit(ROWS[0], steps=2)


def test_estimate_grows_and_zero_gradients_keep_it_finite():
    tx = contrib.prodigy(estim_lr0=1e-3)
    w = {"w": jnp.asarray([1.0, -2.0, 0.5])}
    state = tx.init(w)
    for _ in range(5):
        u, state = tx.update({"w": w["w"] * 2.0}, state, w)
        w = {"w": w["w"] + u["w"]}
    assert float(state.estim_lr) > 1e-3
    zero = {"w": jnp.zeros(3)}
    u, state = tx.update(zero, tx.init(zero), zero)  # Optax: 0 / 0, d = NaN
    assert float(state.estim_lr) == pytest.approx(1e-3) and np.all(np.asarray(u["w"]) == 0)


def test_complex_parameters_are_phase_equivariant():
    # Optax's Prodigy squares complex gradients and keeps complex inner products: not its numbers here.
    h.check_phase_equivariance(h.rows(["prodigy"]))


def test_bad_arguments():
    with pytest.raises(TypeError, match="betas"):
        contrib.prodigy(betas=0.9)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        contrib.prodigy(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="estim_lr0"):
        contrib.prodigy(estim_lr0=0.0)
    with pytest.raises(ValueError, match="beta3"):
        contrib.prodigy(beta3=2.0)
    tx = contrib.prodigy()
    with pytest.raises(ValueError, match="params"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))
