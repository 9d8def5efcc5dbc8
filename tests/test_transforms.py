"""Every transform against its NumPy reference, step by step over 20 steps, jitted and eager.

The pmap runs of the same cases live in test_pmap.py. Transforms that do not scale by a learning
rate are followed by ``scale(-0.05)`` so the parameters move by a sensible amount.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
import trajectory as tr

import optcompose
from optcompose._base import GradientTransformation, chain, identity, named_chain, set_to_zero, stateless
from optcompose.transforms._adaptive import scale_by_adam, scale_by_rms, scale_by_rss, scale_by_stddev
from optcompose.transforms._clipping import clip, clip_by_global_norm
from optcompose.transforms._decay import add_decayed_weights
from optcompose.transforms._momentum import ema, trace
from optcompose.transforms._partition import freeze, masked, partition
from optcompose.transforms._scaling import scale, scale_by_learning_rate, scale_by_schedule
from optcompose.transforms._trust_ratio import scale_by_trust_ratio

LR = 0.05


def descend(tx: GradientTransformation) -> GradientTransformation:
    return chain(tx, scale(-LR))


def ref_descend(r: ref.RefTransform) -> ref.RefTransform:
    return ref.ref_chain(r, ref.ref_scale(-LR))


def lr_schedule(count):
    return 0.1 * 0.8**count


def step_schedule(count):
    return -0.1 / (1.0 + count)


def _stateless_fn(updates, params):
    return jax.tree.map(lambda g, w: g - 0.5 * w, updates, params)


def _case(name, make, reference, low_precision=False):
    return tr.Case(name, make, reference, low_precision)


CASES = [
    _case("scale", lambda: scale(-LR), lambda: ref.ref_scale(-LR)),
    _case("lr_constant", lambda: scale_by_learning_rate(LR), lambda: ref.ref_scale_by_learning_rate(LR)),
    _case(
        "lr_schedule", lambda: scale_by_learning_rate(lr_schedule), lambda: ref.ref_scale_by_learning_rate(lr_schedule)
    ),
    _case(
        "lr_no_flip",
        lambda: chain(scale_by_learning_rate(LR, flip_sign=False), scale(-1.0)),
        lambda: ref.ref_chain(ref.ref_scale_by_learning_rate(LR, flip_sign=False), ref.ref_scale(-1.0)),
    ),
    _case("schedule", lambda: scale_by_schedule(step_schedule), lambda: ref.ref_scale_by_schedule(step_schedule)),
    _case("trace", lambda: descend(trace(0.8)), lambda: ref_descend(ref.ref_trace(0.8))),
    _case("trace_nesterov", lambda: descend(trace(0.8, nesterov=True)), lambda: ref_descend(ref.ref_trace(0.8, True))),
    _case("trace_bf16", lambda: descend(trace(0.8)), lambda: ref_descend(ref.ref_trace(0.8)), True),
    _case("ema_debias", lambda: descend(ema(0.7)), lambda: ref_descend(ref.ref_ema(0.7))),
    _case("ema_biased", lambda: descend(ema(0.7, debias=False)), lambda: ref_descend(ref.ref_ema(0.7, False))),
    _case(
        "rss_eps_in_sqrt",
        lambda: descend(scale_by_rss(0.1, eps=0.05)),
        lambda: ref_descend(ref.ref_scale_by_rss(0.1, 0.05, True)),
    ),
    _case(
        "rss_eps_outside",
        lambda: descend(scale_by_rss(0.0, eps=0.1, eps_in_sqrt=False)),
        lambda: ref_descend(ref.ref_scale_by_rss(0.0, 0.1, False)),
    ),
    _case(
        "rms_eps_in_sqrt",
        lambda: descend(scale_by_rms(0.8, eps=0.05, initial_scale=0.5)),
        lambda: ref_descend(ref.ref_scale_by_rms(0.8, 0.05, 0.5)),
    ),
    _case(
        "rms_eps_outside",
        lambda: descend(scale_by_rms(0.8, eps=0.1, eps_in_sqrt=False)),
        lambda: ref_descend(ref.ref_scale_by_rms(0.8, 0.1, eps_in_sqrt=False)),
    ),
    _case(
        "rms_bias_correction",
        lambda: descend(scale_by_rms(0.8, eps=0.05, bias_correction=True)),
        lambda: ref_descend(ref.ref_scale_by_rms(0.8, 0.05, bias_correction=True)),
    ),
    _case(
        "rms_bias_correction_eps_outside",
        lambda: descend(scale_by_rms(0.8, eps=0.1, eps_in_sqrt=False, bias_correction=True)),
        lambda: ref_descend(ref.ref_scale_by_rms(0.8, 0.1, eps_in_sqrt=False, bias_correction=True)),
    ),
    _case(
        "rms_low_precision",
        lambda: descend(scale_by_rms(0.8, eps=0.05)),
        lambda: ref_descend(ref.ref_scale_by_rms(0.8, 0.05)),
        True,
    ),
    _case(
        "stddev",
        lambda: descend(scale_by_stddev(0.8, eps=0.05)),
        lambda: ref_descend(ref.ref_scale_by_stddev(0.8, 0.05)),
    ),
    # With bias correction the first variance is g^2 - g^2 = 0 up to round-off, and sqrt(round-off)
    # next to eps would swamp the comparison; so eps sits inside the root in that case.
    _case(
        "stddev_eps_outside",
        lambda: descend(scale_by_stddev(0.8, eps=0.1, eps_in_sqrt=False)),
        lambda: ref_descend(ref.ref_scale_by_stddev(0.8, 0.1, eps_in_sqrt=False)),
    ),
    _case(
        "stddev_bias_correction",
        lambda: descend(scale_by_stddev(0.8, eps=0.05, bias_correction=True)),
        lambda: ref_descend(ref.ref_scale_by_stddev(0.8, 0.05, bias_correction=True)),
    ),
    _case(
        "scale_by_adam",
        lambda: descend(scale_by_adam(0.8, 0.95, eps=0.01)),
        lambda: ref_descend(ref.ref_scale_by_adam(0.8, 0.95, 0.01)),
    ),
    _case(
        "scale_by_adam_nesterov",
        lambda: descend(scale_by_adam(0.8, 0.95, eps=0.01, nesterov=True)),
        lambda: ref_descend(ref.ref_scale_by_adam(0.8, 0.95, 0.01, nesterov=True)),
    ),
    _case(
        "scale_by_adam_eps_root",
        lambda: descend(scale_by_adam(0.8, 0.95, eps=0.0, eps_root=0.05)),
        lambda: ref_descend(ref.ref_scale_by_adam(0.8, 0.95, 0.0, eps_root=0.05)),
    ),
    _case(
        "scale_by_adam_low_precision",
        lambda: descend(scale_by_adam(0.8, 0.95, eps=0.01)),
        lambda: ref_descend(ref.ref_scale_by_adam(0.8, 0.95, 0.01)),
        True,
    ),
    _case("decay", lambda: descend(add_decayed_weights(0.3)), lambda: ref_descend(ref.ref_add_decayed_weights(0.3))),
    _case(
        "decay_mask_fn",
        lambda: descend(add_decayed_weights(0.3, mask=tr.tree_rule(tr.is_matrix))),
        lambda: ref_descend(ref.ref_add_decayed_weights(0.3, tr.is_matrix)),
    ),
    _case(
        "decay_mask_tree_low_precision",
        lambda: descend(add_decayed_weights(0.3, mask=tr.explicit_mask(tr.make_params(True)))),
        lambda: ref_descend(ref.ref_add_decayed_weights(0.3, tr.is_matrix)),
        True,
    ),
    _case("trust_ratio", lambda: descend(scale_by_trust_ratio()), lambda: ref_descend(ref.ref_scale_by_trust_ratio())),
    _case(
        "trust_ratio_options",
        lambda: descend(scale_by_trust_ratio(min_norm=0.5, trust_coefficient=0.3, eps=0.1)),
        lambda: ref_descend(ref.ref_scale_by_trust_ratio(0.5, 0.3, 0.1)),
    ),
    _case("clip", lambda: descend(clip(0.8)), lambda: ref_descend(ref.ref_clip(0.8))),
    _case(
        "clip_by_global_norm",
        lambda: descend(clip_by_global_norm(1.5)),
        lambda: ref_descend(ref.ref_clip_by_global_norm(1.5)),
    ),
    _case(
        "clip_by_global_norm_low_precision",
        lambda: descend(clip_by_global_norm(1.5)),
        lambda: ref_descend(ref.ref_clip_by_global_norm(1.5)),
        True,
    ),
    _case(
        "masked",
        lambda: descend(masked(trace(0.8), tr.tree_rule(tr.is_matrix))),
        lambda: ref_descend(ref.ref_masked(ref.ref_trace(0.8), tr.is_matrix)),
    ),
    _case(
        "masked_tree",
        lambda: descend(masked(scale_by_adam(0.8, 0.95, 0.01), tr.explicit_mask(tr.make_params()))),
        lambda: ref_descend(ref.ref_masked(ref.ref_scale_by_adam(0.8, 0.95, 0.01), tr.is_matrix)),
    ),
    _case(
        "partition",
        lambda: partition({"dense": trace(0.8), "rest": scale(3.0)}, tr.tree_rule(tr.group_of)),
        lambda: ref.ref_partition({"dense": ref.ref_trace(0.8), "rest": ref.ref_scale(3.0)}, tr.group_of),
    ),
    _case(
        "multi_transform",
        lambda: descend(
            optcompose.multi_transform({"dense": scale_by_adam(), "rest": ema(0.5)}, tr.tree_rule(tr.group_of))
        ),
        lambda: ref_descend(
            ref.ref_partition({"dense": ref.ref_scale_by_adam(), "rest": ref.ref_ema(0.5)}, tr.group_of)
        ),
    ),
    _case(
        "freeze",
        lambda: descend(freeze(tr.tree_rule(tr.is_matrix))),
        lambda: ref_descend(ref.ref_freeze(tr.is_matrix)),
    ),
    _case("identity", lambda: descend(identity()), lambda: ref_descend(ref.ref_identity())),
    _case("set_to_zero", lambda: descend(set_to_zero()), lambda: ref_descend(ref.ref_set_to_zero())),
    _case(
        "stateless",
        lambda: descend(stateless(_stateless_fn)),
        lambda: ref_descend(ref.ref_stateless(lambda g, w: g - 0.5 * w)),
    ),
    _case(
        "chain_nested",
        lambda: chain(clip(1.0), chain(trace(0.5), scale_by_learning_rate(LR))),
        lambda: ref.ref_chain(ref.ref_clip(1.0), ref.ref_trace(0.5), ref.ref_scale_by_learning_rate(LR)),
    ),
    _case(
        "named_chain",
        lambda: named_chain(
            ("clip", clip(1.0)), ("adam", scale_by_adam(0.8, 0.95, 0.01)), ("lr", scale_by_learning_rate(LR))
        ),
        lambda: ref.ref_chain(
            ref.ref_clip(1.0), ref.ref_scale_by_adam(0.8, 0.95, 0.01), ref.ref_scale_by_learning_rate(LR)
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_transform_matches_reference_jit(case):
    tr.check_case(case, "jit", CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_transform_matches_reference_eager(case):
    tr.check_case(case, "eager")


# ----------------------------------------------------------------------------------------------
# Exact values and edge cases.


def test_trust_ratio_is_one_when_a_norm_is_zero():
    tx = scale_by_trust_ratio(trust_coefficient=0.5)
    params = {"zero_w": jnp.zeros(3), "w": jnp.array([3.0, 4.0])}
    updates = {"zero_w": jnp.array([1.0, -2.0, 2.0]), "w": jnp.zeros(2)}
    out, _ = jax.jit(tx.update)(updates, tx.init(params), params)
    chex.assert_trees_all_equal(out, updates)
    # Both norms nonzero: 0.5 * ||w|| / ||u|| = 0.5 * 5 / 10 = 0.25.
    out, _ = tx.update({"zero_w": jnp.ones(3), "w": jnp.array([6.0, 8.0])}, tx.init(params), params)
    np.testing.assert_allclose(out["w"], [1.5, 2.0], rtol=1e-6)
    np.testing.assert_array_equal(out["zero_w"], np.ones(3))


def test_clip_by_global_norm_zero_and_small_and_large():
    tx = clip_by_global_norm(1.0)
    update = jax.jit(tx.update)
    zeros = {"a": jnp.zeros((2, 2)), "b": jnp.zeros(())}
    out, _ = update(zeros, tx.init(zeros))
    chex.assert_tree_all_finite(out)
    chex.assert_trees_all_equal(out, zeros)
    small = {"a": jnp.full((2, 2), 0.1), "b": jnp.asarray(0.2)}
    out, _ = update(small, tx.init(small))
    chex.assert_trees_all_equal(out, small)
    large = {"a": jnp.full((2, 2), 3.0), "b": jnp.asarray(-8.0)}  # norm sqrt(36 + 64) = 10
    out, _ = update(large, tx.init(large))
    chex.assert_trees_all_close(out, {"a": jnp.full((2, 2), 0.3), "b": jnp.asarray(-0.8)}, rtol=1e-6)


def test_clip_bounds_every_coordinate():
    tx = clip(0.5)
    out, _ = tx.update({"a": jnp.array([-2.0, -0.25, 0.0, 0.5, 3.0])}, tx.init(None))
    np.testing.assert_array_equal(out["a"], [-0.5, -0.25, 0.0, 0.5, 0.5])


def test_ema_debiased_first_step_is_the_gradient():
    tx = ema(0.9)
    g = {"a": jnp.array([1.0, -3.0])}
    out, state = tx.update(g, tx.init(g))
    np.testing.assert_allclose(out["a"], g["a"], rtol=1e-6)
    np.testing.assert_allclose(state.ema["a"], 0.1 * g["a"], rtol=1e-6)


def test_rss_untouched_coordinate_gets_zero_update():
    tx = scale_by_rss(initial_accumulator_value=0.0, eps=0.0)
    g = {"a": jnp.array([0.0, 2.0])}
    out, _ = tx.update(g, tx.init(g))
    chex.assert_tree_all_finite(out)
    np.testing.assert_allclose(out["a"], [0.0, 1.0])


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


def test_freeze_keeps_frozen_parameters_exactly():
    params, noise = tr.problem(False)
    trajectory, _ = tr.run_trajectory(descend(freeze(tr.tree_rule(tr.is_matrix))), params, noise, "jit")
    final = jax.tree.map(lambda x: x[-1], trajectory)
    np.testing.assert_array_equal(final["dense"]["kernel"], params["dense"]["kernel"])
    np.testing.assert_array_equal(final["conv"]["w"], params["conv"]["w"])
    assert not np.array_equal(final["dense"]["bias"], params["dense"]["bias"])
