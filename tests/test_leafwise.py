"""The transform toolkit: a new piece is its per-leaf rule and the names of its hyperparameters."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optcompose as oc


class SignMomentumState(NamedTuple):
    count: jax.Array
    m: Any
    hyperparams: oc.Hyperparams


def _sign_momentum(g, m, *, hp, t, w, decoupled):
    m = oc.transforms.ema_step(m, g, hp.beta)
    u = jnp.sign(m) + (hp.wd * w if decoupled else 0.0)
    return u * t.astype(u.dtype), m


def sign_momentum(beta=0.9, wd=0.0, *, decoupled=True, m_dtype=None):
    return oc.leafwise(
        _sign_momentum, SignMomentumState, hyperparams={"beta": beta, "wd": wd},
        static={"decoupled": decoupled}, dtypes={"m": m_dtype},
    )  # fmt: skip


PARAMS = {"a": jnp.array([1.0, -2.0, 3.0]), "b": {"c": jnp.array([[0.5]])}}
GRADS = {"a": jnp.array([0.1, 0.2, -0.3]), "b": {"c": jnp.array([[-1.0]])}}


def _reference(steps, beta, wd):
    m = {k: np.zeros_like(v) for k, v in {"a": PARAMS["a"], "c": PARAMS["b"]["c"]}.items()}
    g = {"a": np.asarray(GRADS["a"]), "c": np.asarray(GRADS["b"]["c"])}
    w = {"a": np.asarray(PARAMS["a"]), "c": np.asarray(PARAMS["b"]["c"])}
    out = []
    for t in range(1, steps + 1):
        m = {k: beta(t - 1) * m[k] + (1 - beta(t - 1)) * g[k] for k in m}
        out.append({k: (np.sign(m[k]) + wd * w[k]) * t for k in m})
    return out


@pytest.mark.parametrize("jit", [True, False])
def test_rule_runs_with_count_params_static_options_and_a_schedule(jit):
    beta = oc.linear_schedule(0.5, 0.9, 10)
    tx = sign_momentum(beta=beta, wd=0.25)
    update = jax.jit(tx.update) if jit else tx.update
    state = tx.init(PARAMS)
    expected = _reference(20, lambda t: float(np.float32(beta(t))), 0.25)
    for t in range(20):
        u, state = update(GRADS, state, PARAMS)
        np.testing.assert_allclose(np.asarray(u["a"]), expected[t]["a"], rtol=1e-6)
        np.testing.assert_allclose(np.asarray(u["b"]["c"]), expected[t]["c"], rtol=1e-6)
    assert int(state.count) == 20


def test_hyperparameters_are_data_and_settable_without_recompiling():
    tx = sign_momentum(wd=0.0)
    state = tx.init(PARAMS)
    assert set(oc.get_hyperparams(state)) == {"beta", "wd"}
    traces = []

    @jax.jit
    def step(state):
        traces.append(1)
        return tx.update(GRADS, state, PARAMS)

    u0, _ = step(state)
    u1, _ = step(oc.set_hyperparams(state, wd=1.0))
    assert len(traces) == 1
    np.testing.assert_allclose(np.asarray(u1["a"] - u0["a"]), np.asarray(PARAMS["a"]))


def test_storage_dtype_is_kept_and_arithmetic_is_float32():
    tx = sign_momentum(m_dtype=jnp.bfloat16)
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), PARAMS)
    state = tx.init(params)
    u, state = tx.update(jax.tree.map(lambda g: g.astype(jnp.bfloat16), GRADS), state, params)
    assert state.m["a"].dtype == jnp.bfloat16 and u["a"].dtype == jnp.bfloat16
    assert state.hyperparams["beta"].dtype == jnp.float32


def test_errors_name_the_path_and_the_missing_params():
    tx = sign_momentum()
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(GRADS, state)
    bad = {"a": GRADS["a"], "b": {"c": jnp.zeros((2, 2))}}
    with pytest.raises(ValueError, match=r"\['b'\]\['c'\]"):
        tx.update(bad, state, PARAMS)
    with pytest.raises(TypeError, match=r"\['a'\]"):
        tx.update({"a": jnp.array([1, 2, 3]), "b": GRADS["b"]}, state, PARAMS)


def test_the_type_carries_the_structure():
    tx = sign_momentum(beta=0.8)
    assert isinstance(tx, oc.Leafwise) and isinstance(tx, oc.GradientTransformationExtraArgs)
    assert tx.rule is _sign_momentum and tx.slots == ("m",) and tx.static == {"decoupled": True}
    assert "beta=0.8" in repr(tx)
    init, update = tx  # still an (init, update) pair
    assert callable(init) and callable(update)


def test_bad_declarations_are_refused():
    class NoCount(NamedTuple):
        m: Any

    with pytest.raises(TypeError, match="count"):
        oc.leafwise(_sign_momentum, NoCount)
    with pytest.raises(ValueError, match="not a per-leaf field"):
        oc.leafwise(_sign_momentum, SignMomentumState, dtypes={"nu": jnp.bfloat16})
