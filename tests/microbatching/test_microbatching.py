"""microbatch, micro_vmap, micro_grad, reshape_batch_axis against Optax, plain JAX and torch.

torch mapping (``test_micro_grad_clipped_per_example_matches_torch``): ``micro_grad(loss,
transform_fn=clip)`` with SUM is, per example, ``loss_i.backward()`` then
``torch.nn.utils.clip_grad_norm_`` on that example's gradient, summed over the batch (DP-SGD's
clipped sum; torch divides by ``norm + 1e-6``).
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from optcompose import microbatching as mb

RNG = np.random.default_rng(0)


def test_names_and_signatures_match_optax():
    names = ["AccumulationType", "Accumulator", "micro_grad", "micro_vmap", "microbatch", "reshape_batch_axis"]
    assert sorted(n for n in dir(optax.microbatching) if not n.startswith("_")) == sorted(names)
    assert [e.name for e in mb.AccumulationType] == [e.name for e in optax.microbatching.AccumulationType]
    for name in ("micro_grad", "micro_vmap", "microbatch", "reshape_batch_axis"):
        a = inspect.signature(getattr(mb, name)).parameters
        b = inspect.signature(getattr(optax.microbatching, name)).parameters
        assert list(a) == list(b), name
        for n in a:
            assert a[n].kind == b[n].kind, (name, n)
            da, db = a[n].default, b[n].default
            if isinstance(db, optax.microbatching.AccumulationType):
                assert da.name == db.name, (name, n)
            elif not callable(db):
                assert da == db, (name, n)


def test_microbatch_equals_the_full_batch_and_optax():
    x = jnp.asarray(RNG.normal(size=(8, 3)), jnp.float32)
    w = jnp.asarray(RNG.normal(size=(3,)), jnp.float32)
    fun = lambda w, x: (x @ w, jnp.sum((x @ w) ** 2), jnp.mean(x, axis=0))

    def run(microbatch, types):
        accumulator = (types.CONCAT, types.SUM, types.MEAN)
        return jax.jit(microbatch(fun, argnums=1, microbatch_size=2, accumulator=accumulator))(w, x)

    ours = run(mb.microbatch, mb.AccumulationType)
    theirs = run(optax.microbatch, optax.microbatching.AccumulationType)
    for a, b, c in zip(ours, theirs, fun(w, x), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
        np.testing.assert_allclose(a, c, rtol=1e-5)
    # Optax's docstring example (integers, CONCAT and SUM).
    g = lambda x: (x + 1, jnp.sum(3 * x))
    out = mb.microbatch(g, argnums=0, microbatch_size=2,
                        accumulator=(mb.AccumulationType.CONCAT, mb.AccumulationType.SUM))(jnp.array([1, 2, 3, 4]))
    np.testing.assert_array_equal(out[0], [2, 3, 4, 5])
    assert int(out[1]) == 30


def test_running_mean_keyword_batches_axes_and_early_stop():
    x = jnp.asarray(RNG.normal(size=(3, 6)), jnp.float32)  # batch on axis 1
    fun = lambda scale, *, data: scale * jnp.mean(data, axis=1)
    kwargs = dict(argnums=(), argnames="data", in_axes=1)
    mean = mb.microbatch(fun, microbatch_size=2, accumulator=mb.AccumulationType.RUNNING_MEAN, **kwargs)
    np.testing.assert_allclose(mean(2.0, data=x), 2.0 * jnp.mean(x, axis=1), rtol=1e-6)
    early = mb.microbatch(fun, microbatch_size=2, accumulator=mb.AccumulationType.RUNNING_MEAN,
                          num_real_microbatches=2, **kwargs)  # fmt: skip
    theirs = optax.microbatch(fun, microbatch_size=2, accumulator=optax.microbatching.AccumulationType.RUNNING_MEAN,
                              num_real_microbatches=2, **kwargs)  # fmt: skip
    np.testing.assert_allclose(early(2.0, data=x), theirs(2.0, data=x), rtol=1e-6)
    reshaped = mb.reshape_batch_axis({"a": jnp.arange(8)}, 2)
    np.testing.assert_array_equal(reshaped["a"], optax.microbatching.reshape_batch_axis({"a": jnp.arange(8)}, 2)["a"])
    np.testing.assert_array_equal(reshaped["a"][1], [1, 5])  # strided slices
    assert mb.microbatch(fun, (), None) is fun
    with pytest.raises(ValueError, match="divisible"):
        mb.microbatch(lambda x: x, 0, 3)(jnp.ones(4))
    with pytest.raises(ValueError, match="equal-size"):
        mb.microbatch(lambda x, y: x, (0, 1), 2)(jnp.ones(4), jnp.ones(6))
    with pytest.raises(ValueError, match="floating-point"):
        mb.microbatch(lambda x: x, 0, 2, mb.AccumulationType.MEAN)(jnp.ones(4, jnp.int32))


def test_micro_vmap_and_micro_grad_match_optax_docstrings():
    np.testing.assert_array_equal(mb.micro_vmap(lambda x: x**2, microbatch_size=4)(jnp.arange(8)),
                                  jnp.arange(8) ** 2)  # fmt: skip
    total = mb.micro_vmap(lambda x: x**2, microbatch_size=2, accumulator=mb.AccumulationType.SUM)(jnp.arange(8.0))
    assert float(total) == float(jnp.sum(jnp.arange(8.0) ** 2))

    def mean_squared_loss(params, features, targets):
        return 0.5 * jnp.mean((features @ params - targets) ** 2)

    params, features, targets = jnp.zeros(1), jnp.ones((4, 1)), jnp.array([0.0, 2.0, 4.0, 6.0])
    (grads, squared), aux = mb.micro_grad(
        mean_squared_loss, argnums=0, batch_argnums=(1, 2), accumulator=mb.AccumulationType.MEAN,
        transform_fn=lambda x: (x, x**2), metrics_fn=jnp.linalg.norm, microbatch_size=2,
    )(params, features, targets)  # fmt: skip
    np.testing.assert_allclose(grads, [-3.0])
    np.testing.assert_allclose(squared, [14.0])
    np.testing.assert_allclose(aux.values, [0.0, 2.0, 8.0, 18.0])
    np.testing.assert_allclose(aux.metrics, [0.0, 2.0, 4.0, 6.0])


def test_micro_grad_clipped_per_example_matches_torch():
    features = RNG.normal(size=(6, 3)).astype(np.float32)
    targets = RNG.normal(size=(6,)).astype(np.float32)
    w0 = RNG.normal(size=(3,)).astype(np.float32)

    def loss(w, x, y):
        return jnp.sum((x @ w - y) ** 2)

    def clip(g, bound=1.0):
        norm = jnp.linalg.norm(g)
        return g * jnp.minimum(1.0, bound / norm)

    grads, _ = jax.jit(mb.micro_grad(loss, batch_argnums=(1, 2), transform_fn=clip, microbatch_size=3))(
        jnp.asarray(w0), jnp.asarray(features), jnp.asarray(targets))  # fmt: skip
    want = np.zeros(3)
    for x, y in zip(features, targets, strict=True):
        w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
        residual = torch.tensor(x[None], dtype=torch.float64) @ w - torch.tensor([y], dtype=torch.float64)
        (residual**2).sum().backward()
        torch.nn.utils.clip_grad_norm_([w], 1.0)
        want += w.grad.numpy()
    np.testing.assert_allclose(np.asarray(grads), want, rtol=2e-5, atol=1e-6)
