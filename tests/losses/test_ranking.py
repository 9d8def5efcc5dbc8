"""Ranking softmax loss (``optcompose/losses/_ranking.py``).

Compared with Optax 0.2.8 (value, shape, dtype, gradient in the scores; with and without
``jax.jit``) with masks (including a list with no valid item), weights and each reduction, and with
a NumPy reference. No direct PyTorch counterpart.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optcompose import losses

RNG = np.random.default_rng(5)
SCORES = (2 * RNG.normal(size=(3, 4))).astype(np.float32)
SCORES[1, :2] = [1e4, -1e4]
LABELS = RNG.integers(0, 3, size=(3, 4)).astype(np.float32)
WHERE = RNG.random((3, 4)) > 0.3
WHERE[0] = True
WHERE[2] = False  # a list with no valid item
WEIGHTS = RNG.random((3, 4)).astype(np.float32)


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


def test_ranking_softmax_loss():
    cases = {
        "masked_mean": ((SCORES, LABELS), {"where": WHERE, "weights": WEIGHTS}),
        "unreduced": ((SCORES, LABELS), {"where": WHERE, "reduce_fn": None}),
    }
    results = compare_with_optax(losses.ranking_softmax_loss, optax.losses.ranking_softmax_loss, cases)
    s = np.where(WHERE, _np(SCORES), -np.inf)
    with np.errstate(invalid="ignore"):
        log_probs = s - np.log(np.exp(s - s.max(-1, keepdims=True)).sum(-1, keepdims=True)) - s.max(-1, keepdims=True)
    per_list = -np.where(WHERE, LABELS * log_probs, 0.0).sum(-1)
    per_list[2] = 0.0
    assert_close(results["unreduced"][0], per_list)
    assert np.all(np.isfinite(results["masked_mean"][1]))  # masked items and the empty list: zero gradient


@pytest.mark.slow
def test_ranking_softmax_loss_more_cases():
    cases = {
        "mean": ((SCORES, LABELS), {}),
        "sum": ((SCORES, LABELS), {"reduce_fn": jnp.sum, "weights": WEIGHTS}),
        "all_masked": ((SCORES, LABELS), {"where": np.zeros((3, 4), bool)}),
    }
    results = compare_with_optax(losses.ranking_softmax_loss, optax.losses.ranking_softmax_loss, cases)
    assert float(results["all_masked"][0]) == 0.0


def test_ranking_softmax_loss_bad_input():
    with pytest.raises(TypeError, match="logits"):
        losses.ranking_softmax_loss(LABELS.astype(np.int32), LABELS)
    with pytest.raises(ValueError, match="where"):
        losses.ranking_softmax_loss(SCORES, LABELS, where=WHERE[:, :2])
