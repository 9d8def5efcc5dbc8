"""Kullback-Leibler divergences (``optcompose/losses/_divergences.py``).

Compared with Optax 0.2.8 (value, shape, dtype, gradient in the log-predictions; with and without
``jax.jit``), with a float64 NumPy reference, on targets holding exact zeros and masked entries.

PyTorch mapping checked here (``F = torch.nn.functional``):

* ``kl_divergence(log_p, t)`` == ``F.kl_div(log_p, t, reduction="none").sum(-1)``
* ``kl_divergence_with_log_targets(log_p, log_t)`` ==
  ``F.kl_div(log_p, log_t, reduction="none", log_target=True).sum(-1)``
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optcompose import losses

RNG = np.random.default_rng(2)
_raw = 3 * RNG.normal(size=(4, 5))
LOG_PREDICTIONS = (_raw - np.log(np.exp(_raw).sum(-1, keepdims=True))).astype(np.float32)
TARGETS = RNG.random((4, 5)) + 0.05
TARGETS[0, :2] = 0.0  # 0 log 0 = 0
TARGETS = (TARGETS / TARGETS.sum(-1, keepdims=True)).astype(np.float32)
MASK = RNG.random((4, 5)) > 0.25


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


def np_kl(log_p, t):
    log_p, t = _np(log_p), _np(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t == 0, 0.0, t * (np.log(t) - log_p))


def test_kl_divergence():
    cases = {"where": ((LOG_PREDICTIONS, TARGETS), {"where": MASK}), "axis0": ((LOG_PREDICTIONS, TARGETS), {"axis": 0})}
    results = compare_with_optax(losses.kl_divergence, optax.losses.kl_divergence, cases)
    assert_close(results["where"][0], np.where(MASK, np_kl(LOG_PREDICTIONS, TARGETS), 0.0).sum(-1))
    assert_close(results["axis0"][0], np_kl(LOG_PREDICTIONS, TARGETS).sum(0))
    # finite gradient in the targets at exact zeros (Optax: NaN from d/dt log t)
    grad = jax.jit(jax.grad(lambda t: losses.kl_divergence(LOG_PREDICTIONS, t).sum()))(TARGETS)
    assert np.all(np.isfinite(grad))
    assert_close(grad[0, :2], -LOG_PREDICTIONS[0, :2] + np.log(1.0))  # d/dt [t log t - t log p] with t log t -> 0


def test_kl_divergence_torch():
    torch = pytest.importorskip("torch")
    log_p, t = torch.tensor(LOG_PREDICTIONS), torch.tensor(TARGETS)
    expected = torch.nn.functional.kl_div(log_p, t, reduction="none").sum(-1)
    assert_close(losses.kl_divergence(LOG_PREDICTIONS, TARGETS), expected.numpy())
    log_t = torch.log(torch.tensor(TARGETS[1:]))
    expected = torch.nn.functional.kl_div(log_p[1:], log_t, reduction="none", log_target=True).sum(-1)
    assert_close(losses.kl_divergence_with_log_targets(LOG_PREDICTIONS[1:], np.log(TARGETS[1:])), expected.numpy())


def test_kl_divergence_with_log_targets():
    log_targets = np.log(TARGETS[1:])
    cases = {"where": ((LOG_PREDICTIONS[1:], log_targets), {"where": MASK[1:]})}
    results = compare_with_optax(
        losses.kl_divergence_with_log_targets, optax.losses.kl_divergence_with_log_targets, cases
    )
    expected = np.where(MASK[1:], np_kl(LOG_PREDICTIONS[1:], TARGETS[1:]), 0.0).sum(-1)
    assert_close(results["where"][0], expected, rtol=1e-5)


def test_generalized_and_convex_kl_divergence():
    measure = 2.5 * TARGETS  # unnormalized
    cases = {"where": ((LOG_PREDICTIONS, measure), {"where": MASK})}
    results = compare_with_optax(losses.generalized_kl_divergence, optax.losses.generalized_kl_divergence, cases)
    expected = np.where(MASK, np_kl(LOG_PREDICTIONS, measure) - measure + np.exp(_np(LOG_PREDICTIONS)), 0).sum(-1)
    assert_close(results["where"][0], expected)
    assert np.all(_np(results["where"][0]) >= -1e-6)
    with pytest.warns(DeprecationWarning, match="generalized_kl_divergence"):
        deprecated = losses.convex_kl_divergence(LOG_PREDICTIONS, measure, where=MASK)
    assert_close(deprecated, results["where"][0])
    with pytest.warns(DeprecationWarning):
        compare_with_optax(losses.convex_kl_divergence, optax.losses.convex_kl_divergence, cases)


def test_bad_input():
    with pytest.raises(TypeError, match="targets"):
        losses.kl_divergence(LOG_PREDICTIONS, np.ones((4, 5), np.int32))
    with pytest.raises(TypeError, match="log_predictions"):
        losses.kl_divergence_with_log_targets(np.zeros((4, 5), np.int32), LOG_PREDICTIONS)
    with pytest.raises(ValueError, match="log_predictions and targets"):
        losses.generalized_kl_divergence(LOG_PREDICTIONS, TARGETS[:, :2])


def _check_dtypes(part):
    calls = {
        "kl_divergence": lambda m, x: m.kl_divergence(x, TARGETS, where=MASK),
        "kl_divergence_with_log_targets": lambda m, x: m.kl_divergence_with_log_targets(x, x[::-1]),
        "generalized_kl_divergence": lambda m, x: m.generalized_kl_divergence(x, TARGETS),
    }
    if part == "bfloat16":
        x16 = jnp.asarray(LOG_PREDICTIONS, jnp.bfloat16)
        ours = jax.jit(lambda z: {n: c(losses, z) for n, c in calls.items()})(x16)
        theirs = jax.eval_shape(lambda z: {n: c(optax.losses, z) for n, c in calls.items()}, x16)
        for name in calls:
            assert ours[name].dtype == theirs[name].dtype and np.all(np.isfinite(_np(ours[name]))), name
        return
    with jax.enable_x64(True):
        x64 = jnp.asarray(LOG_PREDICTIONS, jnp.float64)
        ours, theirs = jax.jit(lambda z: [{n: c(m, z) for n, c in calls.items()} for m in (losses, optax.losses)])(x64)
        for name in calls:
            assert ours[name].dtype == theirs[name].dtype == jnp.float64, name
            assert_close(ours[name], theirs[name], rtol=1e-12, atol=1e-12, err_msg=name)


def test_bfloat16():
    _check_dtypes("bfloat16")


@pytest.mark.slow
def test_float64():
    _check_dtypes("float64")
