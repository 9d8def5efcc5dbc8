"""Optax's deprecated tree_utils aliases (optcompose/tree/_deprecated.py): they warn and compute the same."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optcompose.tree_utils as ours

TREE = {"a": jnp.array([3.0, -4.0, 1.0]), "b": (jnp.array([0.5, -2.0, 2.0]), None)}


@pytest.mark.parametrize(
    "name, call",
    [
        ("tree_scalar_mul", lambda fn: fn(2.0, TREE)),
        ("tree_add_scalar_mul", lambda fn: fn(TREE, 0.5, TREE)),
        ("tree_l1_norm", lambda fn: fn(TREE)),
        ("tree_l2_norm", lambda fn: fn(TREE)),
        ("tree_l2_norm", lambda fn: fn(TREE, squared=True)),
        ("tree_linf_norm", lambda fn: fn(TREE)),
    ],
)
def test_deprecated_alias_warns_and_matches_optax(name, call):
    with pytest.warns(DeprecationWarning, match=name):
        ours_fn = getattr(ours, name)
    with pytest.warns(DeprecationWarning):
        their_fn = getattr(optax.tree_utils, name)
    got, want = call(ours_fn), call(their_fn)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'tree_nonexistent'"):
        _ = ours.tree_nonexistent
    assert not hasattr(ours, "tree_frobnicate")
    assert "tree_l2_norm" not in dir(ours)  # like Optax: resolvable, not listed
