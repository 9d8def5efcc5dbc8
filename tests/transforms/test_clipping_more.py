"""adaptive_grad_clip, unitwise_norm / unitwise_clip and per-example clipping against Optax, NumPy, torch.

torch mapping (``test_per_example_clip_matches_torch``): ``per_example_global_norm_clip(grads, C)``
is, for each example ``i``, ``torch.nn.utils.clip_grad_norm_(grads_i, C)`` followed by a sum over
examples; torch divides by ``norm + 1e-6``, so the two agree to ~1e-6 relative. adaptive_grad_clip
has no torch.optim counterpart (it lives in timm); it is checked against Optax and NumPy.
"""

from __future__ import annotations

import inspect
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference_wrappers as refw
import torch

from optcompose.transforms import _clipping_more as ours
from optcompose.transforms._clipping_more import (
    AdaptiveGradClipState,
    adaptive_grad_clip,
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
    unitwise_clip,
    unitwise_norm,
)

RNG = np.random.default_rng(0)


def test_signatures_match_optax():
    for name in ("adaptive_grad_clip", "per_example_global_norm_clip", "per_example_layer_norm_clip",
                 "unitwise_norm", "unitwise_clip"):  # fmt: skip
        a = inspect.signature(getattr(ours, name)).parameters
        b = inspect.signature(getattr(optax.transforms, name)).parameters
        assert [(n, p.kind, p.default) for n, p in a.items()] == [(n, p.kind, p.default) for n, p in b.items()], name
    assert AdaptiveGradClipState._fields == ("hyperparams",)  # Optax's is EmptyState: no fields


SHAPES = [(), (5,), (1, 4), (3, 4), (2, 3, 4), (2, 2, 3, 4), (2, 1, 2, 3, 2)]


def test_unitwise_norm_matches_optax_and_numpy():
    """Every default unit layout (ranks 0 to 5, a squeezable (1, 4)) and an explicit axis."""
    xs = [jnp.asarray(RNG.normal(size=shape), jnp.float32) for shape in SHAPES]

    def both(lib_norm):
        return [lib_norm(x) for x in xs] + [lib_norm(x, axis=-1) for x in xs if x.ndim >= 2]

    ours, theirs = jax.jit(lambda: both(unitwise_norm))(), jax.jit(lambda: both(optax.transforms.unitwise_norm))()
    for got, want in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    for x, got in zip(xs, ours, strict=False):
        np.testing.assert_allclose(got, refw.ref_unitwise_norm(np.asarray(x)), rtol=1e-6)
    with pytest.raises(ValueError, match="axis"):
        unitwise_norm(jnp.ones((2,) * 6))


