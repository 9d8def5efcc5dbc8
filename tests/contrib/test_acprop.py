"""ACProp against Optax (float32, float64) and NumPy; its first step."""

from __future__ import annotations

import contrib_harness as h
import jax.numpy as jnp
import numpy as np
import pytest

from optcompose import contrib

ROWS = h.rows(["acprop", "scale_by_acprop"])


def test_rows_match_numpy_and_optax():
    h.check_parity(ROWS)


@pytest.mark.slow
def test_rows_match_optax_in_float64():
    h.check_parity(ROWS, x64=True)


def test_first_step_divides_by_one_plus_eps_then_by_the_previous_belief():
    tx = contrib.scale_by_acprop(b1=0.5, b2=0.5, eps=0.0, eps_root=0.0)
    g = {"w": jnp.asarray([2.0, -4.0])}
    u, state = tx.update(g, tx.init(g))
    np.testing.assert_allclose(np.asarray(u["w"]), [2.0, -4.0])
    # s_1 = 0.5 * (g - 0)^2 = [2, 8]; the second step divides by sqrt(s_1 / (1 - 0.5)) = |g_1|.
    u, _ = tx.update(g, state)
    np.testing.assert_allclose(np.asarray(u["w"]), [1.0, -1.0], rtol=1e-6)


@pytest.mark.slow
def test_eager_equals_jit():
    h.eager_matches_jit(ROWS[0], steps=2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="b1"):
        contrib.acprop(0.1, b1=-0.1)
    with pytest.raises(ValueError, match="eps_root"):
        contrib.scale_by_acprop(eps_root=-1.0)
