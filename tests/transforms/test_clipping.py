"""optcompose/transforms/_clipping.py: clip and clip_by_global_norm at zero, below, above and at 1e±30."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_finite, assert_trees_close, assert_trees_equal

from optcompose.transforms._clipping import clip, clip_by_global_norm

VECTOR = np.asarray([1.0, -2.0, 0.5], np.float32)


def test_clip_by_global_norm_zero_and_small_and_large():
    tx = clip_by_global_norm(1.0)
    update = jax.jit(tx.update)
    zeros = {"a": jnp.zeros((2, 2)), "b": jnp.zeros(())}
    out, _ = update(zeros, tx.init(zeros))
    assert_finite(out)
    assert_trees_equal(out, zeros)
    small = {"a": jnp.full((2, 2), 0.1), "b": jnp.asarray(0.2)}
    out, _ = update(small, tx.init(small))
    assert_trees_equal(out, small)
    large = {"a": jnp.full((2, 2), 3.0), "b": jnp.asarray(-8.0)}  # norm sqrt(36 + 64) = 10
    out, _ = update(large, tx.init(large))
    assert_trees_close(out, {"a": jnp.full((2, 2), 0.3), "b": jnp.asarray(-0.8)}, rtol=1e-6, atol=0)


def test_clip_bounds_every_coordinate():
    tx = clip(0.5)
    out, _ = tx.update({"a": jnp.array([-2.0, -0.25, 0.0, 0.5, 3.0])}, tx.init(None))
    assert_trees_equal(out, {"a": jnp.asarray([-0.5, -0.25, 0.0, 0.5, 0.5])})


@pytest.mark.parametrize("magnitude", [1e30, 1e-30])
def test_global_norm_rescales_instead_of_overflowing(magnitude):
    grads = {"a": jnp.asarray(VECTOR * magnitude), "b": jnp.asarray(0.0, jnp.float32)}
    tx = clip_by_global_norm(1.0)
    updates, _ = tx.update(grads, tx.init(grads))
    norm = np.linalg.norm(VECTOR.astype(np.float64)) * magnitude
    expected = VECTOR.astype(np.float64) * magnitude * min(1.0, 1.0 / norm)
    assert_trees_close(updates["a"], expected, rtol=1e-6, atol=0, check_dtype=False)
