"""Mixed precision: bfloat16 / float16 parameters, moments in a chosen dtype, no silent upcast."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from test_edge_values import OPTIMIZERS

from optcompose._base import apply_updates
from optcompose.optimizers._classic import adam, sgd
from optcompose.transforms._adaptive import scale_by_adam
from optcompose.transforms._momentum import trace

LOW = [jnp.bfloat16, jnp.float16]


def _float_dtypes(tree):
    return {jnp.dtype(leaf.dtype) for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.floating)}


@pytest.mark.parametrize("dtype", LOW, ids=["bf16", "f16"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_updates_and_state_keep_the_parameter_dtype(name, dtype):
    params = {"a": jnp.asarray([1.0, -2.0, 0.5], dtype), "b": jnp.asarray(0.25, dtype)}
    grads = {"a": jnp.asarray([0.1, 0.2, -0.3], dtype), "b": jnp.asarray(-1.0, dtype)}
    tx = OPTIMIZERS[name]()
    state = tx.init(params)
    for _ in range(2):
        updates, state = tx.update(grads, state, params)
        params = apply_updates(params, updates)
    assert {leaf.dtype for leaf in jax.tree.leaves(updates)} == {jnp.dtype(dtype)}
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(dtype)}
    # Moments default to the parameter dtype; hyperparameters are float32 scalars.
    moments = [leaf for leaf in jax.tree.leaves(state) if jnp.issubdtype(leaf.dtype, jnp.floating) and leaf.ndim]
    assert all(m.dtype == dtype for m in moments)
    assert all(np.all(np.isfinite(np.asarray(u, np.float32))) for u in jax.tree.leaves(updates))


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
    assert _float_dtypes(state[0].mu) == {jnp.dtype(jnp.float32)}
    assert {k: v.dtype for k, v in state[0].nu.items()} == {k: v.dtype for k, v in params.items()}


def test_float32_updates_are_cast_back_to_bfloat16_params():
    params = {"w": jnp.asarray([1.0, 2.0], jnp.bfloat16)}
    new = apply_updates(params, {"w": jnp.asarray([0.5, -0.25], jnp.float32)})
    assert new["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(new["w"], np.float32), [1.5, 1.75])


def test_arithmetic_runs_in_float32_then_rounds_once():
    # bfloat16 has 8 significant bits. Adam's update computed in float32 then rounded once equals
    # the float32 reference rounded to bfloat16; computing in bfloat16 would be off by many ulps.
    rng = np.random.default_rng(0)
    grads32 = [rng.normal(size=16).astype(np.float32) for _ in range(5)]
    grads16 = [g.astype(ml_dtypes.bfloat16) for g in grads32]
    tx = scale_by_adam(mu_dtype=jnp.float32, nu_dtype=jnp.float32)
    state = tx.init(jnp.zeros(16, jnp.bfloat16))
    m = v = np.zeros(16, np.float64)
    for t, g in enumerate(grads16, start=1):
        updates, state = tx.update(jnp.asarray(g), state)
        g64 = g.astype(np.float64)
        m, v = 0.9 * m + 0.1 * g64, 0.999 * v + 0.001 * g64 * g64
        expected = (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        assert updates.dtype == jnp.bfloat16
        rounded = expected.astype(np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)
        np.testing.assert_array_equal(np.asarray(updates, np.float32), rounded)


def test_float32_accumulator_keeps_small_bfloat16_gradients():
    # 1000 gradients of 2**-10 summed into a bfloat16 momentum buffer (decay ~1) stall by 2**-2,
    # where the spacing of bfloat16 (2**-9) is twice the gradient; a float32 buffer gets ~0.977.
    g = jnp.full((1,), 2.0**-10, jnp.bfloat16)

    def total(accumulator_dtype):
        tx = trace(decay=0.999999, accumulator_dtype=accumulator_dtype)
        state = tx.init(g)

        def body(state, _):
            return tx.update(g, state)[1], None

        state, _ = jax.lax.scan(body, state, None, length=1000)
        return float(np.asarray(state.trace, np.float32)[0])

    assert total(jnp.float32) == pytest.approx(1000 * 2.0**-10, rel=1e-3)
    assert total(None) < 0.5


def _mlp(params, x):
    hidden = jnp.tanh(x @ params["w1"] + params["b1"])
    return (hidden @ params["w2"] + params["b2"])[:, 0]


def _train(dtype, tx, steps=300):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(64, 2)).astype(np.float32)
    y = np.sin(2 * x[:, 0]) * x[:, 1]
    init = {
        "w1": rng.normal(size=(2, 16)) * 0.7, "b1": np.zeros(16),
        "w2": rng.normal(size=(16, 1)) * 0.3, "b2": np.zeros(1),
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


def test_trains_a_bfloat16_model():
    tx = adam(0.02, mu_dtype=jnp.float32, nu_dtype=jnp.float32)
    params, state, losses = _train(jnp.bfloat16, tx)
    assert _float_dtypes(params) == {jnp.dtype(jnp.bfloat16)}
    assert _float_dtypes(state[0].mu) == {jnp.dtype(jnp.float32)}
    assert np.all(np.isfinite(losses))
    assert losses[-10:].mean() < 0.1 * losses[0]
    _, _, losses32 = _train(jnp.float32, tx)
    assert losses[-10:].mean() < 3 * losses32[-10:].mean() + 1e-3  # as good as float32, near enough


def test_trains_a_float16_model_with_float32_second_moment():
    # float16 cannot hold (1 - b2) * g**2 for small g (it underflows below 6e-8); keep nu in float32.
    tx = adam(0.02, nu_dtype=jnp.float32)
    params, _, losses = _train(jnp.float16, tx)
    assert _float_dtypes(params) == {jnp.dtype(jnp.float16)}
    assert np.all(np.isfinite(losses)) and losses[-10:].mean() < 0.1 * losses[0]
