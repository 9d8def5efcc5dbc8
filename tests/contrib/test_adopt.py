"""ADOPT against Optax (float32 bit for bit, float64) and NumPy; its first step and clipping."""

from __future__ import annotations

import contrib_harness as h
import jax.numpy as jnp
import numpy as np
import pytest

from optcompose import contrib

ROWS = h.rows(["adopt", "adopt_nesterov_unclipped", "adopt_low_precision", "scale_by_adopt"])


def test_rows_match_numpy_and_optax():
    # The same float32 operations in the same order as Optax: identical trajectories (0 measured).
    h.check_parity(ROWS, {"default": 1e-7, "adopt_low_precision": 3e-2})


@pytest.mark.slow
def test_rows_match_optax_in_float64():
    h.check_parity(ROWS, x64=True)


@pytest.mark.slow
def test_eager_equals_jit():
    h.eager_matches_jit(ROWS[0], steps=2)


def test_first_step_only_initializes_the_second_moment_and_clip_bounds_the_direction():
    tx = contrib.scale_by_adopt(b2=0.5, use_clipping=True, clip_value_fn=lambda count: 0.5 + 0 * count)
    params = {"w": jnp.asarray([3.0, -0.5, 0.0])}
    state = tx.init(params)
    u, state = tx.update(params, state)
    assert np.all(np.asarray(u["w"]) == 0)
    np.testing.assert_allclose(np.asarray(state.nu["w"]), [9.0, 0.25, 0.0])
    u, state = tx.update({"w": jnp.asarray([30.0, -0.5, 0.0])}, state)
    # d = clip(g / max(sqrt(nu), eps), 0.5) = [0.5, -0.5, 0]; mu = 0.1 d.
    np.testing.assert_allclose(np.asarray(u["w"]), [0.05, -0.05, 0.0], rtol=1e-6)


def test_complex_parameters_clip_the_magnitude_and_are_phase_equivariant():
    # Optax's ADOPT cannot take complex parameters with clipping (jnp.clip of complex numbers).
    h.check_phase_equivariance(h.rows(["adopt"]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="b2"):
        contrib.adopt(0.1, b2=1.0)
    with pytest.raises(ValueError, match="eps"):
        contrib.scale_by_adopt(eps=-1.0)
    with pytest.raises(TypeError, match="clip_value_fn"):
        contrib.scale_by_adopt(clip_value_fn=2.0)
    with pytest.raises(TypeError, match="b1"):
        contrib.scale_by_adopt(b1=lambda count: 0.9)
