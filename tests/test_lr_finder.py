"""The learning-rate range test on a quadratic, against a NumPy replay of the sweep."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from optcompose.lr_finder import LRFinderResult, lr_find, lr_suggestions, plot_lr_find
from optcompose.optimizers._classic import adam, sgd

CURVATURE = np.array([1.0, 0.25], np.float64)
TARGET = np.array([1.0, -2.0], np.float64)


def _quadratic(params, batch):
    """0.5 * sum(a * (w - c)^2) scaled by the batch (a scalar), so batches matter."""
    diff = params["w"] - jnp.asarray(TARGET, jnp.float32)
    return batch * 0.5 * jnp.sum(jnp.asarray(CURVATURE, jnp.float32) * diff**2)


def _numpy_sweep(lr_start, lr_end, num_steps, batches, smoothing=0.98, threshold=4.0):
    """Plain SGD with the sweep's rates, the seed's loop with a smoothed stop rule."""
    w = np.zeros(2)
    rates = [lr_start * (lr_end / lr_start) ** (i / (num_steps - 1)) for i in range(num_steps)]
    losses, smoothed, average, best = [], [], 0.0, math.inf
    for i, lr in enumerate(rates):
        scale = batches[i % len(batches)]
        loss = scale * 0.5 * np.sum(CURVATURE * (w - TARGET) ** 2)
        w = w - lr * scale * CURVATURE * (w - TARGET)
        average = smoothing * average + (1 - smoothing) * loss
        value = average / (1 - smoothing ** (i + 1))
        losses.append(loss)
        smoothed.append(value)
        best = min(best, value)
        if not math.isfinite(loss) or (i > 0 and value > threshold * best):
            break
    return np.array(rates[: len(losses)]), np.array(losses), np.array(smoothed)


PARAMS = {"w": jnp.zeros(2, jnp.float32)}


def test_sweep_is_exponential_and_each_step_uses_its_rate():
    batches = [1.0, 0.5, 2.0]
    result = lr_find(_quadratic, PARAMS, sgd(0.1), batches, lr_start=1e-3, lr_end=0.5, num_steps=30)
    assert isinstance(result, LRFinderResult)
    assert not result.diverged
    np.testing.assert_allclose(result.learning_rates, np.geomspace(1e-3, 0.5, 30), rtol=1e-12)
    ratios = result.learning_rates[1:] / result.learning_rates[:-1]
    np.testing.assert_allclose(ratios, (0.5 / 1e-3) ** (1 / 29), rtol=1e-12)
    rates, losses, smoothed = _numpy_sweep(1e-3, 0.5, 30, batches)
    np.testing.assert_allclose(result.losses, losses, rtol=2e-5)
    np.testing.assert_allclose(result.smoothed_losses, smoothed, rtol=2e-5)
    np.testing.assert_array_equal(PARAMS["w"], np.zeros(2))  # the caller's params are untouched


def test_stop_rule_triggers_when_the_smoothed_loss_exceeds_four_times_the_best():
    # SGD on curvature 1 diverges once lr > 2; the sweep to 100 must stop, exactly where NumPy does
    # (the loss stays far above float32 round-off, so both runs blow up alike).
    result = lr_find(_quadratic, PARAMS, sgd(0.1), [1.0], lr_start=1e-3, lr_end=100.0, num_steps=25)
    rates, losses, smoothed = _numpy_sweep(1e-3, 100.0, 25, [1.0])
    assert result.diverged
    assert len(result.losses) == len(losses) == 22
    assert smoothed[-1] > 4 * smoothed.min() and smoothed[-2] <= 4 * smoothed[:-1].min()
    np.testing.assert_allclose(result.smoothed_losses, smoothed, rtol=1e-4)
    # Suggestions read the curve without the point that triggered the stop.
    expected = lr_suggestions(rates[:-1], smoothed[:-1])
    for name, value in expected.items():
        assert result.suggestions[name] == pytest.approx(value, rel=1e-6)


def test_the_sweep_compiles_once():
    traces = []

    def loss_fn(params, batch):
        traces.append(1)  # runs only while tracing
        return _quadratic(params, batch)

    result = lr_find(loss_fn, PARAMS, adam(1e-3), lambda step: 1.0, lr_start=1e-4, lr_end=1e-1, num_steps=25)
    assert len(result.losses) == 25
    assert len(traces) == 1


def test_suggestions_as_documented():
    rates = 10.0 ** np.arange(-7, 1)  # evenly spaced in log(lr), spacing h = ln 10
    #          0    1    2    3    4    5    6    7
    losses = [5.0, 4.9, 4.8, 4.7, 6.0, 1.0, 0.9, 1.5]
    got = lr_suggestions(rates, losses)
    # np.gradient: (l[i+1] - l[i-1]) / 2h inside, one-sided at the ends; most negative at index 5.
    slopes = np.array([-0.1, -0.1, -0.1, 0.6, -1.85, -2.55, 0.25, 0.6]) / np.log(10)
    np.testing.assert_allclose(np.gradient(losses, np.log(rates)), slopes, rtol=1e-12)
    assert got["steepest"] == pytest.approx(rates[5])
    # The longest decreasing subsequence 5, 4.9, 4.8, 4.7, 1, 0.9 has L = 6 points and ends at
    # e = 6; the window of 6 points ending there is 1..6, its middle (2e - L + 1) // 2 = 3.
    assert got["valley"] == pytest.approx(rates[3])
    assert got["min_over_10"] == pytest.approx(rates[6] / 10)
    # Non-finite losses are ignored.
    with_nan = lr_suggestions(np.append(rates, 10.0), [*losses, math.nan])
    assert with_nan == got


def test_argument_errors():
    with pytest.raises(ValueError, match="lr_end"):
        lr_find(_quadratic, PARAMS, sgd(0.1), [1.0], lr_start=1.0, lr_end=0.1)
    with pytest.raises(ValueError, match="num_steps"):
        lr_find(_quadratic, PARAMS, sgd(0.1), [1.0], num_steps=1)
    with pytest.raises(ValueError, match="schedule"):
        lr_find(_quadratic, PARAMS, sgd(lambda count: 0.1), [1.0], num_steps=3)
    with pytest.raises(ValueError, match="momentum"):
        lr_find(_quadratic, PARAMS, sgd(0.1), [1.0], num_steps=3, hyperparam="momentum")
    with pytest.raises(ValueError, match="empty"):
        lr_find(_quadratic, PARAMS, sgd(0.1), [], num_steps=3)


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    result = lr_find(_quadratic, PARAMS, sgd(0.1), [1.0], lr_start=1e-3, lr_end=100.0, num_steps=25)
    path = tmp_path / "lr_find.png"
    plot_lr_find(result, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
