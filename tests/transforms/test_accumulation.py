"""MultiSteps: k micro-batches give the update of one k-times-larger batch."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_trees_close, assert_trees_equal

from optcompose._base import apply_updates, chain
from optcompose._hyperparams import get_hyperparams, set_hyperparams
from optcompose._tree import INT32_MAX
from optcompose.optimizers._classic import adam, sgd
from optcompose.transforms._accumulation import MultiSteps, MultiStepsState, skip_large_updates, skip_not_finite
from optcompose.transforms._clipping import clip_by_global_norm
from optcompose.transforms._scaling import scale_by_learning_rate

K, MICRO, STEPS = 4, 2, 3


def _loss(params, x, y):
    return jnp.mean(jnp.square(x @ params["w"] + params["b"] - y))


def _data(dyadic):
    rng = np.random.default_rng(0)
    n = K * MICRO * STEPS
    if dyadic:  # small integers / powers of two: every sum and mean below is exact in float32
        x = rng.integers(-3, 4, size=(n, 3)).astype(np.float32)
        y = rng.integers(-4, 5, size=(n,)).astype(np.float32)
    else:
        x = rng.normal(size=(n, 3)).astype(np.float32)
        y = rng.normal(size=(n,)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y)


PARAMS = {"w": jnp.asarray([0.5, -0.25, 1.0], jnp.float32), "b": jnp.asarray(0.0, jnp.float32)}


def _train_large(opt, x, y):
    """STEPS steps of ``opt`` on batches of K * MICRO examples."""

    def body(carry, batch):
        params, state = carry
        grads = jax.grad(_loss)(params, *batch)
        updates, state = opt.update(grads, state, params)
        return (apply_updates(params, updates), state), None

    xs, ys = x.reshape(STEPS, K * MICRO, -1), y.reshape(STEPS, K * MICRO)
    (params, _), _ = jax.lax.scan(body, (PARAMS, opt.init(PARAMS)), (xs, ys))
    return params


def _train_micro(multi, x, y):
    """STEPS * K micro-steps of ``MultiSteps`` on batches of MICRO examples."""

    def body(carry, batch):
        params, state = carry
        grads = jax.grad(_loss)(params, *batch)
        updates, state = multi.update(grads, state, params)
        return (apply_updates(params, updates), state), multi.has_updated(state)

    xs, ys = x.reshape(STEPS * K, MICRO, -1), y.reshape(STEPS * K, MICRO)
    (params, state), updated = jax.lax.scan(body, (PARAMS, multi.init(PARAMS)), (xs, ys))
    return params, state, updated


def _big_batch_grad_is_exact(x, y):
    """The large-batch gradient equals the mean of the micro-batch gradients bit for bit."""
    big = jax.grad(_loss)(PARAMS, x[: K * MICRO], y[: K * MICRO])
    micro = [jax.grad(_loss)(PARAMS, x[i * MICRO : (i + 1) * MICRO], y[i * MICRO : (i + 1) * MICRO]) for i in range(K)]
    mean = jax.tree.map(lambda *g: sum(g) / K, *micro)
    return all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(big), jax.tree.leaves(mean), strict=True))


@pytest.mark.parametrize("inner", ["sgd", "adam"])
def test_k_micro_batches_equal_one_large_batch_exactly(inner):
    x, y = _data(dyadic=True)
    assert _big_batch_grad_is_exact(x, y)  # the premise: with dyadic data no rounding happens
    opt = sgd(0.125, momentum=0.5) if inner == "sgd" else adam(0.125)
    large = jax.jit(_train_large, static_argnums=0)(opt, x, y)
    micro, state, updated = jax.jit(_train_micro, static_argnums=0)(MultiSteps(opt, K), x, y)
    assert_trees_equal(micro, large)
    np.testing.assert_array_equal(np.asarray(updated), np.tile([False] * (K - 1) + [True], STEPS))
    assert int(state.gradient_step) == STEPS and int(state.mini_step) == 0


def test_k_micro_batches_match_large_batch_on_random_data():
    x, y = _data(dyadic=False)
    opt = chain(clip_by_global_norm(1.0), adam(0.05))
    large = jax.jit(_train_large, static_argnums=0)(opt, x, y)
    micro, _, _ = jax.jit(_train_micro, static_argnums=0)(MultiSteps(opt, K), x, y)
    assert_trees_close(micro, large, rtol=1e-6, atol=1e-6)


def test_matches_optax_multisteps():
    x, y = _data(dyadic=False)
    ours = MultiSteps(adam(0.05), 3)
    theirs = optax.MultiSteps(optax.adam(0.05), 3)
    ours_state, their_state = ours.init(PARAMS), theirs.init(PARAMS)
    ours_step, their_step = jax.jit(ours.update), jax.jit(theirs.update)
    for i in range(7):
        grads = jax.grad(_loss)(PARAMS, x[i * 2 : i * 2 + 2], y[i * 2 : i * 2 + 2])
        u, ours_state = ours_step(grads, ours_state, PARAMS)
        v, their_state = their_step(grads, their_state, PARAMS)
        assert_trees_close(u, v, rtol=2e-5, atol=1e-7)
        assert bool(ours.has_updated(ours_state)) == bool(theirs.has_updated(their_state))
        assert int(ours_state.mini_step) == int(their_state.mini_step)
        assert int(ours_state.gradient_step) == int(their_state.gradient_step)


def test_state_fields_and_memory_is_one_gradient_buffer():
    multi = MultiSteps(adam(0.1), 2)
    params = {"w": jnp.ones((3, 2), jnp.bfloat16), "b": jnp.ones(2, jnp.float32), "none": None}
    state = multi.init(params)
    assert isinstance(state, MultiStepsState)
    assert state._fields == ("mini_step", "gradient_step", "inner_opt_state", "acc_grads", "skip_state")
    inner_size = sum(np.size(leaf) for leaf in jax.tree.leaves(adam(0.1).init(params)))
    total = sum(np.size(leaf) for leaf in jax.tree.leaves(state))
    assert total == inner_size + 2 + (6 + 2)  # two counters + one buffer the size of the params
    assert state.acc_grads["w"].dtype == jnp.float32 and state.acc_grads["none"] is None
    updates, state = multi.update({"w": jnp.ones((3, 2), jnp.bfloat16), "b": jnp.ones(2), "none": None}, state, params)
    assert updates["w"].dtype == jnp.bfloat16 and updates["none"] is None
    assert multi.inner_opt is not None and not bool(multi.has_updated(state))


def test_sum_instead_of_mean():
    multi = MultiSteps(sgd(1.0), 3, use_grad_mean=False)
    state = multi.init(jnp.zeros(2))
    for g in (1.0, 2.0, 4.0):
        updates, state = multi.update(jnp.full(2, g), state)
    np.testing.assert_array_equal(np.asarray(updates), [-7.0, -7.0])


def test_inner_schedule_advances_once_per_real_step():
    schedule = lambda count: 1.0 / (1.0 + count)  # noqa: E731
    multi = MultiSteps(scale_by_learning_rate(schedule), 3)
    state = multi.init(jnp.zeros(1))
    step = jax.jit(multi.update)
    factors = []
    for _ in range(9):
        updates, state = step(jnp.ones(1), state)
        factors.append(float(updates[0]))
    np.testing.assert_allclose(factors, [0, 0, -1.0, 0, 0, -0.5, 0, 0, -1.0 / 3.0], rtol=1e-6)
    assert int(state.inner_opt_state.count) == 3 and int(state.gradient_step) == 3
    assert float(get_hyperparams(state)["learning_rate"]) == pytest.approx(0.25)


def test_every_k_schedule_may_vary():
    multi = MultiSteps(sgd(1.0), lambda step: jnp.where(step < 1, 1, 2))
    state = multi.init(jnp.zeros(1))
    emitted = []
    for _ in range(5):
        _, state = multi.update(jnp.ones(1), state)
        emitted.append(bool(multi.has_updated(state)))
    assert emitted == [True, False, True, False, True]


def test_hyperparams_of_the_inner_optimizer_are_visible_and_settable():
    multi = MultiSteps(adam(0.1, b1=0.8), 2)
    state = multi.init(PARAMS)
    hp = get_hyperparams(state)
    assert float(hp["learning_rate"]) == pytest.approx(0.1) and float(hp["b1"]) == pytest.approx(0.8)
    state = set_hyperparams(state, learning_rate=0.0)
    step = jax.jit(multi.update)
    for _ in range(2):
        updates, state = step(PARAMS, state, PARAMS)
    assert bool(multi.has_updated(state))
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))


def test_skip_not_finite_drops_the_micro_batch():
    multi = MultiSteps(sgd(1.0), 2, should_skip_update_fn=skip_not_finite)
    state = multi.init(jnp.zeros(2))
    assert set(state.skip_state) == {"should_skip", "num_not_finite"}
    _, state = multi.update(jnp.asarray([1.0, 3.0]), state)
    before = state
    updates, state = multi.update(jnp.asarray([jnp.nan, jnp.inf]), state)
    assert int(state.skip_state["num_not_finite"]) == 2 and bool(state.skip_state["should_skip"])
    assert int(state.mini_step) == 1 and np.all(np.asarray(updates) == 0)
    np.testing.assert_array_equal(np.asarray(state.acc_grads), np.asarray(before.acc_grads))
    updates, state = multi.update(jnp.asarray([3.0, 5.0]), state)
    np.testing.assert_array_equal(np.asarray(updates), [-2.0, -4.0])


def test_skip_large_updates():
    skip = functools.partial(skip_large_updates, max_squared_norm=10.0)
    multi = MultiSteps(sgd(1.0), 1, should_skip_update_fn=skip)
    state = multi.init(jnp.zeros(2))
    updates, state = multi.update(jnp.asarray([3.0, 4.0]), state)
    assert np.all(np.asarray(updates) == 0) and float(state.skip_state["norm_squared"]) == pytest.approx(25.0)
    updates, state = multi.update(jnp.asarray([1.0, 2.0]), state)
    np.testing.assert_array_equal(np.asarray(updates), [-1.0, -2.0])


def test_gradient_transformation_in_a_chain():
    multi = MultiSteps(sgd(1.0), 2).gradient_transformation()
    tx = chain(clip_by_global_norm(100.0), multi)
    state = tx.init(jnp.zeros(2))
    step = jax.jit(tx.update)
    _, state = step(jnp.asarray([1.0, 2.0]), state)
    updates, state = step(jnp.asarray([3.0, 4.0]), state)
    np.testing.assert_array_equal(np.asarray(updates), [-2.0, -3.0])


def test_gradient_step_saturates_at_int32_max():
    multi = MultiSteps(adam(0.1), 2)
    state = multi.init(jnp.zeros(2))._replace(gradient_step=jnp.asarray(INT32_MAX, jnp.int32))
    inner = state.inner_opt_state
    state = state._replace(inner_opt_state=(inner[0]._replace(count=jnp.asarray(INT32_MAX, jnp.int32)), inner[1]))
    for _ in range(4):
        updates, state = multi.update(jnp.asarray([1.0, -1.0]), state)
    assert int(state.gradient_step) == INT32_MAX and bool(multi.has_updated(state))
    assert np.all(np.isfinite(np.asarray(updates))) and np.all(np.asarray(updates) != 0)


def test_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match="every_k_schedule must be an integer >= 1"):
        MultiSteps(sgd(1.0), 0)
    with pytest.raises(TypeError, match="every_k_schedule must be an integer"):
        MultiSteps(sgd(1.0), 2.5)
    with pytest.raises(TypeError, match="opt must be a GradientTransformation"):
        MultiSteps("adam", 2)
    with pytest.raises(TypeError, match="should_skip_update_fn must be callable"):
        MultiSteps(sgd(1.0), 2, should_skip_update_fn=3)
    bad = MultiSteps(sgd(1.0), 2, should_skip_update_fn=lambda u, s, p: (jnp.zeros(2, bool), ()))
    with pytest.raises(ValueError, match="should_skip_update_fn must return a scalar bool"):
        bad.update(jnp.zeros(2), bad.init(jnp.zeros(2)))


ERROR_PARAMS = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}, "scale": jnp.ones(())}


def test_multisteps_checks_the_skip_function_output():
    bad = MultiSteps(sgd(0.1), 2, should_skip_update_fn=lambda u, s, p: (jnp.asarray(1.0), ()))
    with pytest.raises(ValueError, match=r"should_skip_update_fn must return a scalar bool array .* float32"):
        bad.update(ERROR_PARAMS, bad.init(ERROR_PARAMS), ERROR_PARAMS)
    # A schedule is pure, so its first value is checked at construction.
    with pytest.raises(ValueError, match=r"every_k_schedule must return a scalar, got an array of shape \(2,\)"):
        MultiSteps(sgd(0.1), lambda step: jnp.ones(2, jnp.int32))
