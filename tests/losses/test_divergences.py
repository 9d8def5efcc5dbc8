"""Kullback-Leibler divergences (``optcompose/losses/_divergences.py``).

Compared with Optax 0.2.8 (value, shape, dtype, gradient in the log-predictions; with and without
``jax.jit``), with a float64 NumPy reference, on targets holding exact zeros and masked entries.

PyTorch mapping checked here (``F = torch.nn.functional``):

* ``kl_divergence(log_p, t)`` == ``F.kl_div(log_p, t, reduction="none").sum(-1)``
* ``kl_divergence_with_log_targets(log_p, log_t)`` ==
  ``F.kl_div(log_p, log_t, reduction="none", log_target=True).sum(-1)``
"""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from losses_helpers import _np, assert_close, check_dtypes_against_optax, compare_with_optax

from optcompose import losses

RNG = np.random.default_rng(2)
_raw = 3 * RNG.normal(size=(4, 5))
LOG_PREDICTIONS = (_raw - np.log(np.exp(_raw).sum(-1, keepdims=True))).astype(np.float32)
TARGETS = RNG.random((4, 5)) + 0.05
TARGETS[0, :2] = 0.0  # 0 log 0 = 0
TARGETS = (TARGETS / TARGETS.sum(-1, keepdims=True)).astype(np.float32)
MASK = RNG.random((4, 5)) > 0.25




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
    check_dtypes_against_optax(losses, optax.losses, calls, LOG_PREDICTIONS, part)


def test_bfloat16():
    _check_dtypes("bfloat16")


@pytest.mark.slow
def test_float64():
    _check_dtypes("float64")