def test_adaptive_grad_clip_20_steps_match_optax_including_float64():
    """20 steps of chain(adaptive_grad_clip, sgd) with mixed leaf ranks and some clipped units; params of
    order 1, so a few entries that pass near 0 are compared with an absolute tolerance of 1e-9 (1e-15)."""

    def trajectory(lib, dtype):
        tx = lib.chain(lib.adaptive_grad_clip(0.05, eps=1e-2), lib.sgd(0.5))
        params = {"w": jnp.asarray(RNG.normal(size=(3, 4)), dtype), "b": jnp.zeros(4, dtype),
                  "k": jnp.asarray(RNG.normal(size=(2, 2, 3, 2)), dtype)}  # fmt: skip
        grads = jax.tree.map(lambda p: jnp.asarray(RNG.normal(size=(20, *p.shape)), dtype), params)

        def step(carry, g):
            p, s = carry
            u, s = tx.update(g, s, p)
            p = jax.tree.map(lambda a, b: a + b, p, u)
            return (p, s), p

        return jax.jit(lambda: jax.lax.scan(step, (params, tx.init(params)), grads)[1])()

    import optcompose.optimizers as oo
    import optcompose.transforms as ot

    mine = types.SimpleNamespace(chain=ot.chain, adaptive_grad_clip=ot.adaptive_grad_clip, sgd=oo.sgd)

    for dtype, rtol, atol in ((jnp.float32, 1e-6, 1e-9), (jnp.float64, 1e-12, 1e-15)):
        with jax.enable_x64(dtype == jnp.float64):
            state = RNG.bit_generator.state
            a = trajectory(mine, dtype)
            RNG.bit_generator.state = state
            b = trajectory(optax, dtype)
            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
                assert x.dtype == dtype
                np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_adaptive_grad_clip_complex_bf16_and_edges():
    # Complex: |g|^2 = g conj(g); the same as Optax.
    g = jnp.asarray(RNG.normal(size=(3, 2)) + 1j * RNG.normal(size=(3, 2)), jnp.complex64)
    w = jnp.asarray(RNG.normal(size=(3, 2)) + 1j * RNG.normal(size=(3, 2)), jnp.complex64)
    tx, ref = adaptive_grad_clip(0.1), optax.adaptive_grad_clip(0.1)
    ones = jnp.ones((2, 2))

    @jax.jit
    def cases_():
        apply = lambda u, p: tx.update(u, tx.init(p), p)[0]
        return {
            "complex": (apply(g, w), ref.update(g, ref.init(w), w)[0]),
            "bf16": apply(g.real.astype(jnp.bfloat16), w.real.astype(jnp.bfloat16)),
            "zero": apply(jnp.zeros((2, 2)), ones),
            "huge": apply(jnp.full((2, 2), 1e30), ones),
            "tiny": apply(jnp.full((2, 2), 1e-30), ones),
            "zero_weights": apply(jnp.ones(3), jnp.zeros(3)),
        }

    out = cases_()
    np.testing.assert_allclose(*out["complex"], rtol=1e-6)  # |g|^2 = g conj(g), as Optax
    assert out["bf16"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(out["zero"], 0.0)
    # A 1e30 gradient is clipped to lambda |w| per unit (Optax: zeroed, its norm being inf).
    np.testing.assert_allclose(np.asarray(unitwise_norm(out["huge"])), 0.1 * np.sqrt(2.0), rtol=1e-5)
    np.testing.assert_array_equal(out["tiny"], 1e-30 * np.ones((2, 2), np.float32))  # below the bound
    np.testing.assert_allclose(np.linalg.norm(out["zero_weights"]), 0.1 * 1e-3, rtol=1e-5)  # eps floors |w|


def test_adaptive_grad_clip_errors_and_hyperparams():
    with pytest.raises(ValueError, match="clipping"):
        adaptive_grad_clip(0.0)
    with pytest.raises(ValueError, match="eps"):
        adaptive_grad_clip(0.1, eps=-1.0)
    tx = adaptive_grad_clip(0.1)
    with pytest.raises(ValueError, match="params"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
    from optcompose._hyperparams import get_hyperparams, set_hyperparams

    state = tx.init(jnp.ones(2))
    assert float(get_hyperparams(state)["clipping"]) == pytest.approx(0.1)
    state = set_hyperparams(state, clipping=1e-3)
    u, _ = jax.jit(tx.update)(jnp.ones(2), state, jnp.ones(2))
    np.testing.assert_allclose(np.linalg.norm(u), 1e-3 * np.sqrt(2.0), rtol=1e-5)
    with pytest.raises(ValueError, match="one shape"):
        unitwise_clip(jnp.ones(2), jnp.ones(3), jnp.ones(2))


def _batched():
    return {"a": jnp.asarray(RNG.normal(size=(5, 3)), jnp.float32),
            "b": jnp.asarray(RNG.normal(size=(5, 2, 2)), jnp.float32)}  # fmt: skip


def test_per_example_clip_matches_optax():
    grads = _batched()

    def every(global_clip, layer_clip):
        return [(global_clip(grads, c), layer_clip(grads, c, True), layer_clip(grads, c, False))
                for c in (0.0, 0.5, 2.0, jnp.inf)]  # fmt: skip

    ours = jax.jit(lambda: every(per_example_global_norm_clip, per_example_layer_norm_clip))()
    theirs = jax.jit(lambda: every(optax.per_example_global_norm_clip, optax.per_example_layer_norm_clip))()
    for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    # Optax's docstring example: integer gradients.
    ints = [jnp.array([[0, 0, 0], [0, 3, 4], [4, 0, 3], [3, 4, 0]])]
    got, count = per_example_global_norm_clip(ints, 1.25)
    np.testing.assert_allclose(got[0], [1.75, 1.75, 1.75], rtol=1e-6)
    assert int(count) == 3
    with pytest.raises(ValueError, match="batch dimension"):
        per_example_global_norm_clip({"a": jnp.ones((5, 2)), "b": jnp.ones((4, 2))}, 1.0)


def test_per_example_clip_matches_torch():
    grads, clip = _batched(), 1.0
    got, _ = per_example_global_norm_clip(grads, clip)
    expected = {"a": np.zeros(3), "b": np.zeros((2, 2))}
    for i in range(5):
        example = [torch.tensor(np.asarray(grads[k][i]), dtype=torch.float64) for k in ("a", "b")]
        tensors = [torch.zeros_like(e, requires_grad=True) for e in example]
        for t, e in zip(tensors, example, strict=True):
            t.grad = e.clone()
        torch.nn.utils.clip_grad_norm_(tensors, clip)
        expected["a"] += tensors[0].grad.numpy()
        expected["b"] += tensors[1].grad.numpy()
    for k in expected:
        np.testing.assert_allclose(np.asarray(got[k]), expected[k], rtol=5e-6, atol=1e-7)
