"""CTC loss (``optcompose/losses/_ctc.py``).

Compared with Optax 0.2.8 (the loss and both forward-variable arrays: value, shape, dtype; the
gradient of the loss in the logits; with and without ``jax.jit``), with an independent float64 NumPy
implementation of Graves et al.'s alpha recursion over the blank-extended label sequence, and with
PyTorch.

PyTorch mapping checked here (``F = torch.nn.functional``)::

    ctc_loss(logits, logit_paddings, labels, label_paddings, blank_id=b)
    == F.ctc_loss(F.log_softmax(logits, -1).transpose(0, 1), labels,
                  input_lengths=T - logit_paddings.sum(1), target_lengths=N - label_paddings.sum(1),
                  blank=b, reduction="none")
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from losses_helpers import _np, assert_close, compare_with_optax

from optcompose import losses

RNG = np.random.default_rng(3)
LOGITS = (2 * RNG.normal(size=(3, 6, 4))).astype(np.float32)
LOGITS[2, 0] = [1e4, -1e4, 0.0, 0.0]
LOGIT_PADDINGS = np.zeros((3, 6), np.float32)
LOGIT_PADDINGS[1, 4:] = 1.0
LABELS = np.array([[1, 2, 2], [3, 1, 0], [2, 2, 2]], np.int32)  # repeats need a blank in between
LABEL_PADDINGS = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0]], np.float32)




def np_ctc(logits, labels, blank):
    """-log p(labels | logits) by the textbook alpha recursion (float64)."""
    logits = _np(logits)
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    extended = [blank]
    for label in labels:
        extended += [int(label), blank]
    alpha = np.full(len(extended), -np.inf)
    alpha[0] = log_probs[0, blank]
    if len(labels):
        alpha[1] = log_probs[0, extended[1]]
    for t in range(1, len(logits)):
        previous = alpha.copy()
        for s, symbol in enumerate(extended):
            total = previous[s]
            if s > 0:
                total = np.logaddexp(total, previous[s - 1])
            if s > 1 and symbol != blank and symbol != extended[s - 2]:
                total = np.logaddexp(total, previous[s - 2])
            alpha[s] = total + log_probs[t, symbol]
    return -np.logaddexp(alpha[-1], alpha[-2]) if len(labels) else -alpha[-1]


def _lengths():
    frames = (6 - LOGIT_PADDINGS.sum(1)).astype(int)
    label_lengths = (3 - LABEL_PADDINGS.sum(1)).astype(int)
    return frames, label_lengths


def test_ctc_loss_with_forward_probs_matches_optax_and_numpy():
    cases = {"padded": ((LOGITS, LOGIT_PADDINGS, LABELS, LABEL_PADDINGS), {})}
    (loss, log_alpha_blank, log_alpha_label), _ = compare_with_optax(
        losses.ctc_loss_with_forward_probs, optax.losses.ctc_loss_with_forward_probs, cases, grad=False, rtol=1e-5
    )["padded"]
    assert log_alpha_blank.shape == (6, 3, 4) and log_alpha_label.shape == (6, 3, 3)
    frames, label_lengths = _lengths()
    expected = [np_ctc(LOGITS[b, : frames[b]], LABELS[b, : label_lengths[b]], 0) for b in range(3)]
    assert_close(loss, expected, rtol=1e-5)


def test_ctc_loss_matches_optax_and_torch():
    cases = {"padded": ((LOGITS, LOGIT_PADDINGS, LABELS, LABEL_PADDINGS), {})}
    loss, grad = compare_with_optax(losses.ctc_loss, optax.losses.ctc_loss, cases, rtol=1e-5, atol=1e-5)["padded"]
    assert np.all(np.isfinite(grad))
    torch = pytest.importorskip("torch")
    frames, label_lengths = _lengths()
    log_probs = torch.nn.functional.log_softmax(torch.tensor(LOGITS), dim=-1).transpose(0, 1)
    expected = torch.nn.functional.ctc_loss(
        log_probs,
        torch.tensor(LABELS).long(),
        input_lengths=torch.tensor(frames),
        target_lengths=torch.tensor(label_lengths),
        blank=0,
        reduction="none",
    )
    assert_close(loss, expected.numpy(), rtol=1e-5)


@pytest.mark.slow
def test_ctc_loss_other_blank_and_log_epsilon():
    labels = np.array([[1, 2, 0], [0, 1, 1], [2, 0, 2]], np.int32)
    cases = {"blank3": ((LOGITS, LOGIT_PADDINGS, labels, LABEL_PADDINGS), {"blank_id": 3, "log_epsilon": -3e5})}
    loss, _ = compare_with_optax(losses.ctc_loss, optax.losses.ctc_loss, cases, rtol=1e-5, atol=1e-5)["blank3"]
    frames, label_lengths = _lengths()
    expected = [np_ctc(LOGITS[b, : frames[b]], labels[b, : label_lengths[b]], 3) for b in range(3)]
    assert_close(loss, expected, rtol=1e-5)
    # a label sequence that cannot fit its frames (3 repeats need 5 frames) costs about -log_epsilon
    short = jax.jit(losses.ctc_loss)(LOGITS[2:, :4], np.zeros((1, 4)), LABELS[2:], LABEL_PADDINGS[2:])
    assert float(short[0]) > 1e4


def test_ctc_loss_bad_input():
    with pytest.raises(ValueError, match="logits"):
        losses.ctc_loss(LOGITS[0], LOGIT_PADDINGS, LABELS, LABEL_PADDINGS)
    with pytest.raises(ValueError, match="labels and label_paddings"):
        losses.ctc_loss(LOGITS, LOGIT_PADDINGS, LABELS, LABEL_PADDINGS[:, :2])
    with pytest.raises(ValueError, match="logit_paddings"):
        losses.ctc_loss(LOGITS, LOGIT_PADDINGS[:, :3], LABELS, LABEL_PADDINGS)
    with pytest.raises(ValueError, match="batch size"):
        losses.ctc_loss(LOGITS, LOGIT_PADDINGS, LABELS[:2], LABEL_PADDINGS[:2])
    with pytest.raises(ValueError, match="blank_id"):
        losses.ctc_loss(LOGITS, LOGIT_PADDINGS, LABELS, LABEL_PADDINGS, blank_id=4)
    with pytest.raises(TypeError, match="blank_id"):
        losses.ctc_loss(LOGITS, LOGIT_PADDINGS, LABELS, LABEL_PADDINGS, blank_id=0.0)


def _call(module, logits):
    return module.ctc_loss(logits, LOGIT_PADDINGS, LABELS, LABEL_PADDINGS)


def test_bfloat16():
    x16 = jnp.asarray(LOGITS, jnp.bfloat16)
    ours = jax.jit(lambda z: _call(losses, z))(x16)
    assert ours.dtype == jax.eval_shape(lambda z: _call(optax.losses, z), x16).dtype
    assert np.all(np.isfinite(_np(ours)))


@pytest.mark.slow
def test_float64():
    call = _call
    with jax.enable_x64(True):
        x64 = jnp.asarray(LOGITS, jnp.float64)
        ours, theirs = jax.jit(lambda z: (call(losses, z), call(optax.losses, z)))(x64)
        assert ours.dtype == theirs.dtype == jnp.float64
        assert_close(ours, theirs, rtol=1e-12, atol=1e-9)
