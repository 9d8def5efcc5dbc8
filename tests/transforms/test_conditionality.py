"""conditionally_mask, conditionally_transform and apply_every against Optax and NumPy.

No torch counterpart (torch.optim has no conditional or accumulating wrapper); the 20-step
trajectories are the rows ``conditionally_*_adam`` and ``apply_every`` (NumPy reference and Optax).
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optcompose._base import GradientTransformation, GradientTransformationExtraArgs, chain
from optcompose._hyperparams import get_hyperparams, set_hyperparams
from optcompose.optimizers._classic import adam, sgd
from optcompose.transforms._conditionality import (
    ApplyEvery,
    ConditionallyMaskState,
    ConditionallyTransformState,
    apply_every,
    conditionally_mask,
    conditionally_transform,
)


def test_signatures_and_states_match_optax():
    for ours, theirs in ((conditionally_mask, optax.conditionally_mask),
                         (conditionally_transform, optax.conditionally_transform), (apply_every, optax.apply_every)):
        a, b = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
        assert [(n, p.kind, p.default) for n, p in a.items()] == [(n, p.kind, p.default) for n, p in b.items()]
    assert ConditionallyMaskState._fields == optax.ConditionallyMaskState._fields
    assert ConditionallyTransformState._fields == optax.ConditionallyTransformState._fields
    assert ApplyEvery._fields == (*optax.ApplyEvery._fields, "hyperparams")


def _run(tx, grads, params, jit=True, **extra):
    def step(state, g):
        u, state = tx.update(g, state, params, **extra)
        return state, u

    if jit:
        return jax.jit(lambda: jax.lax.scan(step, tx.init(params), grads))()
    state, out = tx.init(params), []
    for g in grads:
        state, u = step(state, g)
        out.append(u)
    return state, jnp.stack(out)


GRADS = jnp.asarray(np.random.default_rng(0).normal(size=(20, 3)), jnp.float32)
W = jnp.ones(3, jnp.float32)


@pytest.mark.parametrize("mask", [True, False])
def test_conditional_matches_optax_jit_and_eager(mask):
    ours_fn, theirs_fn = (conditionally_mask, optax.conditionally_mask) if mask else (
        conditionally_transform, optax.conditionally_transform)  # fmt: skip
    should = lambda step: (step % 3) != 1
    # Inner: heavy-ball SGD (Optax's Adam rounds 1 - b2**t in float32, a known 6e-6 quirk at t = 1).
    ours = ours_fn(sgd(0.1, momentum=0.9), should)
    theirs = theirs_fn(optax.sgd(0.1, momentum=0.9), should)
    state, u = _run(ours, GRADS, W)
    their_state, v = _run(theirs, GRADS, W)
    np.testing.assert_allclose(u, v, rtol=1e-6)
    assert int(state.step) == 20
    np.testing.assert_allclose(state.inner_state[0].trace, their_state.inner_state[0].trace, rtol=1e-6)
    np.testing.assert_allclose(u[1], 0.0 if mask else GRADS[1])  # a skipped step
    _, eager = _run(ours, GRADS[:4], W, jit=False)
    np.testing.assert_allclose(eager, u[:4], rtol=1e-6)


def test_extra_args_reach_the_condition_and_the_inner_transform():
    seen = []

    def record_update(updates, state, params=None, **extra):
        seen.append(sorted(extra))
        return updates, state

    inner = GradientTransformationExtraArgs(lambda p: (), record_update)
    tx = conditionally_transform(inner, lambda step, flag: flag, forward_extra_args=True)
    u, _ = tx.update(W, tx.init(W), W, flag=jnp.array(False))
    np.testing.assert_array_equal(u, W)
    tx.update(W, tx.init(W), W, flag=jnp.array(True))
    assert seen and seen[-1] == ["flag"]
    # A plain GradientTransformation gets no extra arguments (Optax's rule).
    plain = GradientTransformation(lambda p: (), lambda u, s, p=None: (u, s))
    tx = conditionally_mask(plain, lambda step: True)
    tx.update(W, tx.init(W), W, anything=1.0)


def test_condition_errors_and_dtypes():
    tx = conditionally_mask(sgd(0.1), lambda step: jnp.ones(2, bool))
    with pytest.raises(ValueError, match="scalar"):
        tx.update(W, tx.init(W), W)
    tx = conditionally_mask(sgd(0.1), lambda step: 0.5)
    with pytest.raises(TypeError, match="bool"):
        tx.update(W, tx.init(W), W)
    with pytest.raises(TypeError, match="callable"):
        conditionally_transform(sgd(0.1), True)
    with pytest.raises(TypeError, match="inner"):
        conditionally_mask(3, lambda step: True)
    h = jnp.ones(3, jnp.bfloat16)
    tx = conditionally_transform(adam(0.1), lambda step: step > 0)
    state = tx.init(h)
    for _ in range(2):
        u, new = tx.update(h, state, h)
        assert u.dtype == jnp.bfloat16
        assert jax.tree.map(jnp.result_type, new) == jax.tree.map(jnp.result_type, state)
        state = new
    z = jnp.ones(2, jnp.complex64)
    tx = conditionally_mask(adam(0.1), lambda step: True)
    u, _ = tx.update(z, tx.init(z), z)
    assert u.dtype == jnp.complex64


def test_apply_every_matches_optax_in_float64_and_k_is_data():
    with jax.enable_x64(True):
        grads = jnp.asarray(np.random.default_rng(1).normal(size=(20, 3)))
        w = jnp.ones(3)
        state, u = _run(chain(apply_every(4), sgd(0.1)), grads, w)
        _, v = _run(optax.chain(optax.apply_every(4), optax.sgd(0.1)), grads, w)
        assert u.dtype == jnp.float64
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=0)
    np.testing.assert_allclose(u[3], -0.1 * np.asarray(grads[:4]).sum(0), rtol=1e-12)
    np.testing.assert_array_equal(u[:3], 0.0)
    # k is a hyperparameter: change it without recompiling.
    tx = apply_every(2)
    state = tx.init(W)
    assert float(get_hyperparams(state)["k"]) == 2
    step = jax.jit(tx.update)
    state = set_hyperparams(state, k=3)
    outs = []
    for g in GRADS[:6]:
        u, state = step(g, state)
        outs.append(np.asarray(u))
    np.testing.assert_allclose(outs[2], np.asarray(GRADS[:3]).sum(0), rtol=1e-6)
    np.testing.assert_array_equal(outs[3], 0.0)
    assert step._cache_size() == 1
    # Edge values: an inf left in the buffer does not leak into the next window (Optax: 0 * inf = NaN).
    tx = apply_every(2)
    u, state = tx.update(jnp.array([jnp.inf, 1.0]), tx.init(W[:2]))
    u, state = tx.update(jnp.array([1.0, 1.0]), state)
    u, state = tx.update(jnp.array([1.0, 2.0]), state)
    np.testing.assert_array_equal(np.asarray(state.grad_acc), [1.0, 2.0])
    with pytest.raises((ValueError, TypeError), match="k"):
        apply_every(0)
    with pytest.raises((ValueError, TypeError), match="k"):
        apply_every(2.5)
