"""MoMo and MoMo-Adam against Optax (float32, float64) and NumPy, with the loss as ``value=``."""

from __future__ import annotations

import contrib_harness as h
import jax.numpy as jnp
import optax
import pytest
from cases import Case
from rows.contrib import with_loss

from optcompose import contrib

ROWS = h.rows(["momo", "momo_adam"])
ADAPTIVE = [
    Case("momo_adapt_lower_bound", lambda: contrib.momo(0.5, lower_bound=0.1, adapt_lower_bound=True),
         optax=lambda: optax.contrib.momo(0.5, lower_bound=0.1, adapt_lower_bound=True), extra_args=with_loss),
    Case("momo_adam_adapt_lower_bound", lambda: contrib.momo_adam(0.05, adapt_lower_bound=True),
         optax=lambda: optax.contrib.momo_adam(0.05, adapt_lower_bound=True), extra_args=with_loss),
]  # fmt: skip


def test_rows_match_numpy_and_optax():
    h.check_parity(ROWS + ADAPTIVE)


@pytest.mark.slow
def test_rows_match_optax_in_float64():
    h.check_parity(ROWS + ADAPTIVE, x64=True)


@pytest.mark.slow
def test_eager_equals_jit():
    h.eager_matches_jit(ROWS[0], steps=2)


def test_step_is_the_truncated_polyak_step():
    tx = contrib.momo(learning_rate=10.0, beta=0.9)
    w = {"w": jnp.asarray([1.0, 2.0])}
    g = {"w": jnp.asarray([1.0, 2.0])}
    # First step: d = g, f = loss, gamma = <g, w> = 5; tau = min(10, (f - 0 - 5 + 5) / ||g||^2) = f / 5.
    u, _ = tx.update(g, tx.init(w), w, value=2.0)
    assert jnp.allclose(u["w"], -0.4 * g["w"])


def test_complex_parameters_are_phase_equivariant():
    # Optax's MoMo takes complex inner products <g, x> as its step's numerator: not its numbers for complex parameters.
    h.check_phase_equivariance(h.rows(["momo", "momo_adam"]))


def test_missing_loss_and_bad_arguments():
    tx = contrib.momo()
    w = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="value=loss"):
        tx.update(w, tx.init(w), w)
    with pytest.raises(ValueError, match="params"):
        tx.update(w, tx.init(w), value=1.0)
    with pytest.raises(ValueError, match="beta"):
        contrib.momo(beta=1.0)
    with pytest.raises(ValueError, match="b2"):
        contrib.momo_adam(b2=-0.5)
    with pytest.raises(ValueError, match="lower_bound"):
        contrib.momo(lower_bound=float("nan"))
