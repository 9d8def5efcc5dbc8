"""The core types: chain, named_chain, identity, set_to_zero, stateless, apply_updates."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax.core import FrozenDict

from optcompose._base import (
    EmptyState,
    GradientTransformation,
    GradientTransformationExtraArgs,
    apply_updates,
    chain,
    identity,
    named_chain,
    set_to_zero,
    stateless,
)
from optcompose.transforms._adaptive import ScaleByAdamState, scale_by_adam
from optcompose.transforms._clipping import clip
from optcompose.transforms._momentum import trace
from optcompose.transforms._scaling import scale, scale_by_learning_rate

PARAMS = {
    "w": jnp.array([[1.0, -2.0], [0.5, 3.0]]),
    "b": jnp.array([0.1, -0.1, 0.3]),
    "s": jnp.asarray(2.0),
    "frozen": FrozenDict({"k": jnp.ones((2, 1, 2))}),
    "none": None,
}
GRADS = jax.tree.map(lambda x: 0.5 * x + 1.0, PARAMS)


def test_identity_returns_updates_unchanged():
    tx = identity()
    state = tx.init(PARAMS)
    assert state == EmptyState()
    out, new_state = tx.update(GRADS, state)
    chex.assert_trees_all_equal(out, GRADS)
    assert new_state == state


def test_set_to_zero_keeps_shapes_and_dtypes():
    grads = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones((2, 2)), "n": None}
    out, _ = set_to_zero().update(grads, EmptyState())
    chex.assert_trees_all_equal_shapes_and_dtypes(out, grads)
    chex.assert_trees_all_equal(out, jax.tree.map(jnp.zeros_like, grads))


def test_stateless_passes_params():
    tx = stateless(lambda u, p: jax.tree.map(lambda g, w: g * w, u, p))
    out, state = tx.update(GRADS, tx.init(PARAMS), PARAMS)
    assert state == EmptyState()
    chex.assert_trees_all_close(out, jax.tree.map(lambda g, w: g * w, GRADS, PARAMS))


def test_chain_applies_in_order_and_keeps_one_state_each():
    tx = chain(scale(2.0), clip(1.5))
    state = tx.init(PARAMS)
    assert isinstance(state, tuple) and len(state) == 2
    out, new_state = tx.update(GRADS, state)
    expected = jax.tree.map(lambda g: jnp.clip(2.0 * g, -1.5, 1.5), GRADS)
    chex.assert_trees_all_close(out, expected)
    # The other order clips first: a different result, so order matters.
    other, _ = chain(clip(1.5), scale(2.0)).update(GRADS, chain(clip(1.5), scale(2.0)).init(PARAMS))
    assert not np.allclose(other["w"], out["w"])
    assert len(new_state) == 2


def test_nested_chain_equals_flat_chain():
    flat = chain(trace(0.9), scale_by_adam(), scale_by_learning_rate(0.1))
    nested = chain(trace(0.9), chain(scale_by_adam(), scale_by_learning_rate(0.1)))
    flat_state, nested_state = flat.init(PARAMS), nested.init(PARAMS)
    for _ in range(3):
        flat_out, flat_state = flat.update(GRADS, flat_state, PARAMS)
        nested_out, nested_state = nested.update(GRADS, nested_state, PARAMS)
        chex.assert_trees_all_equal(flat_out, nested_out)


def test_chain_forwards_extra_args():
    seen = []

    def update(updates, state, params=None, **extra_args):
        seen.append(extra_args)
        return jax.tree.map(lambda u: u * extra_args["loss"], updates), state

    needs_loss = GradientTransformationExtraArgs(lambda params: EmptyState(), update)
    tx = chain(identity(), needs_loss, scale(1.0))
    out, _ = tx.update(GRADS, tx.init(PARAMS), PARAMS, loss=3.0)
    assert seen == [{"loss": 3.0}]
    chex.assert_trees_all_close(out, jax.tree.map(lambda g: 3.0 * g, GRADS))


def test_plain_transform_in_chain_gets_no_extra_args():
    # Optax's rule: a plain GradientTransformation's update is called without extra arguments.
    seen = []

    def update(updates, state, params=None):
        seen.append("called")
        return updates, state

    plain = GradientTransformation(lambda params: EmptyState(), update)
    tx = chain(plain, scale(2.0))
    out, _ = tx.update(GRADS, tx.init(PARAMS), PARAMS, loss=3.0)
    assert seen == ["called"]
    chex.assert_trees_all_close(out, jax.tree.map(lambda g: 2.0 * g, GRADS))


def test_chain_rejects_non_transforms():
    with pytest.raises(TypeError, match="chain argument 1"):
        chain(identity(), lambda x: x)


def test_transforms_are_hashable():
    tx = chain(trace(0.9), scale(0.1))
    assert hash(tx) == hash(tx)
    assert {tx: 1}[tx] == 1


def test_named_chain_state_is_addressable_by_name():
    tx = named_chain(("momentum", trace(0.5)), ("adam", scale_by_adam()), ("lr", scale_by_learning_rate(0.1)))
    state = tx.init(PARAMS)
    assert list(state) == ["momentum", "adam", "lr"]
    assert isinstance(state["adam"], ScaleByAdamState)
    updates, state = jax.jit(tx.update)(GRADS, state, PARAMS)
    assert int(state["adam"].count) == 1
    # After one step: momentum trace = g; adam mu = (1 - b1) * g.
    chex.assert_trees_all_close(state["momentum"].trace, GRADS)
    chex.assert_trees_all_close(state["adam"].mu, jax.tree.map(lambda g: 0.1 * g, GRADS), rtol=1e-6)
    # The same numbers as the positional chain.
    plain = chain(trace(0.5), scale_by_adam(), scale_by_learning_rate(0.1))
    plain_updates, _ = plain.update(GRADS, plain.init(PARAMS), PARAMS)
    chex.assert_trees_all_close(updates, plain_updates, rtol=1e-6)


def test_named_chain_rejects_duplicate_names_and_wrong_state():
    with pytest.raises(ValueError, match="unique"):
        named_chain(("a", identity()), ("a", scale(1.0)))
    tx = named_chain(("a", identity()))
    with pytest.raises(ValueError, match="keys"):
        tx.update(GRADS, {"b": EmptyState()})


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_apply_updates_keeps_the_parameter_dtype(dtype):
    params = {"a": jnp.array([1.0, -2.0, 0.25], dtype), "n": None}
    updates = {"a": jnp.array([1e-3, 0.5, -0.125], jnp.float32), "n": None}
    out = jax.jit(apply_updates)(params, updates)
    assert out["n"] is None
    assert out["a"].dtype == dtype
    # Summed in float32 (the wider dtype), then rounded once to the parameter's dtype.
    np_dtype = {jnp.bfloat16: ml_dtypes.bfloat16, jnp.float16: np.float16, jnp.float32: np.float32}[dtype]
    expected = (np.asarray(params["a"], np.float32) + np.asarray(updates["a"])).astype(np_dtype)
    np.testing.assert_array_equal(np.asarray(out["a"]), expected)


def test_apply_updates_on_nested_containers_with_none():
    out = apply_updates(PARAMS, GRADS)
    assert jax.tree.structure(out) == jax.tree.structure(PARAMS)
    assert isinstance(out["frozen"], FrozenDict)
    assert out["none"] is None
    chex.assert_trees_all_close(out, jax.tree.map(lambda w, g: w + g, PARAMS, GRADS))


def test_apply_updates_low_precision_update_into_float32_param():
    params = {"a": jnp.array([1.0, 2.0], jnp.float32)}
    updates = {"a": jnp.array([0.5, -0.25], jnp.bfloat16)}
    out = apply_updates(params, updates)
    assert out["a"].dtype == jnp.float32
    np.testing.assert_array_equal(out["a"], [1.5, 1.75])


def test_float32_updates_are_cast_back_to_bfloat16_params():
    params = {"w": jnp.asarray([1.0, 2.0], jnp.bfloat16)}
    new = apply_updates(params, {"w": jnp.asarray([0.5, -0.25], jnp.float32)})
    assert new["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(new["w"], np.float32), [1.5, 1.75])


def test_chain_errors():
    with pytest.raises(TypeError, match=r"chain argument 1 must be a GradientTransformation .* got int"):
        chain(identity(), 3)
    tx = chain(identity(), identity())
    with pytest.raises(ValueError, match=r"chain of 2 transforms must be a tuple of 2 states, got tuple of length 1"):
        tx.update(PARAMS, (tx.init(PARAMS)[0],))
    with pytest.raises(ValueError, match=r"named_chain names must be unique, got \['a', 'a'\]"):
        named_chain(("a", identity()), ("a", identity()))


def test_chain_rejects_a_foreign_state():
    tx = chain(scale(0.1), scale_by_adam())
    with pytest.raises(ValueError, match="2 states"):
        tx.update(GRADS, (tx.init(PARAMS)[0],), PARAMS)
