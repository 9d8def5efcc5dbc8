"""Regression losses and cosine similarity (``optcompose/losses/_regression.py``).

Compared with Optax 0.2.8 (value, shape, dtype, gradient in the predictions; with and without
``jax.jit``) on errors holding zeros and +-1e4, with float64 NumPy references from the formulas.

PyTorch mapping checked here (``F = torch.nn.functional``):

* ``squared_error(p, t)`` == ``F.mse_loss(p, t, reduction="none")``; ``l2_loss`` is half of it
* ``huber_loss(p, t, delta=d)`` == ``F.huber_loss(p, t, reduction="none", delta=d)``
* ``huber_loss(p, t, delta=b) / b`` == ``F.smooth_l1_loss(p, t, reduction="none", beta=b)``
* ``cosine_similarity(a, b)`` == ``F.cosine_similarity(a, b, dim=-1)`` (nonzero vectors)
* ``cosine_distance(a, b)`` == ``F.cosine_embedding_loss(a, b, ones, reduction="none")``
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from losses_helpers import _np, assert_close, compare_with_optax

from optcompose import losses

RNG = np.random.default_rng(6)
PREDICTIONS = (2 * RNG.normal(size=(4, 5))).astype(np.float32)
PREDICTIONS[1, :3] = [1e4, -1e4, 1e-4]
TARGETS = RNG.normal(size=(4, 5)).astype(np.float32)
TARGETS[1, :3] = 0.0
TARGETS[2] = PREDICTIONS[2]  # zero errors
MASK = RNG.random((4, 5)) > 0.3
MASK[0] = True




def errors():
    return _np(PREDICTIONS) - _np(TARGETS)


def test_squared_error_and_l2_loss():
    cases = {"pairs": ((PREDICTIONS, TARGETS), {})}
    squared, grad = compare_with_optax(losses.squared_error, optax.losses.squared_error, cases)["pairs"]
    half, _ = compare_with_optax(losses.l2_loss, optax.losses.l2_loss, cases)["pairs"]
    assert_close(squared, errors() ** 2, rtol=1e-6)
    assert_close(half, 0.5 * errors() ** 2, rtol=1e-6)
    assert_close(grad, 2 * errors() * _np(jnp.cos(jnp.arange(20) + 1.0)).reshape(4, 5), rtol=1e-5)
    assert_close(losses.l2_loss(PREDICTIONS), 0.5 * _np(PREDICTIONS) ** 2, rtol=1e-6)
    with pytest.raises(ValueError, match="predictions and targets"):
        losses.squared_error(PREDICTIONS, TARGETS[0])  # no broadcasting, as in Optax
    with pytest.raises(TypeError, match="predictions"):
        losses.l2_loss(np.arange(3))


def test_huber_loss():
    cases = {"delta": ((PREDICTIONS, TARGETS), {"delta": 0.7}), "broadcast": ((PREDICTIONS, TARGETS[0]), {})}
    results = compare_with_optax(losses.huber_loss, optax.losses.huber_loss, cases)
    value, grad = results["delta"]
    e = errors()
    assert_close(value, np.where(np.abs(e) <= 0.7, 0.5 * e**2, 0.7 * (np.abs(e) - 0.35)), rtol=1e-6)
    weights = _np(jnp.cos(jnp.arange(20) + 1.0)).reshape(4, 5)
    assert_close(grad, weights * np.clip(e, -0.7, 0.7), atol=1e-6)  # the clipped error


def test_log_cosh():
    cases = {"pairs": ((PREDICTIONS, TARGETS), {}), "alone": ((PREDICTIONS,), {})}
    results = compare_with_optax(losses.log_cosh, optax.losses.log_cosh, cases, atol=1e-6)
    e = errors()
    with np.errstate(over="ignore"):
        reference = np.where(np.abs(e) < 1, np.log(np.cosh(e)), np.logaddexp(e, -e) - np.log(2.0))
    # relative accuracy also for tiny errors (Optax's log(e^x + e^-x) - log 2 cancels there)
    assert_close(results["pairs"][0], reference, rtol=2e-6, atol=0)
    weights = _np(jnp.cos(jnp.arange(20) + 1.0)).reshape(4, 5)
    assert_close(results["pairs"][1], weights * np.tanh(e), atol=1e-6)


def test_regression_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    p, t = torch.tensor(PREDICTIONS), torch.tensor(TARGETS)
    assert_close(losses.squared_error(PREDICTIONS, TARGETS), F.mse_loss(p, t, reduction="none").numpy())
    assert_close(
        losses.huber_loss(PREDICTIONS, TARGETS, delta=0.7), F.huber_loss(p, t, reduction="none", delta=0.7).numpy()
    )
    assert_close(
        losses.huber_loss(PREDICTIONS, TARGETS, delta=0.7) / 0.7,
        F.smooth_l1_loss(p, t, reduction="none", beta=0.7).numpy(),
    )
    a, b = PREDICTIONS[[0, 2, 3]], TARGETS[[0, 2, 3]]
    ta, tb = torch.tensor(a), torch.tensor(b)
    assert_close(losses.cosine_similarity(a, b), F.cosine_similarity(ta, tb, dim=-1).numpy(), rtol=1e-5)
    expected = F.cosine_embedding_loss(ta, tb, torch.ones(3), reduction="none")
    assert_close(losses.cosine_distance(a, b), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_cosine_similarity_and_distance():
    cases = {"where": ((PREDICTIONS, TARGETS), {"where": MASK, "epsilon": 1e-3})}
    similarity, _ = compare_with_optax(losses.cosine_similarity, optax.losses.cosine_similarity, cases)["where"]
    distance, _ = compare_with_optax(losses.cosine_distance, optax.losses.cosine_distance, cases)["where"]
    a, b = np.where(MASK, _np(PREDICTIONS), 0), np.where(MASK, _np(TARGETS), 0)
    norms = np.sqrt(np.maximum((a * a).sum(-1), 1e-3) * np.maximum((b * b).sum(-1), 1e-3))
    assert_close(similarity, (a * b).sum(-1) / norms, rtol=1e-5)
    assert_close(distance, 1 - (a * b).sum(-1) / norms, rtol=1e-5, atol=1e-6)
    # a zero vector: NaN (0/0) with epsilon = 0, as Optax; 0 and finite gradients with epsilon > 0
    zero = np.zeros((1, 5), np.float32)
    plain, (value, grad) = jax.jit(
        lambda z: (
            losses.cosine_similarity(z, TARGETS[:1]),
            jax.value_and_grad(lambda v: losses.cosine_similarity(v, TARGETS[:1], epsilon=1e-8).sum())(z),
        )
    )(zero)
    assert np.isnan(plain[0]) and float(value) == 0.0 and np.all(np.isfinite(grad))


@pytest.mark.slow
def test_cosine_similarity_more_cases():
    cases = {"plain": ((PREDICTIONS, TARGETS), {}), "axis0": ((PREDICTIONS, TARGETS[:, :1]), {"axis": 0})}
    compare_with_optax(losses.cosine_similarity, optax.losses.cosine_similarity, cases)


def test_bfloat16_and_float64():
    calls = {
        "squared_error": lambda m, x, t: m.squared_error(x, t),
        "l2_loss": lambda m, x, t: m.l2_loss(x),
        "huber_loss": lambda m, x, t: m.huber_loss(x, t, delta=0.5),
        "log_cosh": lambda m, x, t: m.log_cosh(x, t),
        "cosine_similarity": lambda m, x, t: m.cosine_similarity(x, t, epsilon=1e-6),
        "cosine_distance": lambda m, x, t: m.cosine_distance(x, t, where=MASK),
    }
    x16, t16 = jnp.asarray(PREDICTIONS / 100, jnp.bfloat16), jnp.asarray(TARGETS, jnp.bfloat16)
    ours = jax.jit(lambda x, t: {n: c(losses, x, t) for n, c in calls.items()})(x16, t16)
    theirs = jax.eval_shape(lambda x, t: {n: c(optax.losses, x, t) for n, c in calls.items()}, x16, t16)
    for name in calls:
        assert ours[name].dtype == theirs[name].dtype and np.all(np.isfinite(_np(ours[name]))), name
    with jax.enable_x64(True):
        x64, t64 = jnp.asarray(PREDICTIONS, jnp.float64), jnp.asarray(TARGETS, jnp.float64)
        ours, theirs = jax.jit(
            lambda x, t: [{n: c(m, x, t) for n, c in calls.items()} for m in (losses, optax.losses)]
        )(x64, t64)
        for name in calls:
            assert ours[name].dtype == theirs[name].dtype == jnp.float64, name
            assert_close(ours[name], theirs[name], rtol=1e-12, atol=1e-12, err_msg=name)
