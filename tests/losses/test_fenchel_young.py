"""Fenchel-Young losses (``optcompose/losses/_fenchel_young.py``).

Compared with Optax 0.2.8 for two max functions (log-sum-exp, whose loss is the softmax cross
entropy, and the hard max, whose loss is the perceptron loss), with and without ``jax.jit``, and
with the gradient in the scores. No direct PyTorch counterpart.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.special import logsumexp

from optcompose import losses

RNG = np.random.default_rng(4)
SCORES = (2 * RNG.normal(size=(2, 3, 5))).astype(np.float32)
SCORES[0, 0] = [1e4, -1e4, 0.0, 0.0, 0.0]
_raw = np.exp(RNG.normal(size=(2, 3, 5)))
TARGETS = (_raw / _raw.sum(-1, keepdims=True)).astype(np.float32)


def _np(x):
    return np.asarray(x, dtype=np.float64)


def assert_close(actual, expected, *, rtol=2e-5, atol=2e-6, err_msg=""):
    """Element-wise closeness of two arrays (or two pytrees of arrays); NaNs must match."""
    jax.tree.map(
        lambda a, e: np.testing.assert_allclose(_np(a), _np(e), rtol=rtol, atol=atol, equal_nan=True, err_msg=err_msg),
        actual,
        expected,
    )


def _assert_same_layout(actual, expected, name):
    assert jax.tree.structure(actual) == jax.tree.structure(expected), name
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert (a.shape, a.dtype) == (e.shape, e.dtype), f"{name}: {a.shape} {a.dtype} vs {e.shape} {e.dtype}"


def _weighted_sum(tree):
    """A scalar giving every output element its own weight, so the gradient sees all of them."""
    leaves = jax.tree.leaves(tree)
    return sum(jnp.sum(jnp.cos(jnp.arange(jnp.size(x)) + 1.0).reshape(jnp.shape(x)) * x) for x in leaves)


def compare_with_optax(ours, theirs, cases, *, grad=True, rtol=2e-5, atol=2e-6):
    """Checks ``ours`` against Optax's ``theirs`` on every case, under jit and (first case) without.

    ``cases`` maps a name to ``(args, kwargs)``. One jitted program computes, for every case, both
    values and both gradients in the first argument (array kwargs are traced like the arguments, so
    nothing is constant-folded); values must agree in structure, shape, dtype and number. Returns
    ``{name: (our value, our gradient or None)}``.
    """
    is_array = lambda v: isinstance(v, (np.ndarray, jax.Array))
    traced = {n: (args, {k: v for k, v in kw.items() if is_array(v)}) for n, (args, kw) in cases.items()}
    static = {n: {k: v for k, v in kw.items() if not is_array(v)} for n, (_, kw) in cases.items()}

    def program(traced):
        out = {}
        for name, (args, array_kwargs) in traced.items():
            fs = [functools.partial(f, **static[name], **array_kwargs) for f in (ours, theirs)]
            out[name] = [f(*args) for f in fs]
            if grad:
                out[name] += [jax.grad(lambda a0, f=f, a=args: _weighted_sum(f(a0, *a[1:])))(args[0]) for f in fs]
        return out

    results = jax.jit(program)(traced)
    for name, values in results.items():
        _assert_same_layout(values[0], values[1], name)
        assert_close(values[0], values[1], rtol=rtol, atol=atol, err_msg=name)
        if grad:
            assert_close(values[2], values[3], rtol=rtol, atol=atol, err_msg=f"{name} (gradient)")
    first = next(iter(cases))
    args, kwargs = cases[first]
    assert_close(ours(*args, **kwargs), results[first][1], rtol=rtol, atol=atol, err_msg=f"{first} (without jit)")
    return {name: (values[0], values[2] if grad else None) for name, values in results.items()}


def test_fenchel_young_loss_of_logsumexp_is_the_softmax_cross_entropy():
    ours, theirs = losses.make_fenchel_young_loss(logsumexp), optax.losses.make_fenchel_young_loss(logsumexp)
    value, grad = compare_with_optax(ours, theirs, {"lse": ((SCORES, TARGETS), {})})["lse"]
    assert value.shape == (2, 3)
    s = _np(SCORES)
    log_softmax = s - s.max(-1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(-1, keepdims=True))
    assert_close(value, -(TARGETS * log_softmax).sum(-1), rtol=1e-5, atol=1e-5)
    weights = _np(jnp.cos(jnp.arange(6) + 1.0)).reshape(2, 3, 1)
    softmax = np.exp(log_softmax)
    assert_close(grad, weights * (softmax - TARGETS), atol=1e-6)  # grad of Omega* minus the targets


def test_fenchel_young_loss_of_the_max_and_extra_arguments():
    ours, theirs = losses.make_fenchel_young_loss(jnp.max), optax.losses.make_fenchel_young_loss(jnp.max)
    one_hot = np.eye(5, dtype=np.float32)[RNG.integers(0, 5, size=(2, 3))]
    value, _ = compare_with_optax(ours, theirs, {"max": ((SCORES, one_hot), {})})["max"]
    assert_close(value, SCORES.max(-1) - (SCORES * one_hot).sum(-1))
    # extra arguments reach max_fun unchanged for every row (Optax drops keyword arguments and rejects
    # positional ones, as jnp.vectorize does)
    smoothed = lambda s, temperature=1.0: temperature * logsumexp(s / temperature)
    fy = losses.make_fenchel_young_loss(smoothed)
    expected = 0.5 * logsumexp(SCORES[1] / 0.5, axis=-1) - (TARGETS[1] * SCORES[1]).sum(-1)
    by_keyword, by_position = jax.jit(lambda s, t: (fy(s, t, temperature=0.5), fy(s, t, 0.5)))(SCORES[1], TARGETS[1])
    assert_close(by_keyword, expected, rtol=1e-5)
    assert_close(by_position, expected, rtol=1e-5)
    with pytest.raises(TypeError, match="max_fun"):
        losses.make_fenchel_young_loss(3.0)
