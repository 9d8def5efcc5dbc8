"""optcompose/transforms/_momentum.py: ema's first debiased step, trace's accumulator dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close

from optcompose.optimizers._classic import sgd
from optcompose.transforms._momentum import ema, trace


def test_ema_debiased_first_step_is_the_gradient():
    tx = ema(0.9)
    g = {"a": jnp.array([1.0, -3.0])}
    out, state = tx.update(g, tx.init(g))
    assert_trees_close(out, g, rtol=1e-6, atol=0)
    assert_trees_close(state.ema, {"a": 0.1 * g["a"]}, rtol=1e-6, atol=0)


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


def test_accumulator_dtype_through_sgd():
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    state = sgd(0.1, momentum=0.9, accumulator_dtype=jnp.float32).init(params)
    assert state[0].trace["w"].dtype == jnp.float32
