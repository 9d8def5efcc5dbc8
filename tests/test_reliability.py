"""Edge values every optimizer guarantees: eps = 0, float64 accuracy, strict dtype promotion, overflow.

The optimizers are discovered from ``optcompose.optimizers``, so a new optimizer is checked here
without a new line.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optcompose as oc
from optcompose import optimizers

# Optimizers whose update needs extra arguments (lbfgs: value, grad, value_fn) are checked in their own tests.
NEEDS_EXTRA_ARGS = {"lbfgs"}
# Found by this test and not fixed yet (issue 14, item 13): the test must start passing, then the entry goes.
KNOWN_EPS_ZERO_BUGS = {"yogi"}


def _optimizers():
    names = sorted(n for n in dir(optimizers) if not n.startswith("_") and callable(getattr(optimizers, n)))
    return [
        n for n in names
        if "learning_rate" in inspect.signature(getattr(optimizers, n)).parameters and n not in NEEDS_EXTRA_ARGS
    ]


def _eps_cases():
    return [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason="eps=0 gives a non-finite update")) if n in
        KNOWN_EPS_ZERO_BUGS else n
        for n in _optimizers()
    ]


def _build(name, **kwargs):
    factory = getattr(optimizers, name)
    accepted = inspect.signature(factory).parameters
    return factory(0.1, **{k: v for k, v in kwargs.items() if k in accepted})


PARAMS = {"w": jnp.array([1.0, -2.0, 0.5]), "zero": jnp.zeros((2,)), "b": jnp.array([0.25, 0.5])}


def _grads(params):
    # "zero" never sees a gradient: 0 / (sqrt(0) + eps) with eps = 0 must be 0, not NaN.
    return {"w": jnp.cos(params["w"]) + 0.1, "zero": jnp.zeros((2,)), "b": jnp.array([1.0, -1.0])}


@pytest.mark.parametrize("name", _eps_cases())
def test_eps_zero_gives_finite_updates_on_zero_gradient_leaves(name):
    factory = getattr(optimizers, name)
    if "eps" not in inspect.signature(factory).parameters:
        pytest.skip(f"{name} has no eps")
    tx = _build(name, eps=0.0)
    state, params = tx.init(PARAMS), PARAMS
    for _ in range(3):
        updates, state = tx.update(_grads(params), state, params)
        params = oc.apply_updates(params, updates)
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        assert np.all(np.isfinite(np.asarray(leaf))), f"{name}: {jax.tree_util.keystr(path)} is not finite"
    np.testing.assert_array_equal(np.asarray(params["zero"]), 0.0)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "float64"])
@pytest.mark.parametrize("name", _optimizers())
def test_every_optimizer_runs_under_strict_dtype_promotion(name, dtype):
    with jax.enable_x64(dtype == "float64"):
        params = jax.tree.map(lambda p: p.astype(dtype), PARAMS)
        tx = _build(name)
        with jax.numpy_dtype_promotion("strict"):
            state = tx.init(params)
            for _ in range(2):
                updates, state = tx.update(jax.tree.map(lambda g: g.astype(dtype), _grads(params)), state, params)
                params = oc.apply_updates(params, updates)
            new_params, _ = oc.step(tx, _grads(params), state, params) if dtype == "float32" else (params, state)
        assert all(leaf.dtype == jnp.dtype(dtype) for leaf in jax.tree.leaves(new_params))


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
        np.testing.assert_allclose(np.asarray(params["w"]), w, rtol=1e-12)


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: oc.adam(1e40), "learning_rate"),
        (lambda: oc.clip_by_global_norm(1e39), "max_norm"),
        (lambda: oc.MultiSteps(oc.sgd(0.1), every_k_schedule=2**31), "every_k_schedule"),
        (lambda: oc.MultiSteps(oc.sgd(0.1), every_k_schedule=lambda step: 0), "every_k_schedule"),
        (lambda: oc.MultiSteps(oc.sgd(0.1), every_k_schedule=lambda step: -2), "every_k_schedule"),
    ],
    ids=["adam_1e40", "clip_1e39", "every_k_2**31", "every_k_zero", "every_k_negative"],
)
def test_out_of_range_values_raise_naming_the_argument(build, argument):
    with pytest.raises(ValueError, match=argument):
        build()
