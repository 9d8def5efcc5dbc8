"""D-Adaptation AdamW against Optax (float32, float64) and NumPy."""

from __future__ import annotations

import contrib_harness as h
import jax.numpy as jnp
import numpy as np
import pytest

from optcompose import contrib

ROWS = h.rows(["dadapt_adamw"])


def test_rows_match_numpy_and_optax():
    h.check_parity(ROWS)


@pytest.mark.slow
def test_rows_match_optax_in_float64():
    h.check_parity(ROWS, x64=True)


@pytest.mark.slow
def test_eager_equals_jit():
    h.eager_matches_jit(ROWS[0], steps=2)


def test_zero_gradients_keep_the_estimate():
    tx = contrib.dadapt_adamw(estim_lr0=1e-4)
    zero = {"w": jnp.zeros(3)}
    u, state = tx.update(zero, tx.init(zero), zero)  # Optax: 0 / 0, d = NaN
    assert float(state.estim_lr) == pytest.approx(1e-4) and np.all(np.asarray(u["w"]) == 0)


def test_complex_parameters_are_phase_equivariant():
    # Optax's D-Adaptation squares complex gradients (g * g): not its numbers for complex parameters.
    h.check_phase_equivariance(h.rows(["dadapt_adamw"]))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"betas\[0\]"):
        contrib.dadapt_adamw(betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="weight_decay"):
        contrib.dadapt_adamw(weight_decay=-1.0)
    tx = contrib.dadapt_adamw()
    with pytest.raises(ValueError, match="params"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))
