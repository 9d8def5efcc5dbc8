"""optcompose/transforms/_adaptive.py beyond the table: exact first steps, saturated counts, rounding.

The trajectories of scale_by_adam / rms / rss / stddev against their references are rows of the
table (tests/rows/transforms.py); here are the values worth writing out by hand.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_dtypes
import numpy as np
from helpers import assert_finite, assert_trees_close, assert_trees_equal

from optcompose._tree import INT32_MAX
from optcompose.transforms._adaptive import scale_by_adam, scale_by_rss

VECTOR = np.asarray([1.0, -2.0, 0.5], np.float32)


def test_rss_untouched_coordinate_gets_zero_update():
    tx = scale_by_rss(initial_accumulator_value=0.0, eps=0.0)
    g = {"a": jnp.array([0.0, 2.0])}
    out, _ = tx.update(g, tx.init(g))
    assert_finite(out)
    assert_trees_close(out, {"a": jnp.asarray([0.0, 1.0])}, rtol=1e-7, atol=0)


def test_adam_bias_correction_at_int32_max_is_one():
    transform = scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)
    params = jnp.asarray(VECTOR)
    state = transform.init(params)
    state = state._replace(count=jnp.asarray(INT32_MAX, jnp.int32))
    updates, state = transform.update(params, state)
    assert int(state.count) == INT32_MAX
    g = VECTOR.astype(np.float64)
    expected = 0.1 * g / (np.sqrt(0.001 * g * g) + 1e-8)  # the corrections 1 / (1 - b**t) are 1
    assert_trees_close(updates, expected, rtol=1e-5, atol=0, check_dtype=False)


def test_arithmetic_runs_in_float32_then_rounds_once():
    # bfloat16 has 8 significant bits. Adam's update computed in float32 then rounded once equals
    # the float32 reference rounded to bfloat16; computing in bfloat16 would be off by many ulps.
    rng = np.random.default_rng(0)
    grads32 = [rng.normal(size=16).astype(np.float32) for _ in range(5)]
    grads16 = [g.astype(ml_dtypes.bfloat16) for g in grads32]
    tx = scale_by_adam(mu_dtype=jnp.float32, nu_dtype=jnp.float32)
    state = tx.init(jnp.zeros(16, jnp.bfloat16))
    m = v = np.zeros(16, np.float64)
    for t, g in enumerate(grads16, start=1):
        updates, state = tx.update(jnp.asarray(g), state)
        g64 = g.astype(np.float64)
        m, v = 0.9 * m + 0.1 * g64, 0.999 * v + 0.001 * g64 * g64
        expected = (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        assert updates.dtype == jnp.bfloat16
        assert_trees_equal(updates, expected.astype(np.float32).astype(ml_dtypes.bfloat16))
