"""Dice losses (``optcompose/losses/_segmentation.py``).

Compared with Optax 0.2.8 (value, shape, dtype, gradient in the predictions; with and without
``jax.jit``), and with a NumPy reference of the Dice/Tversky formula. No direct PyTorch counterpart.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import optax
import pytest
from losses_helpers import _np, assert_close, check_dtypes_against_optax, compare_with_optax

from optcompose import losses

RNG = np.random.default_rng(7)
LOGITS = (2 * RNG.normal(size=(2, 3, 3, 3))).astype(np.float32)
LOGITS[0, 0, 0] = [1e4, -1e4, 0.0]
TARGETS = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, size=(2, 3, 3))]
BINARY_LOGITS = LOGITS[..., 0]
BINARY_TARGETS = TARGETS[..., 1]
_raw = np.exp(RNG.normal(size=(2, 3, 3, 3)))
PROBABILITIES = (_raw / _raw.sum(-1, keepdims=True)).astype(np.float32)




def test_dice_loss():
    cases = {
        "tversky": (
            (LOGITS, TARGETS),
            {"alpha": 0.3, "beta": 0.7, "class_weights": np.array([1.0, 2.0, 0.5], np.float32), "reduction": "none"},
        ),
        "background": ((LOGITS, TARGETS), {"ignore_background": True, "reduction": "sum", "smooth": 0.5}),
    }
    results = compare_with_optax(losses.dice_loss, optax.losses.dice_loss, cases)
    probs = np.exp(_np(jax.nn.log_softmax(LOGITS)))
    intersection = (probs * TARGETS).sum((1, 2))
    predicted, actual = probs.sum((1, 2)), TARGETS.sum((1, 2))
    tversky = 1 - (intersection + 1) / (
        intersection + 0.3 * (predicted - intersection) + 0.7 * (actual - intersection) + 1
    )
    assert_close(results["tversky"][0], tversky * [1.0, 2.0, 0.5], rtol=1e-5)
    assert np.all(np.isfinite(results["tversky"][1]))


@pytest.mark.slow
def test_dice_loss_more_cases():
    cases = {
        "default": ((LOGITS, TARGETS), {}),
        "axis": ((LOGITS, TARGETS), {"axis": (1,), "reduction": "none"}),
        "channel_added": ((LOGITS[..., 0], TARGETS[..., :1]), {}),
    }
    compare_with_optax(losses.dice_loss, optax.losses.dice_loss, cases)
    cases = {"channel": ((LOGITS[..., :1], TARGETS[..., :1]), {})}
    compare_with_optax(losses.binary_dice_loss, optax.losses.binary_dice_loss, cases)


def test_dice_loss_with_probabilities():
    # Optax checks the sums eagerly only (its check fails under jit); compare eagerly.
    ours = losses.dice_loss(PROBABILITIES, TARGETS, apply_softmax=False)
    assert_close(ours, optax.losses.dice_loss(PROBABILITIES, TARGETS, apply_softmax=False))
    assert_close(jax.jit(functools.partial(losses.dice_loss, apply_softmax=False))(PROBABILITIES, TARGETS), ours)
    perfect = losses.dice_loss(TARGETS, TARGETS, apply_softmax=False, smooth=0.0)
    assert_close(perfect, np.zeros(2), atol=1e-6)
    with pytest.raises(ValueError, match="sum"):
        losses.dice_loss(2 * PROBABILITIES, TARGETS, apply_softmax=False)


def test_dice_loss_bad_input():
    with pytest.raises(ValueError, match="reduction"):
        losses.dice_loss(LOGITS, TARGETS, reduction="max")
    with pytest.raises(ValueError, match="predictions and targets"):
        losses.dice_loss(LOGITS, TARGETS[:1])
    with pytest.raises(ValueError, match="class_weights"):
        losses.dice_loss(LOGITS, TARGETS, class_weights=np.ones((3, 1)))


def test_multiclass_generalized_dice_loss():
    cases = {"background": ((LOGITS, TARGETS), {"ignore_background": True, "smooth": 0.5})}
    value, _ = compare_with_optax(
        losses.multiclass_generalized_dice_loss, optax.losses.multiclass_generalized_dice_loss, cases
    )["background"]
    assert value.shape == ()


def test_binary_dice_loss():
    cases = {"logits": ((BINARY_LOGITS, BINARY_TARGETS), {})}
    results = compare_with_optax(losses.binary_dice_loss, optax.losses.binary_dice_loss, cases)
    p = 1 / (1 + np.exp(-np.clip(_np(BINARY_LOGITS), -50, 50)))
    intersection = (p * BINARY_TARGETS).sum((1, 2))
    expected = 1 - (intersection + 1) / (0.5 * (p.sum((1, 2)) + BINARY_TARGETS.sum((1, 2))) + 1)
    assert_close(results["logits"][0], expected, rtol=1e-5)
    # probabilities of one class need not sum to 1 (Optax raises ValueError here)
    p32 = p.astype(np.float32)
    assert_close(losses.binary_dice_loss(p32, BINARY_TARGETS, apply_sigmoid=False), expected, rtol=1e-5)


def _check_dtypes(part):
    calls = {
        "dice_loss": lambda m, x: m.dice_loss(x, TARGETS),
        "multiclass_generalized_dice_loss": lambda m, x: m.multiclass_generalized_dice_loss(x, TARGETS),
        "binary_dice_loss": lambda m, x: m.binary_dice_loss(x[..., 0], BINARY_TARGETS),
    }
    check_dtypes_against_optax(losses, optax.losses, calls, LOGITS, part)


def test_bfloat16():
    _check_dtypes("bfloat16")


@pytest.mark.slow
def test_float64():
    _check_dtypes("float64")
