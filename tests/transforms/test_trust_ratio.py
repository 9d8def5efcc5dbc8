"""optcompose/transforms/_trust_ratio.py: the ratio is 1 where a norm is zero, exact otherwise."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from helpers import assert_trees_close, assert_trees_equal

from optcompose.transforms._trust_ratio import scale_by_trust_ratio


def test_trust_ratio_is_one_when_a_norm_is_zero():
    tx = scale_by_trust_ratio(trust_coefficient=0.5)
    params = {"zero_w": jnp.zeros(3), "w": jnp.array([3.0, 4.0])}
    updates = {"zero_w": jnp.array([1.0, -2.0, 2.0]), "w": jnp.zeros(2)}
    out, _ = jax.jit(tx.update)(updates, tx.init(params), params)
    assert_trees_equal(out, updates)
    # Both norms nonzero: 0.5 * ||w|| / ||u|| = 0.5 * 5 / 10 = 0.25.
    out, _ = tx.update({"zero_w": jnp.ones(3), "w": jnp.array([6.0, 8.0])}, tx.init(params), params)
    assert_trees_close(out["w"], jnp.asarray([1.5, 2.0]), rtol=1e-6, atol=0)
    assert_trees_equal(out["zero_w"], jnp.ones(3))
