"""Hinge, perceptron and sparsemax losses (``optcompose/losses/_margin.py``).

Compared with Optax 0.2.8 (value, shape, dtype, gradient; with and without ``jax.jit``); the binary
hinge loss also with a NumPy reference.

PyTorch mapping checked here (``F = torch.nn.functional``):

* ``hinge_loss(f, t)`` == ``F.hinge_embedding_loss(t * f, -ones, margin=1, reduction="none")``
  (torch's hinge embedding loss is ``max(0, margin - x)`` for target -1)
* ``multiclass_hinge_loss(s, y)`` == ``num_classes * F.multi_margin_loss(s, y, reduction="none")`` for
  two classes only: torch sums the margins over the wrong classes (Weston-Watkins), Optax takes their
  max (Crammer-Singer)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from losses_helpers import _np, assert_close, check_dtypes_against_optax, compare_with_optax

from optcompose import losses

RNG = np.random.default_rng(1)
SCORES = (2 * RNG.normal(size=(4, 5))).astype(np.float32)
SCORES[1] = 0.0
SCORES[2, :2] = [1e4, -1e4]
SIGNS = np.where(RNG.random((4, 5)) > 0.5, 1.0, -1.0).astype(np.float32)
BITS = (SIGNS > 0).astype(np.float32)
LABELS = np.array([2, 0, 1, 4], np.int32)
SMALL = (0.8 * RNG.normal(size=(4, 5))).astype(np.float32)  # inside the sparse region of sparsemax




def np_sparsemax(scores):
    """Row-wise Euclidean projection onto the simplex, by sorting (float64)."""
    s = _np(scores)
    u = -np.sort(-s, axis=-1)
    k = np.arange(1, s.shape[-1] + 1)
    cumulative = np.cumsum(u, axis=-1)
    support = (u * k - cumulative + 1 > 0).sum(-1, keepdims=True)
    tau = (np.take_along_axis(cumulative, support - 1, axis=-1) - 1) / support
    return np.maximum(s - tau, 0.0)


def test_hinge_loss():
    cases = {"signs": ((SCORES, SIGNS), {})}
    value, _ = compare_with_optax(losses.hinge_loss, optax.losses.hinge_loss, cases)["signs"]
    assert_close(value, np.maximum(0.0, 1.0 - _np(SCORES) * _np(SIGNS)))


def test_hinge_loss_torch():
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.hinge_embedding_loss(
        torch.tensor(SCORES * SIGNS), -torch.ones(4, 5), margin=1.0, reduction="none"
    )
    assert_close(losses.hinge_loss(SCORES, SIGNS), expected.numpy())


def test_perceptron_loss():
    compare_with_optax(losses.perceptron_loss, optax.losses.perceptron_loss, {"signs": ((SCORES, SIGNS), {})})
    with pytest.raises(ValueError, match="predictor_outputs and targets"):
        losses.perceptron_loss(SCORES, SIGNS[0])


def test_sparsemax_loss():
    cases = {"edges": ((SCORES, BITS), {})}
    results = compare_with_optax(losses.sparsemax_loss, optax.losses.sparsemax_loss, cases)
    # zero exactly when the sparse sigmoid already equals the label
    hits = _np(jax.nn.sparse_sigmoid(SCORES)) == BITS
    assert np.all((_np(results["edges"][0]) == 0) == hits)


def test_multiclass_hinge_and_perceptron_losses():
    cases = {"labels": ((SCORES, LABELS), {})}
    hinge, _ = compare_with_optax(losses.multiclass_hinge_loss, optax.losses.multiclass_hinge_loss, cases)["labels"]
    perceptron, _ = compare_with_optax(
        losses.multiclass_perceptron_loss, optax.losses.multiclass_perceptron_loss, cases
    )["labels"]
    s, true = _np(SCORES), _np(SCORES)[np.arange(4), LABELS]
    margins = np.where(np.eye(5, dtype=bool)[LABELS], 0.0, 1.0 + s - true[:, None])
    assert_close(hinge, np.maximum(0.0, margins.max(-1)))
    assert_close(perceptron, s.max(-1) - true)


def test_multiclass_hinge_loss_torch_two_classes():
    torch = pytest.importorskip("torch")
    scores, labels = SCORES[:, :2].copy(), (LABELS % 2).astype(np.int64)
    expected = 2 * torch.nn.functional.multi_margin_loss(torch.tensor(scores), torch.tensor(labels), reduction="none")
    assert_close(losses.multiclass_hinge_loss(scores, labels), expected.numpy())


def test_multiclass_sparsemax_loss():
    cases = {"edges": ((SCORES, LABELS), {})}
    value, grad = compare_with_optax(losses.multiclass_sparsemax_loss, optax.losses.multiclass_sparsemax_loss, cases)[
        "edges"
    ]
    assert np.all(_np(value) >= -1e-6)
    # the gradient is sparsemax(s) - one_hot(y)
    weights = _np(jnp.cos(jnp.arange(4) + 1.0))[:, None]
    assert_close(grad, weights * (np_sparsemax(SCORES) - np.eye(5)[LABELS]), atol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        losses.multiclass_sparsemax_loss(SMALL, LABELS[:2])


@pytest.mark.slow
def test_sparsemax_losses_inside_the_sparse_region():
    compare_with_optax(losses.sparsemax_loss, optax.losses.sparsemax_loss, {"small": ((SMALL, BITS), {})})
    cases = {"small": ((SMALL, LABELS), {})}
    value, _ = compare_with_optax(losses.multiclass_sparsemax_loss, optax.losses.multiclass_sparsemax_loss, cases)[
        "small"
    ]
    p, true = np_sparsemax(SMALL), _np(SMALL)[np.arange(4), LABELS]
    assert_close(value, (p * (_np(SMALL) - true[:, None])).sum(-1) + 0.5 * (1 - (p * p).sum(-1)), rtol=1e-5)
    # any number of leading dimensions works (Optax: exactly one)
    batched = jax.jit(losses.multiclass_sparsemax_loss)(SMALL.reshape(2, 2, 5), LABELS.reshape(2, 2))
    assert_close(batched.reshape(4), value)


def _check_dtypes(part):
    calls = {
        "hinge_loss": lambda m, x: m.hinge_loss(x, SIGNS),
        "perceptron_loss": lambda m, x: m.perceptron_loss(x, SIGNS),
        "sparsemax_loss": lambda m, x: m.sparsemax_loss(x, BITS),
        "multiclass_hinge_loss": lambda m, x: m.multiclass_hinge_loss(x, LABELS),
        "multiclass_perceptron_loss": lambda m, x: m.multiclass_perceptron_loss(x, LABELS),
        "multiclass_sparsemax_loss": lambda m, x: m.multiclass_sparsemax_loss(x, LABELS),
    }
    check_dtypes_against_optax(losses, optax.losses, calls, SCORES, part)


def test_bfloat16():
    _check_dtypes("bfloat16")


@pytest.mark.slow
def test_float64():
    _check_dtypes("float64")
