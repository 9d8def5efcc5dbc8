"""Pure bfloat16 training shown on linear regression: nearest rounding stalls, compensated steps do not.

Parameters *and* AdamW's moments are bfloat16 (the moments follow the parameters' dtype). The
weights start at 1 and the solution lies in [0.6, 1.4], where half a bfloat16 ulp is 2**-9 to 2**-8
(0.002 to 0.004); AdamW's steps are at most the learning rate, 1e-3, so round-to-nearest gives
every weight back unchanged and the loss never moves. ``low_precision_updates`` (Kahan summation or
stochastic rounding) carries the steps and reaches the float32 run's loss, up to the bfloat16
representation of the solution ("reachable": the float32 solution rounded to bfloat16).

Measured (2000 steps): start 0.216, float32 1.5e-7, reachable 7.5e-6, Kahan 1.5e-5 (2.0x reachable),
stochastic 1.1e-5 to 1.7e-5 over four keys (1.5x to 2.3x), nearest 0.216 (not one weight moved).
Asserted: Kahan and stochastic within 4x of ``max(float32, reachable)``, nearest above half its
starting loss and 1000x above Kahan (the test fails if the wrapper does nothing).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from optcompose._base import apply_updates
from optcompose.optimizers._classic import adamw
from optcompose.schedules import cosine_decay_schedule
from optcompose.transforms._low_precision import low_precision_updates

RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.standard_normal((256, 8)), jnp.float32)
W_STAR = jnp.asarray(RNG.uniform(0.6, 1.4, 8), jnp.float32)
Y = X @ W_STAR
STEPS = 2000


def loss(w):
    return 0.5 * jnp.mean((X @ w.astype(jnp.float32) - Y) ** 2)


def train(make, dtype):
    tx = make(adamw(cosine_decay_schedule(1e-3, STEPS), weight_decay=0.0))
    w0 = jnp.ones((8,), dtype)

    def step(carry, _):
        w, state = carry
        g = jax.grad(loss)(w).astype(dtype)
        updates, state = tx.update(g, state, w)
        return (apply_updates(w, updates), state), None

    (w, state), _ = jax.jit(lambda w: jax.lax.scan(step, (w, tx.init(w)), None, length=STEPS))(w0)
    assert w.dtype == dtype
    return float(loss(w)), w, state


def test_bfloat16_linear_regression_stalls_with_nearest_rounding_and_learns_with_compensation():
    start = float(loss(jnp.ones(8)))
    f32, w32, _ = train(lambda tx: tx, jnp.float32)
    reachable = float(loss(w32.astype(jnp.bfloat16)))
    nearest, _, state = train(lambda tx: tx, jnp.bfloat16)
    assert jax.tree.leaves(state[0].mu)[0].dtype == jnp.bfloat16  # pure bfloat16: the moments too
    kahan, _, _ = train(lambda tx: low_precision_updates(tx, "kahan"), jnp.bfloat16)
    stochastic, _, _ = train(lambda tx: low_precision_updates(tx, "stochastic", key=0), jnp.bfloat16)
    target = max(f32, reachable)
    assert target < 1e-3 * start, (start, f32, reachable)
    assert nearest > 0.5 * start, f"round-to-nearest was expected to stall: {nearest} vs start {start}"
    assert kahan < 4.0 * target, (f32, reachable, kahan)
    assert stochastic < 4.0 * target, (f32, reachable, stochastic)
    assert nearest > 1000 * kahan  # without the wrapper this test fails: the nearest run is that case
