"""apply_if_finite: skipped steps leave params and inner state untouched; counts; Optax parity."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_trees_close, assert_trees_equal

from optcompose._base import GradientTransformationExtraArgs, apply_updates, chain, identity
from optcompose._hyperparams import get_hyperparams, set_hyperparams
from optcompose._tree import INT32_MAX
from optcompose.optimizers._classic import adam, sgd
from optcompose.transforms._guards import ApplyIfFiniteState, all_finite, apply_if_finite
from optcompose.transforms._scaling import scale_by_learning_rate

NAN, INF = float("nan"), float("inf")
# Gradient values for a sequence of steps; 0 marks a finite step, the others poison one entry.
SEQUENCE = [0, NAN, INF, 0, NAN, -INF, NAN, NAN, 0, NAN]
MAX_ERRORS = 2


def _grads(step, bad):
    base = jnp.asarray([0.5, -1.0, 0.25], jnp.float32) * (1 + step)
    return {"w": base.at[1].set(bad) if bad != 0 else base, "b": jnp.asarray(0.1 * (step + 1), jnp.float32)}


PARAMS = {"w": jnp.asarray([1.0, 2.0, 3.0], jnp.float32), "b": jnp.asarray(0.5, jnp.float32)}
GUARDED = apply_if_finite(adam(0.1), MAX_ERRORS)
GUARDED_STEP = jax.jit(GUARDED.update)


def test_state_fields_and_init():
    state = GUARDED.init(PARAMS)
    assert isinstance(state, ApplyIfFiniteState)
    assert state._fields == ("notfinite_count", "last_finite", "total_notfinite", "inner_state")
    assert state.notfinite_count.dtype == jnp.int32 and int(state.notfinite_count) == 0
    assert state.last_finite.dtype == jnp.bool_ and bool(state.last_finite)
    assert int(state.total_notfinite) == 0


def test_skipped_step_leaves_params_and_inner_state_untouched():
    state = GUARDED.init(PARAMS)
    updates, state = GUARDED_STEP(_grads(0, 0), state, PARAMS)
    params = apply_updates(PARAMS, updates)
    before = state
    updates, state = GUARDED_STEP(_grads(1, NAN), state, params)
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))
    assert_trees_equal(apply_updates(params, updates), params)
    assert_trees_equal(state.inner_state, before.inner_state)
    assert int(state.notfinite_count) == 1 and int(state.total_notfinite) == 1
    assert not bool(state.last_finite)


def test_counts_and_updates_match_optax_over_a_sequence():
    ours_state = GUARDED.init(PARAMS)
    ref = optax.apply_if_finite(optax.adam(0.1), MAX_ERRORS)
    ref_state, ref_step = ref.init(PARAMS), jax.jit(ref.update)
    params = ref_params = PARAMS
    expected_consecutive = expected_total = 0
    for step, bad in enumerate(SEQUENCE):
        grads = _grads(step, bad)
        updates, ours_state = GUARDED_STEP(grads, ours_state, params)
        ref_updates, ref_state = ref_step(grads, ref_state, ref_params)
        params = apply_updates(params, updates)
        ref_params = optax.apply_updates(ref_params, ref_updates)
        expected_consecutive = 0 if bad == 0 else expected_consecutive + 1
        expected_total += bad != 0
        assert int(ours_state.notfinite_count) == expected_consecutive == int(ref_state.notfinite_count)
        assert int(ours_state.total_notfinite) == expected_total == int(ref_state.total_notfinite)
        assert bool(ours_state.last_finite) == (bad == 0) == bool(ref_state.last_finite)
        let_through = bad == 0 or expected_consecutive > MAX_ERRORS
        assert int(ours_state.inner_state[0].count) == int(ref_state.inner_state[0].count)
        # NaNs where Optax has NaNs, the rest within float32 round-off.
        assert_trees_close(updates, ref_updates, rtol=2e-5, atol=1e-7, equal_nan=True)
        if not let_through:
            assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))
    # Inner steps: 0 and 3 (finite), 6 and 7 (3rd and 4th bad in a row: let through), 8 (finite).
    assert int(ours_state.inner_state[0].count) == 5


def test_gives_up_after_max_consecutive_errors():
    guarded = apply_if_finite(sgd(1.0), 1)
    state = guarded.init(PARAMS)
    bad = _grads(0, NAN)
    u1, state = guarded.update(bad, state, PARAMS)
    assert np.all(np.asarray(u1["w"]) == 0)
    u2, state = guarded.update(bad, state, PARAMS)  # 2 > max_consecutive_errors = 1: let through
    assert np.isnan(np.asarray(u2["w"])[1]) and np.asarray(u2["w"])[0] == -0.5
    assert int(state.notfinite_count) == 2


def test_zero_max_errors_lets_everything_through():
    guarded = apply_if_finite(sgd(1.0), 0)
    updates, _ = guarded.update(_grads(0, INF), guarded.init(PARAMS), PARAMS)
    assert np.isinf(np.asarray(updates["w"])[1])


def test_runs_in_scan_and_matches_numpy_sgd_reference():
    guarded = apply_if_finite(sgd(0.5, momentum=0.9), 3)
    bads = jnp.asarray([0, 1, 0, 1, 1, 0, 0, 1], bool)
    grads = jnp.stack([jnp.asarray([1.0, -2.0]) * (i + 1) for i in range(len(bads))])

    def body(carry, inputs):
        params, state = carry
        g, bad = inputs
        g = jnp.where(bad, jnp.nan, g)
        updates, state = guarded.update(g, state, params)
        return (apply_updates(params, updates), state), None

    params0 = jnp.asarray([1.0, 1.0])
    run = jax.jit(lambda carry, xs: jax.lax.scan(body, carry, xs))
    (params, state), _ = run((params0, guarded.init(params0)), (grads, bads))
    p, v = np.asarray(params0, np.float64), np.zeros(2)
    for g, bad in zip(np.asarray(grads), np.asarray(bads), strict=True):
        if not bad:
            v = 0.9 * v + g
            p = p - 0.5 * v
    np.testing.assert_allclose(np.asarray(params), p, rtol=1e-6)
    assert int(state.total_notfinite) == 4 and int(state.notfinite_count) == 1


def test_hyperparams_seen_through_the_guard():
    state = GUARDED.init(PARAMS)
    hp = get_hyperparams(state)
    assert float(hp["learning_rate"]) == pytest.approx(0.1) and float(hp["b1"]) == pytest.approx(0.9)
    state = set_hyperparams(state, learning_rate=0.0)
    assert float(get_hyperparams(state)["learning_rate"]) == 0.0
    updates, _ = GUARDED_STEP(_grads(0, 0), state, PARAMS)  # same compiled step, new value used
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))


def test_inner_schedule_does_not_advance_on_skipped_steps():
    guarded = apply_if_finite(scale_by_learning_rate(lambda count: 1.0 / (1.0 + count)), 5)
    state = guarded.init(PARAMS)
    for bad in (0, NAN, NAN, 0):
        updates, state = guarded.update(_grads(0, bad), state, PARAMS)
    assert int(state.inner_state.count) == 2
    assert float(get_hyperparams(state)["learning_rate"]) == pytest.approx(1.0 / 3.0)
    np.testing.assert_allclose(np.asarray(updates["b"]), -0.5 * 0.1, rtol=1e-6)


def test_total_count_saturates_at_int32_max():
    guarded = apply_if_finite(sgd(1.0), INT32_MAX)
    state = guarded.init(PARAMS)._replace(
        notfinite_count=jnp.asarray(INT32_MAX - 1, jnp.int32), total_notfinite=jnp.asarray(INT32_MAX, jnp.int32)
    )
    for _ in range(2):
        updates, state = guarded.update(_grads(0, NAN), state, PARAMS)
    assert int(state.total_notfinite) == INT32_MAX and int(state.notfinite_count) == INT32_MAX
    # count > max is impossible once both saturate at INT32_MAX, so the guard keeps skipping.
    assert np.all(np.asarray(updates["w"]) == 0)


def test_none_leaves_empty_trees_and_bfloat16():
    guarded = apply_if_finite(adam(0.1), 1)
    params = {"w": jnp.ones(2, jnp.bfloat16), "frozen": None}
    state = guarded.init(params)
    updates, state = guarded.update({"w": jnp.asarray([1.0, jnp.inf], jnp.bfloat16), "frozen": None}, state, params)
    assert updates["frozen"] is None and updates["w"].dtype == jnp.bfloat16
    empty = apply_if_finite(adam(0.1), 1)
    updates, state = empty.update({}, empty.init({}), {})
    assert updates == {} and bool(state.last_finite)


def test_in_chain_and_extra_args_forwarded():
    seen = {}

    def spy_update(updates, state, params=None, **extra_args):
        seen.update(extra_args)
        return updates, state

    spy = GradientTransformationExtraArgs(identity().init, spy_update)
    tx = chain(apply_if_finite(spy, 0), sgd(1.0))
    updates, _ = jax.jit(tx.update)(PARAMS, tx.init(PARAMS), PARAMS, loss=jnp.asarray(3.0))
    assert "loss" in seen
    np.testing.assert_allclose(np.asarray(updates["w"]), -np.asarray(PARAMS["w"]))


def test_all_finite_helper():
    assert bool(all_finite({}))
    assert bool(all_finite({"a": jnp.ones(2), "i": jnp.arange(3), "n": None}))
    assert not bool(all_finite({"a": jnp.asarray([1.0, jnp.nan])}))


def test_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match="max_consecutive_errors must be an integer >= 0"):
        apply_if_finite(sgd(1.0), -1)
    with pytest.raises(TypeError, match="max_consecutive_errors must be an integer"):
        apply_if_finite(sgd(1.0), 2.5)
    with pytest.raises(TypeError, match="inner must be a GradientTransformation"):
        apply_if_finite(lambda g: g, 2)
