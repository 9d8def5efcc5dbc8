"""GaLore against Optax (on trees without ``None`` leaves, which Optax's GaLore cannot take) and NumPy."""

from __future__ import annotations

import contrib_harness as h
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optcompose import contrib
from optcompose.optimizers._classic import sgd

ROWS = h.rows(["galore", "scale_by_galore"])
RNG = np.random.default_rng(0)


def _problem(dtype=jnp.float32):
    params = {"wide": RNG.normal(size=(3, 5)), "tall": RNG.normal(size=(6, 4)), "bias": RNG.normal(size=(4,)),
              "attn": RNG.normal(size=(2, 3, 4))}  # fmt: skip
    noise = jax.tree.map(lambda p: RNG.normal(size=(20, *p.shape)), params)
    as_ = lambda tree, d: jax.tree.map(lambda x: jnp.asarray(x, d), tree)
    return as_(params, dtype), as_(noise, jnp.float32)


CONFIGS = {
    "adam": {"rank": 2, "update_proj_gap": 5, "weight_decay": 0.1},
    "sgd_momentum": {"rank": 2, "update_proj_gap": 3, "scale": 0.5},
    "dims_3d": {"rank": 2, "weight_dimension_numbers": "3d"},
}


def _options(config, module):
    options = dict(config)
    if options.pop("weight_dimension_numbers", None):
        d = module.GaLoreDimensionNumbers
        options["weight_dimension_numbers"] = {"wide": d(), "tall": d(), "bias": None, "attn": d((0, 1), 2)}
    if "scale" in options:
        options["base_optimizer"] = sgd(1.0, momentum=0.9) if module is contrib else optax.sgd(1.0, momentum=0.9)
    return options


@pytest.mark.parametrize("x64", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["float32", "float64"])
def test_matches_optax(x64):
    with jax.enable_x64(x64):
        problem = _problem(jnp.float64 if x64 else jnp.float32)
        txs = [contrib.galore(0.02, **_options(c, contrib)) for c in CONFIGS.values()]
        txs += [optax.contrib.galore(0.02, **_options(c, optax.contrib)) for c in CONFIGS.values()]
        runs = h.run(txs, [problem] * len(txs))
        # float64: Optax computes the SVD in float32, ours in float64 (1e-7 apart).
        for i, name in enumerate(CONFIGS):
            error = h.displacement_error(runs[i][0], runs[i + len(CONFIGS)][0], problem[0])
            assert error < (2e-6 if x64 else 2e-5), (name, error)


def test_rows_match_numpy():
    h.check_parity(ROWS)


def test_projector_is_orthonormal_and_refreshed_every_gap():
    params = {"w": jnp.asarray(RNG.normal(size=(6, 4)), jnp.float32)}
    tx = contrib.scale_by_galore(rank=2, update_proj_gap=2)
    state = tx.init(params)
    assert state.projector["w"].shape == (6, 2)  # m >= n: left projector, moments r x n
    assert state.base_optimizer_state.mu["w"].shape == (2, 4)
    projectors = []
    for t in range(3):
        _, state = jax.jit(tx.update)({"w": jnp.sin(params["w"] * (t + 1))}, state)
        projectors.append(np.asarray(state.projector["w"]))
    np.testing.assert_allclose(projectors[0].T @ projectors[0], np.eye(2), atol=1e-5)
    np.testing.assert_array_equal(projectors[0], projectors[1])  # no SVD at the second step
    assert not np.allclose(projectors[1], projectors[2])


def test_rank_is_clipped_and_right_projection_for_wide_matrices():
    state = contrib.scale_by_galore(rank=8).init({"w": jnp.zeros((3, 5))})
    assert state.projector["w"].shape == (5, 3) and state.base_optimizer_state.mu["w"].shape == (3, 3)


def test_bad_arguments():
    with pytest.raises(TypeError, match="rank"):
        contrib.galore(0.1, rank=2.0)
    with pytest.raises(ValueError, match="rank"):
        contrib.scale_by_galore(rank=0)
    with pytest.raises(ValueError, match="update_proj_gap"):
        contrib.scale_by_galore(update_proj_gap=0)
    tx = contrib.scale_by_galore(weight_dimension_numbers=contrib.GaLoreDimensionNumbers(0, 1))
    with pytest.raises(ValueError, match="axes"):
        tx.init({"w": jnp.zeros((2, 3, 4))})
