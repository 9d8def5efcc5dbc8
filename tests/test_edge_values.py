"""Edge values: every optimizer returns finite updates, or a clear error, on awkward inputs.

Also the zoo of transforms that ``test_properties`` and ``test_mixed_precision`` reuse, and the
saturating step counts (a state at the int32 maximum keeps working; schedules stay finite).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optcompose import optimizers as opt
from optcompose import schedules
from optcompose._base import apply_updates, chain, identity, set_to_zero
from optcompose._tree import INT32_MAX, NotFloatingError
from optcompose.schedules._inject import inject_hyperparams
from optcompose.transforms._accumulation import MultiSteps
from optcompose.transforms._adaptive import scale_by_adam, scale_by_rms, scale_by_rss, scale_by_stddev
from optcompose.transforms._clipping import clip, clip_by_global_norm
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._guards import apply_if_finite
from optcompose.transforms._momentum import ema, trace
from optcompose.transforms._partition import freeze, masked, partition
from optcompose.transforms._scaling import scale, scale_by_learning_rate, scale_by_schedule
from optcompose.transforms._trust_ratio import scale_by_trust_ratio

# name -> factory of a transform over the parameter tree {"a": ..., "b": ...}. Every optimizer and
# transform in the package, with non-default flags where they change the arithmetic.
OPTIMIZERS = {
    "sgd": lambda: opt.sgd(0.1),
    "sgd_nesterov": lambda: opt.sgd(0.1, momentum=0.9, nesterov=True),
    "adagrad": lambda: opt.adagrad(0.1),
    "adagrad_torch": lambda: opt.adagrad(0.1, initial_accumulator_value=0.0, eps=1e-10, eps_in_sqrt=False),
    "rmsprop": lambda: opt.rmsprop(0.1),
    "rmsprop_centered": lambda: opt.rmsprop(0.1, centered=True, momentum=0.9, bias_correction=True),
    "adam": lambda: opt.adam(0.1),
    "nadam": lambda: opt.adam(0.1, nesterov=True),
    "adamw": lambda: opt.adamw(0.1, weight_decay=0.01),
    "lars": lambda: opt.lars(0.1, weight_decay=0.01),
    "lamb": lambda: opt.lamb(0.1, weight_decay=0.01),
}
TRANSFORMS = {
    "scale": lambda: scale(0.5),
    "scale_by_learning_rate": lambda: scale_by_learning_rate(lambda c: 0.1 / (1.0 + c)),
    "scale_by_schedule": lambda: scale_by_schedule(lambda c: 0.1 / (1.0 + c)),
    "trace": lambda: trace(0.9),
    "ema": lambda: ema(0.9),
    "scale_by_rss": lambda: scale_by_rss(),
    "scale_by_rms": lambda: scale_by_rms(bias_correction=True),
    "scale_by_stddev": lambda: scale_by_stddev(),
    "scale_by_adam": lambda: scale_by_adam(),
    "add_decayed_weights": lambda: add_decayed_weights(0.1),
    "scale_by_trust_ratio": lambda: scale_by_trust_ratio(),
    "clip": lambda: clip(1.0),
    "clip_by_global_norm": lambda: clip_by_global_norm(1.0),
    "masked": lambda: masked(scale_by_adam(), {"a": True, "b": False}),
    "partition": lambda: partition({"x": opt.adam(0.1), "y": opt.sgd(0.1)}, {"a": "x", "b": "y"}),
    "apply_if_finite": lambda: apply_if_finite(opt.adam(0.1), 2),
    "multi_steps": lambda: MultiSteps(opt.adam(0.1), 2).gradient_transformation(),
    "inject_hyperparams": lambda: inject_hyperparams(opt.adamw)(learning_rate=lambda c: 0.1 / (1.0 + c), b1=0.8),
}
ALL = {**OPTIMIZERS, **TRANSFORMS}
# Transforms that only move or zero values: integers pass through them unchanged.
PASS_THROUGH = {"identity": identity, "set_to_zero": set_to_zero, "freeze": lambda: freeze(True)}
# Names whose update on zero gradients is not zero (weight decay adds lambda * w).
DECAYS = {"adamw", "lars", "lamb", "add_decayed_weights", "inject_hyperparams"}
# Masked and partition need the {"a", "b"} tree; these tests keep that shape of tree.


def tree(a, b):
    return {"a": jnp.asarray(a, jnp.float32), "b": jnp.asarray(b, jnp.float32)}


def run(name, params, grads, steps=2):
    transform = ALL[name]()
    state = transform.init(params)
    for _ in range(steps):
        updates, state = transform.update(grads, state, params)
        params = apply_updates(params, updates)
    return updates, state, params


def assert_finite(tree_):
    for leaf in jax.tree.leaves(tree_):
        assert np.all(np.isfinite(np.asarray(leaf, np.float64))), tree_


VECTOR = np.asarray([1.0, -2.0, 0.5], np.float32)


@pytest.mark.parametrize("name", sorted(ALL))
def test_zero_gradients(name):
    updates, state, params = run(name, tree(VECTOR, 3.0), tree(np.zeros(3), 0.0))
    assert_finite((updates, state, params))
    if name not in DECAYS:
        assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates)), updates


@pytest.mark.parametrize("name", sorted(ALL))
def test_zero_params(name):
    updates, state, params = run(name, tree(np.zeros(3), 0.0), tree(VECTOR, -1.0), steps=1)
    assert_finite((updates, state, params))


def test_trust_ratio_is_one_for_zero_params():
    # ||w|| = 0 (a zero-initialised bias): LARS steps as plain SGD with momentum, LAMB as Adam.
    updates, _, _ = run("lars", tree(np.zeros(3), 0.0), tree(VECTOR, -1.0), steps=1)
    np.testing.assert_allclose(np.asarray(updates["a"]), -0.1 * VECTOR, rtol=1e-6)
    updates, _, _ = run("lamb", tree(np.zeros(3), 0.0), tree(VECTOR, -1.0), steps=1)
    np.testing.assert_allclose(np.asarray(updates["a"]), -0.1 * np.sign(VECTOR), rtol=1e-5)


@pytest.mark.parametrize("magnitude", [1e30, 1e-30])
@pytest.mark.parametrize("name", sorted(ALL))
def test_extreme_magnitudes(name, magnitude):
    updates, state, params = run(name, tree(VECTOR * magnitude, magnitude), tree(VECTOR * magnitude, magnitude))
    assert_finite((updates, params))


@pytest.mark.parametrize("magnitude", [1e30, 1e-30])
def test_norms_rescale_instead_of_overflowing(magnitude):
    grads = tree(VECTOR * magnitude, 0.0)
    updates, _, _ = run("clip_by_global_norm", tree(VECTOR, 0.0), grads, steps=1)
    norm = np.linalg.norm(VECTOR.astype(np.float64)) * magnitude
    expected = VECTOR * magnitude * min(1.0, 1.0 / norm)
    np.testing.assert_allclose(np.asarray(updates["a"]), expected, rtol=1e-6)
    # LARS: ratio = 0.001 * ||w|| / ||g|| = 0.001 when w = g; update = -lr * ratio * (g + wd * w).
    updates, _, _ = run("lars", tree(VECTOR * magnitude, 0.0), grads, steps=1)
    np.testing.assert_allclose(np.asarray(updates["a"]), -0.1 * 0.001 * VECTOR * magnitude, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS) + ["apply_if_finite", "multi_steps", "clip_by_global_norm"])
def test_empty_pytree(name):
    transform = ALL[name]()
    updates, state = transform.update({}, transform.init({}), {})
    assert updates == {}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_none_leaves_pass_through(name):
    params = {"a": jnp.asarray(VECTOR), "b": None}
    transform = ALL[name]()
    state = transform.init(params)
    updates, state = transform.update({"a": jnp.asarray(VECTOR), "b": None}, state, params)
    assert updates["b"] is None
    assert_finite(updates)
    assert apply_updates(params, updates)["b"] is None


@pytest.mark.parametrize("name", sorted(set(ALL) - {"masked", "partition"}))  # those two need keys
def test_bare_array_equals_one_leaf_dict(name):
    transform = ALL[name]()
    params, grads = jnp.asarray(VECTOR), jnp.asarray(-2.0 * VECTOR)
    state, boxed_state = transform.init(params), transform.init({"w": params})
    for _ in range(2):
        updates, state = transform.update(grads, state, params)
        boxed, boxed_state = transform.update({"w": grads}, boxed_state, {"w": params})
        # Not bit for bit: eagerly, the fused optimizers jit each leaf (XLA may fuse multiply-adds).
        np.testing.assert_allclose(np.asarray(updates), np.asarray(boxed["w"]), rtol=1e-6)
    assert_finite(updates)


@pytest.mark.parametrize("name", sorted(ALL))
def test_scalar_leaves(name):
    # 0-d arrays, and Python floats in the gradients.
    updates, state, params = run(name, tree(2.0, -3.0), {"a": 0.5, "b": -0.25})
    assert_finite((updates, state, params))
    assert all(jnp.shape(u) == () for u in jax.tree.leaves(updates))


@pytest.mark.parametrize("name", sorted(set(ALL) - {"masked"}))  # masked leaves "b" alone
def test_integer_leaves_raise_naming_the_path(name):
    params = {"a": jnp.asarray(VECTOR), "b": jnp.asarray(3, jnp.int32)}
    grads = {"a": jnp.asarray(VECTOR), "b": jnp.asarray(1, jnp.int32)}
    transform = ALL[name]()
    with pytest.raises(NotFloatingError, match=r"\['b'\] has dtype int32") as info:
        transform.update(grads, transform.init(params), params)
    assert "floating-point" in str(info.value) and "partition" in str(info.value)
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("name", sorted(PASS_THROUGH))
def test_integer_leaves_pass_through_identity_like_transforms(name):
    transform = PASS_THROUGH[name]()
    grads = {"i": jnp.asarray([1, 2], jnp.int32), "a": jnp.asarray([1.0])}
    updates, _ = transform.update(grads, transform.init(grads), grads)
    assert updates["i"].dtype == jnp.int32


def test_integer_leaves_routed_around_with_partition():
    params = {"a": jnp.asarray(VECTOR), "b": jnp.asarray(3, jnp.int32)}
    tx = partition({"float": opt.adam(0.1), "int": set_to_zero()}, {"a": "float", "b": "int"})
    updates, _ = tx.update(params, tx.init(params), params)
    new = apply_updates(params, updates)
    assert new["b"].dtype == jnp.int32 and int(new["b"]) == 3
    np.testing.assert_allclose(np.asarray(updates["a"]), -0.1 * np.sign(VECTOR), rtol=1e-5)


def test_integer_error_raised_at_trace_time_under_jit():
    tx = opt.sgd(0.1)
    grads = {"w": jnp.ones(2), "nested": {"step": jnp.asarray(1, jnp.int32)}}
    with pytest.raises(NotFloatingError, match=r"updates\['nested'\]\['step'\] has dtype int32"):
        jax.jit(tx.update)(grads, tx.init(grads))


# ----------------------------------------------------------------------- saturating counts


def _saturate(state):
    """Every int32 scalar in the state (the counts) set to the int32 maximum."""
    return jax.tree.map(
        lambda x: jnp.asarray(INT32_MAX, jnp.int32) if x.dtype == jnp.int32 and x.shape == () else x, state
    )


@pytest.mark.parametrize("name", sorted(ALL))
def test_state_at_int32_max_keeps_working(name):
    params, grads = tree(VECTOR, 1.0), tree(-VECTOR, 0.5)
    transform = ALL[name]()
    state = _saturate(transform.init(params))
    for _ in range(3):
        updates, state = transform.update(grads, state, params)
        assert_finite((updates, state))
    for leaf in jax.tree.leaves(state):
        if leaf.dtype == jnp.int32 and leaf.shape == ():
            assert int(leaf) >= 0  # never wrapped to negative


def test_adam_bias_correction_at_int32_max_is_one():
    transform = scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)
    params = jnp.asarray(VECTOR)
    state = _saturate(transform.init(params))
    updates, state = transform.update(params, state)
    assert int(state.count) == INT32_MAX
    g = VECTOR.astype(np.float64)
    expected = 0.1 * g / (np.sqrt(0.001 * g * g) + 1e-8)  # the corrections 1 / (1 - b**t) are 1
    np.testing.assert_allclose(np.asarray(updates), expected, rtol=1e-5)


def _all_schedules():
    found = {
        "constant": schedules.constant_schedule(0.1),
        "linear": schedules.linear_schedule(0.1, 0.0, 1000),
        "polynomial": schedules.polynomial_schedule(0.1, 0.001, 2.0, 1000, 10),
        "exponential": schedules.exponential_decay(0.1, 10, 0.5),
        "exponential_growth": schedules.exponential_decay(0.1, 10, 2.0),
        "exponential_staircase": schedules.exponential_decay(0.1, 10, 0.5, staircase=True),
        "piecewise": schedules.piecewise_constant_schedule(0.1, {10: 0.1, 2**40: 10.0}),
        "cosine": schedules.cosine_decay_schedule(0.1, 1000),
        "warmup_cosine": schedules.warmup_cosine_decay_schedule(0.0, 0.1, 10, 1000),
        "sgdr": schedules.sgdr_schedule(
            [{"init_value": 0.1, "peak_value": 0.1, "decay_steps": 100, "warmup_steps": 0}] * 3
        ),
        "warm_restarts": schedules.cosine_warm_restarts_schedule(0.1, 7, 2),
        "cosine_onecycle": schedules.cosine_onecycle_schedule(1000, 0.1),
        "linear_onecycle": schedules.linear_onecycle_schedule(1000, 0.1),
        "join": schedules.join_schedules(
            [schedules.constant_schedule(0.1), schedules.linear_schedule(0.1, 0.0, 9)], [5]
        ),
        "warmup_constant": schedules.warmup_constant_schedule(0.0, 0.1, 10),
        "warmup_exponential": schedules.warmup_exponential_decay_schedule(0.0, 0.1, 10, 10, 0.5),
    }
    cycle = schedules.one_cycle_schedule(1000, 0.1)
    parts = cycle._asdict().items() if hasattr(cycle, "_asdict") else [("", cycle)]
    for field, schedule in parts:
        if callable(schedule):
            found[f"one_cycle{field and '.' + field}"] = schedule
    return found


SCHEDULES = _all_schedules()
HUGE_COUNTS = [INT32_MAX, jnp.asarray(INT32_MAX, jnp.int32), jnp.asarray(INT32_MAX - 1, jnp.int32), 2**62,
               np.int64(2**62), np.iinfo(np.int64).max, 2**70]


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedules_finite_at_huge_counts(name):
    schedule = SCHEDULES[name]
    for count in HUGE_COUNTS:
        value = np.asarray(schedule(count))
        assert value.shape == () and math.isfinite(float(value)), (name, count, value)
    jitted = jax.jit(schedule)(jnp.asarray(INT32_MAX, jnp.int32))
    assert math.isfinite(float(jitted))


@pytest.mark.parametrize("name", ["warmup_cosine", "exponential_growth", "warm_restarts", "one_cycle.learning_rate"])
def test_scheduled_optimizer_at_int32_max(name):
    if name not in SCHEDULES:
        pytest.skip(f"no schedule {name}")
    tx = chain(opt.adam(SCHEDULES[name]), clip(1.0))
    params = tree(VECTOR, 1.0)
    state = _saturate(tx.init(params))
    for _ in range(2):
        updates, state = tx.update(params, state, params)
        assert_finite((updates, state))
