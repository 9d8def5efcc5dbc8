"""lookahead against Optax (20 steps, float32 and float64) and Zhang et al.'s Algorithm 1 in NumPy.

torch.optim has no Lookahead (it lives in third-party packages), so there is no torch comparison;
the NumPy reference (reference_wrappers.ref_lookahead_fast) runs the paper's two nested loops.
"""

from __future__ import annotations

import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference as ref
import reference_wrappers as refw

from optcompose._base import apply_updates
from optcompose._hyperparams import get_hyperparams, set_hyperparams
from optcompose.optimizers._classic import adam, sgd
from optcompose.transforms._lookahead import LookaheadParams, LookaheadState, lookahead

STEPS = 20
RNG = np.random.default_rng(0)
W0 = {"w": jnp.asarray(RNG.normal(size=(3, 2)), jnp.float32), "b": jnp.zeros(2, jnp.float32)}
NOISE = jax.tree.map(lambda p: jnp.asarray(RNG.normal(size=(STEPS, *p.shape)), jnp.float32), W0)


def grad_of(fast, noise):
    return jax.tree.map(lambda w, n: n + 0.125 * w, fast, noise)


def run(tx, params0, apply, steps=STEPS):
    params_type = optax.LookaheadParams if apply is optax.apply_updates else LookaheadParams

    def step(carry, noise):
        params, state = carry
        updates, state = tx.update(grad_of(params.fast, noise), state, params)
        params = apply(params, updates)
        return (params, state), params

    init = params_type.init_synced(params0)
    noise = jax.tree.map(lambda n: n[:steps].astype(jax.tree.leaves(params0)[0].dtype), NOISE)
    return jax.jit(lambda: jax.lax.scan(step, (init, tx.init(init)), noise))()


def test_signature_and_states_match_optax():
    a, b = inspect.signature(lookahead).parameters, inspect.signature(optax.lookahead).parameters
    assert [(n, p.kind, p.default) for n, p in a.items()] == [(n, p.kind, p.default) for n, p in b.items()]
    assert LookaheadState._fields == (*optax.LookaheadState._fields, "hyperparams")
    assert LookaheadParams._fields == optax.LookaheadParams._fields


@pytest.mark.parametrize("reset_state", [False, True])
@pytest.mark.parametrize("alpha", [0.5, 0.3])
def test_matches_optax_for_20_steps(alpha, reset_state):
    (_, state), ours = run(lookahead(sgd(0.1, momentum=0.9), 4, alpha, reset_state), W0, apply_updates)
    (_, their_state), theirs = run(optax.lookahead(optax.sgd(0.1, momentum=0.9), 4, alpha, reset_state), W0,
                                   optax.apply_updates)  # fmt: skip
    for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert int(state.steps_since_sync) == int(their_state.steps_since_sync) == STEPS % 4
    # After each synchronisation the fast weights equal the slow ones (up to the rounding of the two sums).
    np.testing.assert_allclose(ours.fast["w"][3::4], ours.slow["w"][3::4], rtol=1e-6)


def test_float64_matches_optax_to_1e12():
    with jax.enable_x64(True):
        w0 = jax.tree.map(lambda x: x.astype(jnp.float64), W0)
        _, ours = run(lookahead(adam(0.05), 3, 0.5), w0, apply_updates)
        _, theirs = run(optax.lookahead(optax.adam(0.05), 3, 0.5), w0, optax.apply_updates)
        for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
            assert x.dtype == jnp.float64
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-15)


def test_matches_the_papers_algorithm_in_numpy():
    """The fast weights against Algorithm 1 (k fast SGD steps, then slow += alpha (fast - slow))."""
    (_, _), ours = run(lookahead(sgd(0.1), 5, 0.4), W0, apply_updates)
    reference = refw.ref_lookahead_fast(ref.ref_sgd(0.1), 5, 0.4)
    w = {k: np.asarray(v) for k, v in W0.items()}
    state = reference.init(w)
    for t in range(STEPS):
        g = {k: np.asarray(NOISE[k][t]) + np.float32(0.125) * w[k] for k in w}
        u, state = reference.update({k: v.astype(np.float32) for k, v in g.items()}, state, w)
        w = {k: (w[k].astype(np.float64) + u[k].astype(np.float64)).astype(np.float32) for k in w}
        for k in w:
            np.testing.assert_allclose(np.asarray(ours.fast[k][t]), w[k], rtol=2e-5, atol=2e-6, err_msg=f"{k} {t}")


def test_hyperparams_bf16_complex_and_errors():
    tx = lookahead(sgd(0.1), 4, 0.5)
    params = LookaheadParams.init_synced({"w": jnp.ones(2)})
    state = tx.init(params)
    found = get_hyperparams(state)
    assert float(found["sync_period"]) == 4 and float(found["slow_step_size"]) == 0.5
    state = set_hyperparams(state, sync_period=1, slow_step_size=0.25)
    u, _ = jax.jit(tx.update)({"w": jnp.ones(2)}, state, params)
    np.testing.assert_allclose(u.slow["w"], 0.25 * -0.1, rtol=1e-6)  # synced at every step now
    h = LookaheadParams.init_synced(jnp.ones(2, jnp.bfloat16))
    u, _ = tx.update(jnp.ones(2, jnp.bfloat16), tx.init(h), h)
    assert u.fast.dtype == u.slow.dtype == jnp.bfloat16
    z = LookaheadParams.init_synced(jnp.ones(2, jnp.complex64))
    tx1 = lookahead(sgd(0.1), 1, 0.5)
    u, _ = tx1.update(jnp.full(2, 1 + 1j, jnp.complex64), tx1.init(z), z)
    np.testing.assert_allclose(u.slow, 0.5 * -0.1 * (1 + 1j), rtol=1e-6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tx.init({"w": jnp.ones(2)})
    assert any("fast" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match="LookaheadParams"):
        tx.update({"w": jnp.ones(2)}, state, {"w": jnp.ones(2)})
    with pytest.raises(ValueError, match="sync_period"):
        lookahead(sgd(0.1), 0, 0.5)
    with pytest.raises(ValueError, match="slow_step_size"):
        lookahead(sgd(0.1), 2, 1.5)
    with pytest.raises(TypeError, match="fast_optimizer"):
        lookahead(None, 2, 0.5)
    # An inf in the gap at an ordinary step does not become NaN.
    inf = LookaheadParams(fast=jnp.array([1.0]), slow=jnp.array([jnp.inf]))
    u, _ = lookahead(sgd(0.1), 3, 0.5).update(jnp.array([1.0]), lookahead(sgd(0.1), 3, 0.5).init(inf), inf)
    np.testing.assert_allclose(u.fast, [-0.1])
    assert float(u.slow[0]) == 0.0
