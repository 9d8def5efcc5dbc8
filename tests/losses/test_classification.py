"""Sigmoid and softmax cross entropies (``optcompose/losses/_classification.py``).

Every loss is compared with Optax 0.2.8 (value, shape, dtype and gradient in the logits, under
``jax.jit``, and without jit for the first case), on shared inputs holding zeros, logits of +-1e4
and masked entries; the core ones also with a float64 NumPy reference written from the formula.

PyTorch mapping checked here (``F = torch.nn.functional``):

* ``sigmoid_binary_cross_entropy(x, y)`` == ``F.binary_cross_entropy_with_logits(x, y, reduction="none")``
* ``softmax_cross_entropy(x, p)`` == ``F.cross_entropy(x, p, reduction="none")`` (probability targets)
* ``softmax_cross_entropy_with_integer_labels(x, i)`` == ``F.cross_entropy(x, i, reduction="none")``
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from losses_helpers import _np, assert_close, compare_with_optax

from optcompose import losses

RNG = np.random.default_rng(0)
LOGITS = (3 * RNG.normal(size=(4, 5))).astype(np.float32)
LOGITS[1] = 0.0
LOGITS[2, :3] = [1e4, -1e4, 0.0]
_raw = np.exp(RNG.normal(size=(4, 5)))
SOFT = (_raw / _raw.sum(-1, keepdims=True)).astype(np.float32)
INT_LABELS = np.array([0, 3, 1, 4], np.int32)
ONE_HOT = np.eye(5, dtype=np.float32)[INT_LABELS]
BINARY = RNG.integers(0, 2, size=(4, 5)).astype(np.float32)
MASK = RNG.random((4, 5)) > 0.3
MASK[0] = True
MASK[3] = False  # a fully masked row
ROW_MASK = np.array([True, False, True, True])




def np_log_softmax(x, axis=-1):
    x = _np(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def np_sigmoid(x):
    x = _np(x)
    return np.exp(-np.logaddexp(0.0, -x))


# --- sigmoid losses -------------------------------------------------------------------------------


def test_sigmoid_binary_cross_entropy():
    cases = {"soft": ((LOGITS, SOFT), {})}
    results = compare_with_optax(losses.sigmoid_binary_cross_entropy, optax.losses.sigmoid_binary_cross_entropy, cases)
    value, grad = results["soft"]
    x, y = _np(LOGITS), _np(SOFT)
    assert_close(value, y * np.logaddexp(0.0, -x) + (1 - y) * np.logaddexp(0.0, x), rtol=1e-6)
    weights = _np(jnp.cos(jnp.arange(20) + 1.0).reshape(4, 5))
    assert_close(grad, weights * (np_sigmoid(x) - y), atol=1e-6)  # sigmoid(x) - y, also at x = 0
    # each term keeps its relative precision (no softplus(x) - x cancellation)
    assert_close(losses.sigmoid_binary_cross_entropy(np.float32(-20.0), 0.0), np.log1p(np.exp(-20.0)), rtol=1e-6)


@pytest.mark.slow
def test_sigmoid_binary_cross_entropy_more_cases():
    cases = {"binary": ((LOGITS, BINARY), {}), "broadcast": ((LOGITS, BINARY[0]), {})}
    compare_with_optax(losses.sigmoid_binary_cross_entropy, optax.losses.sigmoid_binary_cross_entropy, cases)


def test_sigmoid_binary_cross_entropy_torch():
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(LOGITS), torch.tensor(SOFT), reduction="none"
    )
    assert_close(losses.sigmoid_binary_cross_entropy(LOGITS, SOFT), expected.numpy(), rtol=1e-5)


def test_sigmoid_binary_cross_entropy_bad_input():
    with pytest.raises(TypeError, match="logits"):
        losses.sigmoid_binary_cross_entropy(np.array([1, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="logits and labels"):
        losses.sigmoid_binary_cross_entropy(LOGITS, BINARY[:, :3])


def test_sigmoid_focal_loss():
    cases = {"alpha": ((LOGITS, BINARY), {"alpha": 0.25, "gamma": 0.5})}
    value, grad = compare_with_optax(losses.sigmoid_focal_loss, optax.losses.sigmoid_focal_loss, cases)["alpha"]
    # the focal factor (and alpha) only scale down; gradients stay finite at +-1e4
    assert np.all(_np(value) <= _np(losses.sigmoid_binary_cross_entropy(LOGITS, BINARY)) + 1e-6)
    assert np.all(np.isfinite(grad))


@pytest.mark.slow
def test_sigmoid_focal_loss_more_cases():
    cases = {
        "binary": ((LOGITS, BINARY), {}),
        "soft": ((LOGITS, SOFT), {"alpha": 0.6}),
        "gamma0": ((LOGITS, SOFT), {"gamma": 0.0}),
    }
    results = compare_with_optax(losses.sigmoid_focal_loss, optax.losses.sigmoid_focal_loss, cases)
    assert_close(results["gamma0"][0], losses.sigmoid_binary_cross_entropy(LOGITS, SOFT))


# --- softmax cross entropies ----------------------------------------------------------------------


def test_softmax_cross_entropy():
    cases = {"where": ((LOGITS, SOFT), {"where": MASK}), "soft": ((LOGITS, SOFT), {})}
    results = compare_with_optax(losses.softmax_cross_entropy, optax.losses.softmax_cross_entropy, cases)
    assert_close(results["soft"][0], -(_np(SOFT) * np_log_softmax(LOGITS)).sum(-1))
    # masked classes leave the normalizer and the sum; the fully masked row gives 0
    with np.errstate(invalid="ignore", divide="ignore"):
        masked = -np.where(MASK, _np(SOFT) * np_log_softmax(np.where(MASK, _np(LOGITS), -np.inf)), 0.0).sum(-1)
    masked[3] = 0.0
    assert_close(results["where"][0], masked)
    # the gradient in the labels stays finite at masked entries (Optax: NaN)
    grad = jax.jit(jax.grad(lambda y: losses.softmax_cross_entropy(LOGITS, y, where=MASK).sum()))(SOFT)
    assert np.all(np.isfinite(grad)) and np.all(_np(grad)[~MASK] == 0)


@pytest.mark.slow
def test_softmax_cross_entropy_more_cases():
    cases = {
        "axis0": ((LOGITS, ONE_HOT), {"axis": 0}),
        "both_axes": ((LOGITS, SOFT), {"axis": (0, 1)}),
        "row_where": ((LOGITS, ONE_HOT), {"where": ROW_MASK}),
    }
    compare_with_optax(losses.softmax_cross_entropy, optax.losses.softmax_cross_entropy, cases)


def test_softmax_cross_entropy_torch():
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.cross_entropy(torch.tensor(LOGITS), torch.tensor(SOFT), reduction="none")
    assert_close(losses.softmax_cross_entropy(LOGITS, SOFT), expected.numpy())


def test_softmax_cross_entropy_bad_input():
    with pytest.raises(TypeError, match="logits"):
        losses.softmax_cross_entropy(INT_LABELS, ONE_HOT)
    with pytest.raises(ValueError, match="labels"):
        losses.softmax_cross_entropy(LOGITS, ONE_HOT[:, :2])
    with pytest.raises(ValueError, match="where"):
        losses.softmax_cross_entropy(LOGITS, ONE_HOT, where=MASK[:, :2])


def test_softmax_cross_entropy_with_integer_labels():
    cases = {"last": ((LOGITS, INT_LABELS), {}), "where": ((LOGITS, INT_LABELS), {"where": MASK})}
    results = compare_with_optax(
        losses.softmax_cross_entropy_with_integer_labels, optax.losses.softmax_cross_entropy_with_integer_labels, cases
    )
    value, grad = results["last"]
    assert_close(value, -np_log_softmax(LOGITS)[np.arange(4), INT_LABELS])
    assert_close(value, losses.softmax_cross_entropy(LOGITS, ONE_HOT))
    weights = _np(jnp.cos(jnp.arange(4) + 1.0))[:, None]
    assert_close(grad, weights * (np.exp(np_log_softmax(LOGITS)) - ONE_HOT), atol=1e-6)


@pytest.mark.slow
def test_softmax_cross_entropy_with_integer_labels_more_cases():
    cases = {
        "axis0": ((LOGITS.T, INT_LABELS), {"axis": 0}),
        "axes_where": (
            (LOGITS.reshape(2, 2, 5), np.array([3, 7], np.int32)),
            {"axis": (1, 2), "where": MASK.reshape(2, 2, 5)},
        ),
        "row_where": ((LOGITS, INT_LABELS), {"where": ROW_MASK}),
    }
    results = compare_with_optax(
        losses.softmax_cross_entropy_with_integer_labels, optax.losses.softmax_cross_entropy_with_integer_labels, cases
    )
    # a tuple of axes indexes the flattened (row-major) slice of those axes, as jnp.ravel_multi_index
    grid = LOGITS.reshape(2, 2, 5)
    masked = np.where(MASK.reshape(2, 2, 5), grid, -np.inf).reshape(2, 10)
    log_normalizer = np.log(np.exp(masked - masked.max(-1, keepdims=True)).sum(-1)) + masked.max(-1)
    assert_close(results["axes_where"][0], log_normalizer - grid.reshape(2, 10)[np.arange(2), [3, 7]])


def test_softmax_cross_entropy_with_integer_labels_torch():
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.cross_entropy(
        torch.tensor(LOGITS), torch.tensor(INT_LABELS).long(), reduction="none"
    )
    assert_close(losses.softmax_cross_entropy_with_integer_labels(LOGITS, INT_LABELS), expected.numpy())


def test_softmax_cross_entropy_with_integer_labels_bad_input():
    with pytest.raises(TypeError, match="labels"):
        losses.softmax_cross_entropy_with_integer_labels(LOGITS, INT_LABELS.astype(np.float32))
    with pytest.raises(TypeError, match="logits"):
        losses.softmax_cross_entropy_with_integer_labels(INT_LABELS[:, None], INT_LABELS)
    with pytest.raises(ValueError, match="axis"):
        losses.softmax_cross_entropy_with_integer_labels(LOGITS, INT_LABELS, axis=2)
    with pytest.raises(ValueError, match="axis"):
        losses.softmax_cross_entropy_with_integer_labels(LOGITS, INT_LABELS, axis=None)
    with pytest.raises(ValueError, match="labels"):
        losses.softmax_cross_entropy_with_integer_labels(LOGITS, INT_LABELS[:, None])


def test_safe_softmax_cross_entropy():
    logits = LOGITS.copy()
    logits[0, 1] = logits[3, 4] = -np.inf
    labels = ONE_HOT.copy()
    labels[0, 1] = labels[3, 4] = 0.0
    cases = {"minus_inf": ((logits, labels), {})}
    results = compare_with_optax(losses.safe_softmax_cross_entropy, optax.losses.safe_softmax_cross_entropy, cases)
    assert_close(losses.safe_softmax_cross_entropy(LOGITS, SOFT), losses.softmax_cross_entropy(LOGITS, SOFT))
    assert np.all(np.isfinite(results["minus_inf"][0]))
    assert np.isnan(losses.softmax_cross_entropy(logits, labels)[0])  # the unsafe one: 0 * -inf
    grad_labels = jax.jit(jax.grad(lambda y: losses.safe_softmax_cross_entropy(logits, y).sum()))(labels)
    assert np.all(np.isfinite(grad_labels)) and np.all(np.asarray(grad_labels)[~np.isfinite(logits)] == 0)


def test_poly_loss_cross_entropy():
    cases = {"where": ((LOGITS, SOFT), {"where": MASK, "epsilon": -1.0})}
    compare_with_optax(losses.poly_loss_cross_entropy, optax.losses.poly_loss_cross_entropy, cases)
    assert_close(losses.poly_loss_cross_entropy(LOGITS, SOFT, epsilon=0.0), losses.softmax_cross_entropy(LOGITS, SOFT))
    p_t = np.exp(np_log_softmax(LOGITS))[np.arange(4), INT_LABELS]
    with np.errstate(divide="ignore"):
        expected = -np.log(p_t) + 2.0 * (1 - p_t)
    ours = losses.poly_loss_cross_entropy(LOGITS, ONE_HOT)
    assert_close(ours[np.array([0, 1, 3])], expected[[0, 1, 3]])
    with pytest.raises(TypeError, match="labels"):
        losses.poly_loss_cross_entropy(LOGITS, INT_LABELS)


@pytest.mark.slow
def test_poly_loss_cross_entropy_more_cases():
    cases = {"default": ((LOGITS, ONE_HOT), {}), "axis0": ((LOGITS, SOFT), {"axis": 0, "epsilon": 0.5})}
    compare_with_optax(losses.poly_loss_cross_entropy, optax.losses.poly_loss_cross_entropy, cases)


# --- dtypes ---------------------------------------------------------------------------------------

CALLS = {
    "sigmoid_binary_cross_entropy": lambda m, x: m.sigmoid_binary_cross_entropy(x, BINARY),
    "sigmoid_focal_loss": lambda m, x: m.sigmoid_focal_loss(x, BINARY, alpha=0.25),
    "softmax_cross_entropy": lambda m, x: m.softmax_cross_entropy(x, SOFT, where=MASK),
    "softmax_cross_entropy_with_integer_labels": lambda m, x: m.softmax_cross_entropy_with_integer_labels(
        x, INT_LABELS
    ),
    "safe_softmax_cross_entropy": lambda m, x: m.safe_softmax_cross_entropy(x, ONE_HOT),
    "poly_loss_cross_entropy": lambda m, x: m.poly_loss_cross_entropy(x, SOFT),
}


def test_bfloat16_inputs_give_finite_results_with_optax_dtypes():
    x = jnp.asarray(LOGITS, jnp.bfloat16)
    ours = jax.jit(lambda z: {n: call(losses, z) for n, call in CALLS.items()})(x)
    theirs = jax.eval_shape(lambda z: {n: call(optax.losses, z) for n, call in CALLS.items()}, x)
    for name in CALLS:
        assert ours[name].dtype == theirs[name].dtype, name
        assert np.all(np.isfinite(_np(ours[name]))), name


def test_float64_under_x64():
    with jax.enable_x64(True):
        x = jnp.asarray(LOGITS, jnp.float64)
        ours, theirs = jax.jit(lambda z: [{n: c(m, z) for n, c in CALLS.items()} for m in (losses, optax.losses)])(x)
        for name in CALLS:
            assert ours[name].dtype == theirs[name].dtype == jnp.float64, name
            assert_close(ours[name], theirs[name], rtol=1e-12, atol=1e-12, err_msg=name)
