"""scale_by_mars_correction (Yuan et al. 2024): the corrected, clipped gradient and its state.

Trajectories of ``mars`` and of the piece against NumPy and Optax twins are in
tests/optimizers/test_frontier.py (rows ``mars*``); here the piece's own behaviour and edges.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optcompose._base import chain
from optcompose.optimizers._sign import lion
from optcompose.transforms._mars import ScaleByMarsCorrectionState, scale_by_mars_correction


def test_first_step_scales_by_one_plus_the_correction_then_clips():
    tx = scale_by_mars_correction(b1=0.9, gamma=0.1, max_norm=None)
    g = {"w": jnp.asarray([0.1, -0.2, 0.05])}
    u, state = tx.update(g, tx.init(g))
    np.testing.assert_allclose(u["w"], (1 + 0.1 * 9) * np.asarray(g["w"]), rtol=1e-6)
    assert isinstance(state, ScaleByMarsCorrectionState)
    np.testing.assert_array_equal(state.last_grad["w"], g["w"])
    g2 = {"w": jnp.asarray([0.3, 0.0, -0.1])}
    u2, _ = tx.update(g2, state)
    want = np.asarray(g2["w"]) + 0.1 * 9 * (np.asarray(g2["w"]) - np.asarray(g["w"]))
    np.testing.assert_allclose(u2["w"], want, rtol=1e-6)


def test_clipping_is_per_leaf_and_keeps_the_direction():
    tx = scale_by_mars_correction(gamma=0.0, max_norm=1.0)
    g = {"long": jnp.asarray([3.0, 4.0]), "short": jnp.asarray([0.3, 0.4]), "scalar": jnp.asarray(-2.0)}
    u, _ = jax.jit(tx.update)(g, tx.init(g))
    np.testing.assert_allclose(u["long"], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(u["short"], g["short"])
    np.testing.assert_allclose(u["scalar"], -1.0)


def test_gamma_zero_without_clip_is_the_identity_and_a_pre_transform_for_lion():
    g = {"w": jnp.asarray([[1.0, -2.0], [0.5, 3.0]])}
    tx = scale_by_mars_correction(gamma=0.0, max_norm=None)
    u, _ = tx.update(g, tx.init(g))
    np.testing.assert_array_equal(u["w"], g["w"])
    opt = chain(scale_by_mars_correction(), lion(0.1))
    u, _ = opt.update(g, opt.init(g), g)
    assert np.all(np.isfinite(u["w"]))


@pytest.mark.parametrize("magnitude", [0.0, 1e-30, 1e30])
def test_edge_values_stay_finite(magnitude):
    tx = scale_by_mars_correction()
    g = {"w": jnp.full((4,), magnitude, jnp.float32)}
    u, state = tx.update(g, tx.init(g))
    u, _ = tx.update(jax.tree.map(lambda x: -x, g), state)
    assert np.all(np.isfinite(u["w"]))
    assert float(jnp.linalg.norm(u["w"])) <= 1.0 + 1e-6
    if magnitude == 0.0:
        np.testing.assert_array_equal(u["w"], 0.0)


def test_bf16_keeps_dtype_and_complex_clips_the_modulus():
    g = {"w": jnp.asarray([3.0, 4.0], jnp.bfloat16)}
    tx = scale_by_mars_correction(gamma=0.0)
    u, state = tx.update(g, tx.init(g))
    assert u["w"].dtype == jnp.bfloat16 and state.last_grad["w"].dtype == jnp.bfloat16
    z = {"w": jnp.asarray([3.0 + 4.0j, 0.0], jnp.complex64)}
    u, _ = tx.update(z, tx.init(z))
    np.testing.assert_allclose(u["w"], [0.6 + 0.8j, 0.0], rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"b1": 1.0}, "b1"), ({"gamma": -1.0}, "gamma"), ({"max_norm": 0.0}, "max_norm"), ({"gamma": "x"}, "gamma")],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        scale_by_mars_correction(**kwargs)
