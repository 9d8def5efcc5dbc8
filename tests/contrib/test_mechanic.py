"""Mechanic against Optax (float32, float64) and NumPy, with SGD and Adam as base optimizers."""

from __future__ import annotations

import contrib_harness as h
import jax.numpy as jnp
import optax
import pytest
from cases import Case

from optcompose import contrib
from optcompose._hyperparams import get_hyperparams
from optcompose.optimizers._classic import adam

ROWS = h.rows(["mechanize"])
ADAM = [
    Case("mechanize_adam", lambda: contrib.mechanize(adam(0.05, b2=0.99), weight_decay=0.1, num_betas=3),
         optax=lambda: optax.contrib.mechanize(optax.adam(0.05, b2=0.99), weight_decay=0.1, num_betas=3)),
]  # fmt: skip


def test_rows_match_numpy_and_optax():
    h.check_parity(ROWS + ADAM)


@pytest.mark.slow
def test_rows_match_optax_in_float64():
    h.check_parity(ROWS + ADAM, x64=True)


@pytest.mark.slow
def test_eager_equals_jit():
    h.eager_matches_jit(ROWS[0], steps=2)


def test_state_and_hyperparameters():
    w = {"w": jnp.ones(3)}
    state = contrib.mechanize(adam(0.1), num_betas=4).init(w)
    assert state.s.shape == (4,) and float(state.s[0]) == pytest.approx(1e-6)
    found = get_hyperparams(state)
    assert float(found["s_init"]) == pytest.approx(1e-6) and float(found["weight_decay"]) == pytest.approx(1e-2)


def test_complex_parameters_are_phase_equivariant():
    # Optax's Mechanic keeps complex inner products in its scales: not its numbers for complex parameters.
    h.check_phase_equivariance(h.rows(["mechanize"]))


def test_bad_arguments():
    with pytest.raises(TypeError, match="base_optimizer"):
        contrib.mechanize(None)
    with pytest.raises(ValueError, match="num_betas"):
        contrib.mechanize(adam(0.1), num_betas=0)
    with pytest.raises(ValueError, match="s_init"):
        contrib.mechanize(adam(0.1), s_init=0.0)
    tx = contrib.mechanize(adam(0.1))
    with pytest.raises(ValueError, match="params"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))
