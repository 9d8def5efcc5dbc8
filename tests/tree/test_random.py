"""optcompose.tree.random_like / split_key_like / unwrap_random_key_data (optcompose/tree/_random.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optcompose.tree as ours

theirs = optax.tree

TARGET = {"a": jnp.ones(3), "b": (jnp.zeros(3, jnp.bfloat16), None), "c": {"d": jnp.ones(3, jnp.float16)}}
KEYS = {"typed": lambda: jax.random.key(7), "raw": lambda: jax.random.PRNGKey(7)}


def assert_same(got, want):
    got, want = ours.unwrap_random_key_data(got), theirs.unwrap_random_key_data(want)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


@pytest.mark.parametrize("kind", KEYS)
def test_split_key_like_matches_optax(kind):
    key = KEYS[kind]()
    got = ours.split_key_like(key, TARGET)
    assert jax.tree.structure(got) == jax.tree.structure(TARGET)
    assert_same(got, theirs.split_key_like(key, TARGET))
    leaves = ours.unwrap_random_key_data(jax.tree.leaves(got))
    assert len({tuple(np.asarray(k).ravel()) for k in leaves}) == 3  # distinct keys
    assert ours.split_key_like(key, {}) == {}


def draws(tu, k):
    return {
        "normal": tu.random_like(k, TARGET),
        "uniform_f32": tu.random_like(k, TARGET, jax.random.uniform, jnp.float32),
        "no_sharding_arg": tu.random_like(k, TARGET, lambda kk, shape, dtype: jax.random.bernoulli(kk, 0.5, shape)),
        "rademacher": tu.random_like(k, {"i": jnp.zeros(3, jnp.int32)}, jax.random.rademacher),
    }


def test_random_like_matches_optax_eager():
    key = jax.random.key(11)
    got, want = draws(ours, key), draws(theirs, key)
    for name in want:
        assert_same(got[name], want[name])
    assert got["normal"]["b"][0].dtype == jnp.bfloat16 and got["normal"]["b"][1] is None
    assert got["uniform_f32"]["c"]["d"].dtype == jnp.float32
    raw = jax.random.PRNGKey(11)
    assert_same(ours.random_like(raw, TARGET), theirs.random_like(raw, TARGET))


def test_random_like_matches_optax_under_jit():
    got, want = jax.jit(lambda k: (ours.random_like(k, TARGET), theirs.random_like(k, TARGET)))(jax.random.key(5))
    assert_same(got, want)
    assert_same(got, ours.random_like(jax.random.key(5), TARGET))


def test_random_like_accepts_shape_dtype_structs():
    spec = {"w": jax.ShapeDtypeStruct((3,), jnp.float32)}
    got = ours.random_like(jax.random.key(0), spec)
    assert got["w"].shape == (3,) and got["w"].dtype == jnp.float32
    np.testing.assert_array_equal(got["w"], ours.random_like(jax.random.key(0), {"w": jnp.zeros(3)})["w"])


def test_unwrap_random_key_data_matches_optax():
    tree = {"k": jax.random.key(3), "ks": jax.random.split(jax.random.key(4), 3), "x": jnp.ones(3), "raw": jnp.ones(2)}
    got = ours.unwrap_random_key_data(tree)
    assert got["k"].dtype == jnp.uint32 and got["k"].shape == (2,) and got["ks"].shape == (3, 2)
    assert got["x"] is tree["x"]
    assert_same(got, theirs.unwrap_random_key_data(tree))
