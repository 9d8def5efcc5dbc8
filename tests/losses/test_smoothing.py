"""Label smoothing (``optcompose/losses/_smoothing.py``).

Compared with Optax 0.2.8 (value, shape, dtype, gradient; with and without ``jax.jit``) and with a
NumPy reference.

PyTorch mapping checked here (``F = torch.nn.functional``):

* ``softmax_cross_entropy(x, smooth_labels(one_hot(y), a))`` == ``F.cross_entropy(x, y, label_smoothing=a,
  reduction="none")``
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from losses_helpers import _np, assert_close, compare_with_optax

from optcompose import losses

RNG = np.random.default_rng(9)
INT_LABELS = np.array([1, 0, 3], np.int32)
ONE_HOT = np.eye(4, dtype=np.float32)[INT_LABELS]
WHERE = RNG.random((3, 4)) > 0.3
WHERE[:, 0] = True
LOGITS = (2 * RNG.normal(size=(3, 4))).astype(np.float32)




def test_smooth_labels():
    cases = {
        "where": ((ONE_HOT, 0.1), {"where": WHERE}),
        "axis_none": ((ONE_HOT, 0.2), {"axis": None}),
        "axes": ((ONE_HOT.reshape(3, 2, 2), 0.3), {"axis": (1, 2)}),
    }
    results = compare_with_optax(losses.smooth_labels, optax.losses.smooth_labels, cases)
    assert_close(results["where"][0], 0.9 * ONE_HOT + 0.1 / WHERE.sum(-1, keepdims=True), rtol=1e-6)
    assert_close(results["axis_none"][0], 0.8 * ONE_HOT + 0.2 / 12, rtol=1e-6)
    assert_close(results["axes"][0].reshape(3, 4), 0.7 * ONE_HOT + 0.3 / 4, rtol=1e-6)
    assert_close(losses.smooth_labels(ONE_HOT, 0.1), 0.9 * ONE_HOT + 0.025, rtol=1e-6)
    with pytest.raises(TypeError, match="labels"):
        losses.smooth_labels(INT_LABELS, 0.1)


def test_smooth_labels_torch():
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.cross_entropy(
        torch.tensor(LOGITS), torch.tensor(INT_LABELS).long(), label_smoothing=0.1, reduction="none"
    )
    ours = losses.softmax_cross_entropy(LOGITS, losses.smooth_labels(ONE_HOT, 0.1))
    assert_close(ours, expected.numpy())


def _check_dtypes(part):
    call = lambda m, x: m.smooth_labels(x, 0.1, where=WHERE)
    if part == "bfloat16":
        x16 = jnp.asarray(ONE_HOT, jnp.bfloat16)
        ours = jax.jit(lambda z: call(losses, z))(x16)
        assert ours.dtype == jax.eval_shape(lambda z: call(optax.losses, z), x16).dtype
        assert np.all(np.isfinite(_np(ours)))
        return
    with jax.enable_x64(True):
        x64 = jnp.asarray(ONE_HOT, jnp.float64)
        ours, theirs = jax.jit(lambda z: (call(losses, z), call(optax.losses, z)))(x64)
        assert ours.dtype == theirs.dtype == jnp.float64
        assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_bfloat16():
    _check_dtypes("bfloat16")


@pytest.mark.slow
def test_float64():
    _check_dtypes("float64")
