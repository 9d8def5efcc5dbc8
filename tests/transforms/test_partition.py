"""optcompose/transforms/_partition.py: masked, partition (multi_transform) and freeze.

Their trajectories against the references are rows of the table (tests/rows/transforms.py); here:
what the state holds, how labels and masks are checked, and how integers are routed around.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trajectory as tr
from helpers import assert_trees_close, assert_trees_equal

import optcompose
from optcompose import optimizers as opt
from optcompose._base import apply_updates, chain, identity, set_to_zero
from optcompose.transforms._momentum import trace
from optcompose.transforms._partition import freeze, masked, partition
from optcompose.transforms._scaling import scale, scale_by_learning_rate

VECTOR = np.asarray([1.0, -2.0, 0.5], np.float32)
PARAMS = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}, "scale": jnp.ones(())}


def test_masked_state_covers_only_selected_leaves():
    params, _ = tr.problem(False)
    state = masked(trace(0.9), tr.tree_rule(tr.is_matrix)).init(params)
    selected = tr.flatten(state.inner_state.trace)
    assert sorted(selected) == ["['conv']['w']", "['dense']['kernel']"]


def test_partition_and_multi_transform_are_one_function():
    assert optcompose.multi_transform is partition


def test_partition_unknown_label_names_the_path():
    params, _ = tr.problem(False)
    tx = partition({"dense": identity()}, tr.tree_rule(tr.group_of))
    with pytest.raises(ValueError, match=r"'rest'.*\['conv'\]\['w'\]"):
        tx.init(params)


def test_partition_and_mask_errors_name_the_path():
    with pytest.raises(ValueError, match=r"label 'head' at \['scale'\], which has no transform; known labels"):
        partition({"body": opt.sgd(0.1)}, {"dense": "body", "scale": "head"}).init(PARAMS)
    with pytest.raises(TypeError, match=r"mask leaves must be Python bools .* got 1 at \['scale'\]"):
        masked(opt.sgd(0.1), {"dense": True, "scale": 1}).init(PARAMS)
    with pytest.raises(ValueError, match=r"mask must be a pytree prefix of the parameters"):
        masked(opt.sgd(0.1), {"dense": True}).init(PARAMS)


def test_bad_mask_structure_is_reported():
    tx = masked(scale_by_learning_rate(0.1), {"dense": True})
    with pytest.raises(ValueError, match="mask"):
        tx.init(PARAMS)


def test_freeze_keeps_frozen_parameters_exactly():
    params, noise = tr.problem(False)
    trajectory, _ = tr.run_trajectory(chain(freeze(tr.tree_rule(tr.is_matrix)), scale(-0.05)), params, noise, "jit")
    final = jax.tree.map(lambda x: x[-1], trajectory)
    assert_trees_equal(final["dense"]["kernel"], params["dense"]["kernel"])
    assert_trees_equal(final["conv"]["w"], params["conv"]["w"])
    assert not np.array_equal(final["dense"]["bias"], params["dense"]["bias"])


@pytest.mark.parametrize(
    "make", [identity, set_to_zero, lambda: freeze(True)], ids=["identity", "set_to_zero", "freeze"]
)
def test_integer_leaves_pass_through_identity_like_transforms(make):
    transform = make()
    grads = {"i": jnp.asarray([1, 2], jnp.int32), "a": jnp.asarray([1.0])}
    updates, _ = transform.update(grads, transform.init(grads), grads)
    assert updates["i"].dtype == jnp.int32


def test_integer_leaves_routed_around_with_partition():
    params = {"a": jnp.asarray(VECTOR), "b": jnp.asarray(3, jnp.int32)}
    tx = partition({"float": opt.adam(0.1), "int": set_to_zero()}, {"a": "float", "b": "int"})
    updates, _ = tx.update(params, tx.init(params), params)
    new = apply_updates(params, updates)
    assert new["b"].dtype == jnp.int32 and int(new["b"]) == 3
    assert_trees_close(updates["a"], -0.1 * np.sign(VECTOR), rtol=1e-5, atol=0)
