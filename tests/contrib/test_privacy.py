"""DP-SGD's aggregation against Optax (the same key: identical noise) and against NumPy clipping."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optcompose import contrib

RNG = np.random.default_rng(0)
PER_EXAMPLE = {"a": jnp.asarray(RNG.normal(size=(4, 3)), jnp.float32),
               "b": jnp.asarray(RNG.normal(size=(4, 2, 2)) * 3, jnp.float32)}  # fmt: skip
PARAMS = jax.tree.map(lambda g: g[0], PER_EXAMPLE)


def _steps(tx, steps=3):
    state, out = tx.init(PARAMS), []
    for _ in range(steps):
        u, state = tx.update(PER_EXAMPLE, state, PARAMS)
        out.append(u)
    return out


def test_matches_optax_exactly():
    pairs = [
        (contrib.differentially_private_aggregate(1.0, 0.5, key=3),
         optax.contrib.differentially_private_aggregate(1.0, 0.5, key=3)),
        (contrib.dpsgd(0.1, 1.0, 0.5, seed=2, momentum=0.9, nesterov=True),
         optax.contrib.dpsgd(0.1, 1.0, 0.5, seed=2, momentum=0.9, nesterov=True)),
    ]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for ours, theirs in pairs:
            got, want = jax.jit(lambda ours=ours: _steps(ours))(), jax.jit(lambda theirs=theirs: _steps(theirs))()
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)


def test_clipping_without_noise_is_the_mean_of_clipped_examples():
    tx = contrib.differentially_private_aggregate(l2_norm_clip=1.5, noise_multiplier=0.0, key=0)
    u, _ = tx.update(PER_EXAMPLE, tx.init(PARAMS))
    flat = np.concatenate([np.asarray(g).reshape(4, -1) for g in jax.tree.leaves(PER_EXAMPLE)], axis=1)
    factors = np.minimum(1.0, 1.5 / np.linalg.norm(flat.astype(np.float64), axis=1))
    for got, g in zip(jax.tree.leaves(u), jax.tree.leaves(PER_EXAMPLE), strict=True):
        want = np.tensordot(factors, np.asarray(g, np.float64), axes=1) / 4
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-7)


def test_low_precision_gradients_keep_their_dtype():
    grads = jax.tree.map(lambda g: g.astype(jnp.bfloat16), PER_EXAMPLE)
    tx = contrib.differentially_private_aggregate(1.0, 0.1, key=1)
    u, _ = tx.update(grads, tx.init(PARAMS))
    assert all(x.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(x, np.float32))) for x in jax.tree.leaves(u))


def test_keys_seeds_and_bad_arguments():
    with pytest.warns(DeprecationWarning, match="seed"):
        contrib.differentially_private_aggregate(1.0, 0.5, seed=1)
    with pytest.warns(UserWarning, match="key"):
        contrib.differentially_private_aggregate(1.0, 0.5)
    with pytest.raises(ValueError, match="key and seed"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        contrib.differentially_private_aggregate(1.0, 0.5, key=1, seed=1)
    with pytest.raises(ValueError, match="l2_norm_clip"):
        contrib.differentially_private_aggregate(-1.0, 0.5, key=0)
    tx = contrib.differentially_private_aggregate(1.0, 0.5, key=jax.random.key(0))
    with pytest.raises(ValueError, match="per-example"):
        tx.update({"a": jnp.ones((4, 2)), "b": jnp.ones((3, 2))}, tx.init(PARAMS))
