"""MADGRAD against Optax (float32, float64) and NumPy."""

from __future__ import annotations

import contrib_harness as h
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trajectory as tr

from optcompose import contrib

ROWS = h.rows(["madgrad", "scale_by_madgrad"])


def test_rows_match_numpy_and_optax():
    h.check_parity(ROWS)


@pytest.mark.slow
def test_rows_match_optax_in_float64():
    # Optax computes sqrt(count + 1) in float32 even under x64 (jnp.sqrt of an int32); ours is
    # float64 there: 6e-8 measured.
    h.check_parity(ROWS, 2e-7, x64=True)


@pytest.mark.slow
def test_eager_equals_jit():
    h.eager_matches_jit(ROWS[0], steps=2)


def test_complex_parameters_are_phase_equivariant():
    # Optax's MADGRAD cannot take complex parameters (jnp.cbrt of a complex sum of g ** 2).
    h.check_phase_equivariance(h.rows(["madgrad"]))


def test_low_precision_keeps_dtypes():
    for kind in (True,):
        params, noise = tr.problem(kind)
        trajectory, state = h.run([contrib.madgrad(0.01)], [(params, noise)])[0]
        assert h.leaf_dtypes(jax.tree.map(lambda x: x[-1], trajectory)) == h.leaf_dtypes(params)
        assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(trajectory))
        assert h.leaf_dtypes(state[1].x0) == h.leaf_dtypes(params)


def test_bad_arguments():
    with pytest.raises(ValueError, match="momentum"):
        contrib.madgrad(0.1, momentum=1.5)
    with pytest.raises(ValueError, match="learning_rate"):
        contrib.scale_by_madgrad(-0.1)
    with pytest.raises(ValueError, match="weight_decay"):
        contrib.madgrad(0.1, weight_decay=-1.0)
    tx = contrib.scale_by_madgrad(0.1)
    with pytest.raises(ValueError, match="params"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))
