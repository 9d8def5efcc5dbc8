"""low_precision_updates: bfloat16 parameters that keep learning (Kahan summation, stochastic rounding).

The row ``kahan_adamw_low_precision`` (tests/optimizers/test_frontier.py) checks 20 Kahan steps of
AdamW on the mixed bf16 / float16 / float32 problem against the NumPy reference (reference_frontier
``ref_kahan``). Here: the stall that round-to-nearest suffers and the wrappers cure, exactness of
the returned updates, the unbiased rounding, and bad arguments.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optcompose._base import apply_updates
from optcompose.optimizers._classic import sgd
from optcompose.transforms._low_precision import LowPrecisionUpdatesState, low_precision_updates, round_stochastically

TARGET = np.linspace(-0.3, 0.3, 64)


def loss(w):
    return 0.5 * jnp.mean((w.astype(jnp.float32) - 1.0 - TARGET) ** 2)


def train(tx, dtype, steps=1500):
    w0 = jnp.ones((64,), dtype)

    def step(carry, _):
        w, state = carry
        g = jax.grad(loss)(w.astype(jnp.float32)).astype(dtype) * 64
        u, state = tx.update(g, state, w)
        return (apply_updates(w, u), state), None

    (w, _), _ = jax.jit(lambda w: jax.lax.scan(step, (w, tx.init(w)), None, length=steps))(w0)
    return float(loss(w)), w


def test_round_to_nearest_stalls_and_compensation_reaches_the_float32_loss():
    # Steps lr * g <= 2e-3 * 0.3 are below half a bfloat16 ulp at 1 (2**-8): nearest never moves.
    start = float(loss(jnp.ones(64)))
    f32, w32 = train(sgd(2e-3), jnp.float32)
    reachable = float(loss(w32.astype(jnp.bfloat16)))  # the float32 result, rounded to bfloat16
    nearest, _ = train(sgd(2e-3), jnp.bfloat16)
    kahan, w = train(low_precision_updates(sgd(2e-3), "kahan"), jnp.bfloat16)
    stochastic, _ = train(low_precision_updates(sgd(2e-3), "stochastic", key=0), jnp.bfloat16)
    assert w.dtype == jnp.bfloat16
    assert nearest == pytest.approx(start, rel=1e-3), "round-to-nearest was expected to stall"
    assert max(f32, reachable) < 0.01 * start
    assert kahan < 1.25 * reachable and stochastic < 2.0 * reachable, (f32, reachable, kahan, stochastic)


def test_updates_are_exact_and_compensation_carries_the_rest():
    w = {"b": jnp.asarray([1.0, 256.0, -3.0], jnp.bfloat16), "f": jnp.asarray([1.0, 2.0])}
    tx = low_precision_updates(sgd(1.0), "kahan")
    state = tx.init(w)
    g = {"b": jnp.asarray([-1e-3, 0.7, -2.5e-2], jnp.bfloat16), "f": jnp.asarray([0.5, -0.5])}
    u, state = tx.update(g, state, w)
    assert isinstance(state, LowPrecisionUpdatesState) and u["b"].dtype == jnp.float32
    new = apply_updates(w, u)
    np.testing.assert_array_equal(np.asarray(new["b"], np.float32), np.asarray(w["b"], np.float32) + np.asarray(u["b"]))
    np.testing.assert_array_equal(new["f"], w["f"] - g["f"])
    assert state.compensation["f"].shape == ()
    total = np.asarray(u["b"]) + np.asarray(state.compensation["b"], np.float32)
    np.testing.assert_allclose(total, -np.asarray(g["b"], np.float32), rtol=1e-2)


def test_stochastic_rounding_is_unbiased_and_exact_on_representable_values():
    x = jnp.full((20000,), 1.0 + 2**-10, jnp.float32)  # a quarter of the way from 1 to the next bf16
    r = np.asarray(round_stochastically(x, jnp.bfloat16, jax.random.key(1)), np.float64)
    assert set(np.unique(r)) == {1.0, 1.0 + 2**-7}
    assert abs(r.mean() - (1.0 + 2**-10)) < 4e-5
    exact = jnp.asarray([1.0, -0.5, 0.0, jnp.inf, 3.0e38], jnp.float32)
    out = round_stochastically(exact, jnp.bfloat16, jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(out[:4], np.float32), np.asarray(exact[:4]))
    assert not np.any(np.isnan(np.asarray(out, np.float32)))


@pytest.mark.parametrize("magnitude", [0.0, 1e-30, 1e30])
def test_edge_values(magnitude):
    w = {"b": jnp.ones((3,), jnp.bfloat16)}
    for tx in (low_precision_updates(sgd(1.0)), low_precision_updates(sgd(1.0), "stochastic", key=3)):
        u, _ = tx.update({"b": jnp.full((3,), magnitude, jnp.bfloat16)}, tx.init(w), w)
        assert np.all(np.isfinite(np.asarray(u["b"]))) or magnitude == 1e30


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="method"):
        low_precision_updates(sgd(0.1), "nearest")
    with pytest.raises(ValueError, match="key"):
        low_precision_updates(sgd(0.1), "stochastic")
    with pytest.raises(ValueError, match="key"):
        low_precision_updates(sgd(0.1), "kahan", key=0)
    with pytest.raises(TypeError, match="key"):
        low_precision_updates(sgd(0.1), "stochastic", key="seed")
    with pytest.raises(TypeError, match="inner"):
        low_precision_updates(None)
    tx = low_precision_updates(sgd(0.1))
    with pytest.raises(ValueError, match="params"):
        tx.update({"b": jnp.ones(2)}, tx.init({"b": jnp.ones(2)}))
