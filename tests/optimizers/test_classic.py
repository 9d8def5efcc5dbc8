"""optcompose/optimizers/_classic.py beyond the table: first steps by hand, decoupled decay, dtypes.

Every optimizer's trajectory against its reference (written from the paper), jit / eager / pmap,
Optax parity, Flax, checkpoints, edge values and dtypes are rows of the table
(tests/rows/classic.py, run by tests/table/); here are the values worth writing out by hand.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
import trajectory as tr
from cases import CASES_BY_NAME
from helpers import assert_finite, assert_trees_close, float_dtypes, tree_allclose
from rows.classic import ADAM, WD

import optcompose as oc
from optcompose import optimizers
from optcompose._base import apply_updates, chain
from optcompose._hyperparams import get_hyperparams
from optcompose._numerics import bias_correction_factor
from optcompose.optimizers._classic import adagrad, adam, adamw, lamb, lars, rmsprop, sgd
from optcompose.transforms._decay import add_decayed_weights

VECTOR = np.asarray([1.0, -2.0, 0.5], np.float32)


def _run(tx, params, grads, steps):
    state = tx.init(params)
    for _ in range(steps):
        updates, state = tx.update(grads, state, params)
        params = apply_updates(params, updates)
    return updates, state, params


def test_adamw_decoupled_decay_differs_from_adam_l2():
    """The seed's central claim: the same gradients, the same wd, different trajectories.

    Each run matches its own reference (AdamW: decay outside the moments; Adam + L2: decay inside
    them, as torch.optim.Adam(weight_decay=...)), and the two end up clearly apart.
    """
    pair = [CASES_BY_NAME["adamw"], CASES_BY_NAME["adam_l2"]]
    params, noise = tr.problem(False)
    finals = {}
    for case, decoupled in zip(pair, [True, False], strict=True):
        trajectory, _ = tr.result(pair, case, "jit")
        expected = tr.reference_trajectory(
            ref.ref_adam(0.05, **ADAM, weight_decay=WD, decoupled=decoupled), params, noise
        )
        final = jax.tree.map(lambda x: x[-1], trajectory)
        assert_trees_close(tr.flatten(final), expected[-1], rtol=2e-5, atol=2e-6)
        finals[case.name] = tr.flatten(final)
    assert not tree_allclose(finals["adamw"], finals["adam_l2"], rtol=1e-3, atol=1e-3)
    gap = max(np.max(np.abs(finals["adamw"][k] - finals["adam_l2"][k])) for k in finals["adamw"])
    assert gap > 1e-2, gap


def test_decoupled_decay_with_zero_gradient_only_shrinks_weights():
    """With g = 0 Adam's direction is 0, so AdamW gives w -> (1 - lr wd) w and Adam + L2 gives
    w -> w - lr * (wd w) / (|wd w| + eps) (the decay normalised by the adaptive denominator)."""
    lr, wd, eps = 0.1, 0.5, 1e-3
    w = {"w": jnp.array([2.0, -0.5, 0.0])}
    g = jax.tree.map(jnp.zeros_like, w)
    decoupled = adamw(lr, eps=eps, weight_decay=wd)
    coupled = chain(add_decayed_weights(wd), adam(lr, eps=eps))
    u_w, _ = decoupled.update(g, decoupled.init(w), w)
    u_l2, _ = coupled.update(g, coupled.init(w), w)
    assert_trees_close(u_w, {"w": -lr * wd * w["w"]}, rtol=1e-6, atol=0)
    decay = wd * w["w"]
    assert_trees_close(u_l2, {"w": -lr * decay / (jnp.abs(decay) + eps)}, rtol=1e-5, atol=0)


def test_adam_bias_correction_at_first_step():
    """t = 1: m_1 = (1 - b1) g and m_hat = m_1 / (1 - b1) = 10 m_1 = g for b1 = 0.9; likewise
    v_hat = g^2, so the first update is exactly -lr * g / (|g| + eps)."""
    assert float(bias_correction_factor(jnp.float32(0.9), jnp.int32(1))) == pytest.approx(10.0, rel=1e-6)
    lr, eps = 0.3, 1e-3
    g = {"a": jnp.array([2.0, -0.5, 1e-4, 0.0]), "b": jnp.array([[3.0]])}
    tx = adam(lr, b1=0.9, b2=0.999, eps=eps)
    updates, state = jax.jit(tx.update)(g, tx.init(g))
    expected = jax.tree.map(lambda x: -lr * x / (jnp.abs(x) + eps), g)
    assert_trees_close(updates, expected, rtol=1e-6, atol=1e-9)
    assert_trees_close(jax.tree.map(lambda m: 10.0 * m, state[0].mu), g, rtol=1e-6, atol=0)
    assert_trees_close(jax.tree.map(lambda v: 1000.0 * v, state[0].nu), jax.tree.map(jnp.square, g), rtol=1e-4, atol=0)


def test_nadam_first_step():
    """Nesterov Adam at t = 1: m_hat = b1 m_1 / (1 - b1^2) + (1 - b1) g / (1 - b1)
    = (1 + b1 / (1 + b1)) g, so the update is -lr (1 + b1 / (1 + b1)) g / (|g| + eps)."""
    lr, eps, b1 = 0.3, 1e-3, 0.9
    g = {"a": jnp.array([2.0, -0.5])}
    tx = adam(lr, b1=b1, eps=eps, nesterov=True)
    updates, _ = tx.update(g, tx.init(g))
    factor = 1 + b1 / (1 + b1)
    assert_trees_close(updates, {"a": -lr * factor * g["a"] / (jnp.abs(g["a"]) + eps)}, rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: sgd(0.1, momentum=0.9), {"learning_rate": 0.1, "momentum": 0.9}),
        (lambda: adagrad(0.2, eps=1e-10), {"learning_rate": 0.2, "eps": 1e-10}),
        (
            lambda: rmsprop(0.01, decay=0.99, eps=1e-8, centered=True, momentum=0.5),
            {"learning_rate": 0.01, "eps": 1e-8},
        ),
        (lambda: adam(1e-3, b1=0.8, b2=0.95), {"learning_rate": 1e-3, "b1": 0.8, "b2": 0.95, "eps": 1e-8}),
        (lambda: adamw(3e-4, weight_decay=0.05), {"learning_rate": 3e-4, "weight_decay": 0.05, "b2": 0.999}),
        (
            lambda: lars(0.5, weight_decay=1e-4, trust_coefficient=0.002),
            {"learning_rate": 0.5, "trust_coefficient": 0.002},
        ),
        (lambda: lamb(2e-3, weight_decay=0.01), {"learning_rate": 2e-3, "weight_decay": 0.01}),
    ],
    ids=["sgd", "adagrad", "rmsprop", "adam", "adamw", "lars", "lamb"],
)
def test_get_hyperparams_reports_the_settings(make, expected):
    params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
    tx = make()
    state = tx.init(params)
    for current in (state, tx.update(params, state, params)[1]):
        found = get_hyperparams(current)
        for name, value in expected.items():
            assert name in found, (name, sorted(found))
            assert float(found[name]) == pytest.approx(value, rel=1e-6), name


def test_get_hyperparams_follows_a_schedule():
    schedule = lambda count: 0.1 / (1.0 + count)
    tx = sgd(schedule, momentum=0.9)
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    assert float(get_hyperparams(state)["learning_rate"]) == pytest.approx(0.1)
    _, state = tx.update(params, state, params)
    assert float(get_hyperparams(state)["learning_rate"]) == pytest.approx(0.05)


# ----------------------------------------------------------------------------------------------
# Trust ratios at zero and extreme norms.


def _tree(a, b):
    return {"a": jnp.asarray(a, jnp.float32), "b": jnp.asarray(b, jnp.float32)}


def test_trust_ratio_is_one_for_zero_params():
    # ||w|| = 0 (a zero-initialised bias): LARS steps as plain SGD with momentum, LAMB as Adam.
    updates, _, _ = _run(lars(0.1, weight_decay=0.01), _tree(np.zeros(3), 0.0), _tree(VECTOR, -1.0), 1)
    assert_trees_close(updates["a"], -0.1 * VECTOR, rtol=1e-6, atol=0)
    updates, _, _ = _run(lamb(0.1, weight_decay=0.01), _tree(np.zeros(3), 0.0), _tree(VECTOR, -1.0), 1)
    assert_trees_close(updates["a"], -0.1 * np.sign(VECTOR), rtol=1e-5, atol=0)


@pytest.mark.parametrize("magnitude", [1e30, 1e-30])
def test_lars_ratio_rescales_instead_of_overflowing(magnitude):
    # ratio = 0.001 * ||w|| / ||g|| = 0.001 when w = g; update = -lr * ratio * (g + wd * w).
    grads = _tree(VECTOR * magnitude, 0.0)
    updates, _, _ = _run(lars(0.1, weight_decay=0.01), _tree(VECTOR * magnitude, 0.0), grads, 1)
    assert_trees_close(updates["a"], -0.1 * 0.001 * VECTOR * magnitude, rtol=1e-6, atol=0)


# ----------------------------------------------------------------------------------------------
# Dtypes: chosen moment dtypes, mixed trees, float64 accuracy, training in bfloat16 / float16.


def test_moments_in_a_chosen_dtype():
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    state = adam(0.1, mu_dtype=jnp.float32, nu_dtype=jnp.float32).init(params)
    assert state[0].mu["w"].dtype == jnp.float32 and state[0].nu["w"].dtype == jnp.float32
    state = adam(0.1, mu_dtype=jnp.bfloat16).init({"w": jnp.ones(3, jnp.float32)})
    assert state[0].mu["w"].dtype == jnp.bfloat16 and state[0].nu["w"].dtype == jnp.float32
    state = sgd(0.1, momentum=0.9, accumulator_dtype=jnp.float32).init(params)
    assert state[0].trace["w"].dtype == jnp.float32


def test_each_leaf_keeps_its_own_dtype_in_a_mixed_tree():
    params = {"a": jnp.ones(2, jnp.bfloat16), "b": jnp.ones(2, jnp.float32), "c": jnp.ones(2, jnp.float16)}
    tx = adam(0.1, mu_dtype=jnp.float32)
    updates, state = tx.update(params, tx.init(params), params)
    assert {k: v.dtype for k, v in updates.items()} == {k: v.dtype for k, v in params.items()}
    assert float_dtypes(state[0].mu) == {jnp.dtype(jnp.float32)}
    assert {k: v.dtype for k, v in state[0].nu.items()} == {k: v.dtype for k, v in params.items()}


def _mlp(params, x):
    hidden = jnp.tanh(x @ params["w1"] + params["b1"])
    return (hidden @ params["w2"] + params["b2"])[:, 0]


def _train(dtype, tx, steps=300):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(64, 2)).astype(np.float32)
    y = np.sin(2 * x[:, 0]) * x[:, 1]
    init = {
        "w1": rng.normal(size=(2, 16)) * 0.7,
        "b1": np.zeros(16),
        "w2": rng.normal(size=(16, 1)) * 0.3,
        "b2": np.zeros(1),
    }
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), init)
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)

    def loss_fn(params):
        return jnp.mean(jnp.square(_mlp(params, x).astype(jnp.float32) - y.astype(jnp.float32)))

    def body(carry, _):
        params, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params)
        return (apply_updates(params, updates), state), loss

    (params, state), losses = jax.jit(lambda c: jax.lax.scan(body, c, None, length=steps))((params, tx.init(params)))
    return params, state, np.asarray(losses)


@pytest.mark.slow
def test_trains_a_bfloat16_model():
    tx = adam(0.02, mu_dtype=jnp.float32, nu_dtype=jnp.float32)
    params, state, losses = _train(jnp.bfloat16, tx)
    assert float_dtypes(params) == {jnp.dtype(jnp.bfloat16)}
    assert float_dtypes(state[0].mu) == {jnp.dtype(jnp.float32)}
    assert np.all(np.isfinite(losses))
    assert losses[-10:].mean() < 0.1 * losses[0]
    _, _, losses32 = _train(jnp.float32, tx)
    assert losses[-10:].mean() < 3 * losses32[-10:].mean() + 1e-3  # as good as float32, near enough


def test_trains_a_float16_model_with_float32_second_moment():
    # float16 cannot hold (1 - b2) * g**2 for small g (it underflows below 6e-8); keep nu in float32.
    tx = adam(0.02, nu_dtype=jnp.float32)
    params, _, losses = _train(jnp.float16, tx)
    assert float_dtypes(params) == {jnp.dtype(jnp.float16)}
    assert np.all(np.isfinite(losses)) and losses[-10:].mean() < 0.1 * losses[0]


def test_float64_training_is_float64_accurate():
    # Adam with b2 = 0.9999 in float64: hyperparameters and bias corrections follow the parameters'
    # dtype (float32 storage would be off by ~1e-5 relative after 10 steps).
    with jax.enable_x64(True):
        w = np.linspace(-1.0, 1.0, 5)
        params = {"w": jnp.asarray(w, jnp.float64)}
        tx = oc.adam(0.01, b2=0.9999)
        state = tx.init(params)
        assert state[0].hyperparams["b2"].dtype == jnp.float64
        m = v = np.zeros(5)
        for t in range(1, 11):
            g = np.cos(w) + 0.1
            m, v = 0.9 * m + 0.1 * g, 0.9999 * v + 0.0001 * g * g
            w = w - 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.9999**t)) + 1e-8)
            updates, state = tx.update({"w": jnp.cos(params["w"]) + 0.1}, state, params)
            params = oc.apply_updates(params, updates)
        assert_trees_close(params["w"], w, rtol=1e-12, atol=0)


# ----------------------------------------------------------------------------------------------
# eps = 0 for every optimizer of the namespace (discovered, so a new optimizer is checked here).


def _optimizers():
    names = sorted(n for n in dir(optimizers) if not n.startswith("_") and callable(getattr(optimizers, n)))
    return [n for n in names if "learning_rate" in inspect.signature(getattr(optimizers, n)).parameters]


# Optimizers whose update needs extra arguments (lbfgs: value, grad, value_fn) are checked in their own tests.
NEEDS_EXTRA_ARGS = {"lbfgs"}


def _with_eps():
    return [
        n
        for n in _optimizers()
        if "eps" in inspect.signature(getattr(optimizers, n)).parameters and n not in NEEDS_EXTRA_ARGS
    ]


EPS_PARAMS = {"w": jnp.array([1.0, -2.0, 0.5]), "zero": jnp.zeros((2,)), "b": jnp.array([0.25, 0.5])}


def _eps_grads(params):
    # "zero" never sees a gradient: 0 / (sqrt(0) + eps) with eps = 0 must be 0, not NaN.
    return {"w": jnp.cos(params["w"]) + 0.1, "zero": jnp.zeros((2,)), "b": jnp.array([1.0, -1.0])}


EPS_KNOWN = {
    # Found by this test and not fixed yet (issue 14, item 13): the test must start passing, then the entry goes.
    "yogi": "eps=0: yogi starts both moments at initial_accumulator_value=1e-6 (as Optax), so a leaf that never sees "
    "a gradient still moves (and its update can be non-finite)",
}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=EPS_KNOWN[n])) if n in EPS_KNOWN else n
        for n in _with_eps()
    ],
)
def test_eps_zero_gives_finite_updates_on_zero_gradient_leaves(name):
    tx = getattr(optimizers, name)(0.1, eps=0.0)
    state, params = tx.init(EPS_PARAMS), EPS_PARAMS
    for _ in range(3):
        updates, state = tx.update(_eps_grads(params), state, params)
        params = oc.apply_updates(params, updates)
    assert_finite(params, f"{name}: ")
    assert_trees_close(params["zero"], jnp.zeros(2), exact=True)
