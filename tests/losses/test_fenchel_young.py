"""Fenchel-Young losses (``optcompose/losses/_fenchel_young.py``).

Compared with Optax 0.2.8 for two max functions (log-sum-exp, whose loss is the softmax cross
entropy, and the hard max, whose loss is the perceptron loss), with and without ``jax.jit``, and
with the gradient in the scores. No direct PyTorch counterpart.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.special import logsumexp
from losses_helpers import _np, assert_close, compare_with_optax

from optcompose import losses

RNG = np.random.default_rng(4)
SCORES = (2 * RNG.normal(size=(2, 3, 5))).astype(np.float32)
SCORES[0, 0] = [1e4, -1e4, 0.0, 0.0, 0.0]
_raw = np.exp(RNG.normal(size=(2, 3, 5)))
TARGETS = (_raw / _raw.sum(-1, keepdims=True)).astype(np.float32)




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
