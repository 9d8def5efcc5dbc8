"""optcompose/speed/_flat.py: ``FlatTree`` and ``flat_state``, one buffer per moment.

The flat-state rows of the table (tests/rows/classic.py) run every cross-cutting test; here are the
buffer's layout, what stays a pytree, the smaller jitted step and the checkpoint round trip.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from helpers import BIG_SHAPES, assert_trees_equal, random_like, random_params

import optcompose as oc
from optcompose.speed._step import step


def _params(seed=0, big=False):
    return random_params(BIG_SHAPES if big else None, seed)


def _grads(params, seed):
    return random_like(params, seed)


def test_flat_tree_reads_like_the_pytree():
    tree = {"a": jnp.arange(6.0).reshape(2, 3), "b": {"c": jnp.ones(()), "d": jnp.zeros((0,))}}
    flat = oc.FlatTree.from_tree(tree)
    assert flat.buffer.shape == (7,) and jax.tree.leaves(flat) == [flat.buffer]
    assert_trees_equal(flat.tree, tree)
    assert_trees_equal(flat["a"], tree["a"])
    assert float(flat["b"]["c"]) == 1.0
    with pytest.raises(ValueError, match="one dtype"):
        oc.FlatTree.from_tree({"a": jnp.ones(2), "b": jnp.ones(2, jnp.bfloat16)})


def test_flat_state_stores_moments_flat_and_keeps_the_rest():
    params = _params(big=True)
    tree_state = oc.adamw(0.01, mu_dtype=jnp.bfloat16).init(params)
    flat_state = oc.flat_state(oc.adamw(0.01, mu_dtype=jnp.bfloat16)).init(params)
    mu, nu = flat_state[0].mu, flat_state[0].nu
    assert isinstance(mu, oc.FlatTree) and mu.buffer.dtype == jnp.bfloat16 and mu.buffer.shape == (310_004,)
    assert isinstance(nu, oc.FlatTree) and nu.buffer.dtype == jnp.float32
    assert len(jax.tree.leaves(flat_state)) == len(jax.tree.leaves(tree_state)) - 2 * (len(params) - 1)
    assert oc.get_hyperparams(flat_state) == oc.get_hyperparams(tree_state)
    # Mixed-dtype parameters keep a pytree where one buffer cannot hold them.
    mixed = dict(_params(), b=jnp.ones((5,), jnp.bfloat16))
    state = oc.flat_state(oc.adam(0.01)).init(mixed)
    assert not isinstance(state[0].mu, oc.FlatTree)


def test_flat_state_shrinks_the_jitted_step():
    params = {f"leaf{i:03d}": jnp.ones((8,), jnp.float32) for i in range(100)}
    counts = {}
    for label, tx in (("tree", oc.adamw(0.01)), ("flat", oc.flat_state(oc.adamw(0.01)))):
        jitted = jax.jit(lambda p, s, g, tx=tx: step(tx, g, s, p), donate_argnums=(0, 1))
        text = jitted.lower(params, tx.init(params), params).compile().as_text()
        counts[label] = (text.count("parameter("), text.count(" copy("))
    # 100 gradients, 100 parameters and 2 flat moments in, against 400 buffers; no copies (in place).
    assert counts["tree"][0] >= 400 and counts["flat"][0] <= 0.6 * counts["tree"][0]
    assert counts["flat"][1] == 0 and counts["tree"][1] == 0


def test_flat_state_checkpoint_round_trip(tmp_path):
    tx = oc.flat_state(oc.adamw(0.01))
    params = _params()
    params, state = step(tx, _grads(params, 1), tx.init(params), params)
    oc.checkpoint.save(tmp_path / "ckpt", {"params": params, "opt_state": state})
    restored = oc.checkpoint.restore(tmp_path / "ckpt", {"params": params, "opt_state": tx.init(params)})
    assert_trees_equal(restored["opt_state"], state)
    assert isinstance(restored["opt_state"][0].mu, oc.FlatTree)
