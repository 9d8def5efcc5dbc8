"""COCOB against Optax (float32 and float64: identical) and NumPy; its first step."""

from __future__ import annotations

import contrib_harness as h
import jax.numpy as jnp
import numpy as np
import pytest

from optcompose import contrib

ROWS = h.rows(["cocob", "scale_by_cocob"])


def test_rows_match_numpy_and_optax():
    h.check_parity(ROWS, 1e-7)


@pytest.mark.slow
def test_rows_match_optax_in_float64():
    h.check_parity(ROWS, x64=True)


def test_first_step_from_the_betting_rule():
    tx = contrib.scale_by_cocob(alpha=100.0, eps=1e-8)
    w = {"w": jnp.asarray([1.0, -2.0])}
    g = {"w": jnp.asarray([0.5, -1.0])}
    u, _ = tx.update(g, tx.init(w), w)
    # L = |g|, G = |g|, theta = -g: w_new = w_1 - g / (|g| * 100 |g|) * |g| = w_1 - sign(g) / 100.
    np.testing.assert_allclose(np.asarray(u["w"]), [-0.01, 0.01], rtol=1e-5)


@pytest.mark.slow
def test_eager_equals_jit():
    h.eager_matches_jit(ROWS[0], steps=2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="alpha"):
        contrib.cocob(alpha=0.0)
    with pytest.raises(ValueError, match="eps"):
        contrib.scale_by_cocob(eps=-1.0)
    tx = contrib.scale_by_cocob()
    with pytest.raises(ValueError, match="params"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))
