"""Ranking softmax loss (``optcompose/losses/_ranking.py``).

Compared with Optax 0.2.8 (value, shape, dtype, gradient in the scores; with and without
``jax.jit``) with masks (including a list with no valid item), weights and each reduction, and with
a NumPy reference. No direct PyTorch counterpart.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from losses_helpers import _np, assert_close, compare_with_optax

from optcompose import losses

RNG = np.random.default_rng(5)
SCORES = (2 * RNG.normal(size=(3, 4))).astype(np.float32)
SCORES[1, :2] = [1e4, -1e4]
LABELS = RNG.integers(0, 3, size=(3, 4)).astype(np.float32)
WHERE = RNG.random((3, 4)) > 0.3
WHERE[0] = True
WHERE[2] = False  # a list with no valid item
WEIGHTS = RNG.random((3, 4)).astype(np.float32)




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
