"""NT-Xent and triplet margin losses (``optcompose/losses/_self_supervised.py``).

Compared with Optax 0.2.8 (value, shape, dtype, gradient in the embeddings; with and without
``jax.jit``), and with a NumPy reference of NT-Xent.

PyTorch mapping checked here (``F = torch.nn.functional``):

* ``triplet_margin_loss(a, p, n, margin=m, norm_degree=q)`` ~ ``F.triplet_margin_loss(a, p, n, margin=m,
  p=q, reduction="none")``: torch adds its ``eps`` to the differences, Optax to the sum of powers, so
  they agree to about ``eps`` (checked to 1e-4).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from losses_helpers import _np, assert_close, compare_with_optax

from optcompose import losses

RNG = np.random.default_rng(8)
EMBEDDINGS = RNG.normal(size=(6, 3)).astype(np.float32)
EMBEDDINGS[5] = 1e3 * EMBEDDINGS[4]
GROUPS = np.array([0, 0, 1, 1, 2, 2], np.int32)
ANCHORS, POSITIVES, NEGATIVES = (RNG.normal(size=(3, 4, 3)) * [[[1.0]], [[0.3]], [[1.0]]]).astype(np.float32)
POSITIVES = ANCHORS + POSITIVES
POSITIVES[0] = ANCHORS[0]  # a zero distance: eps keeps the gradient finite




def np_ntxent(embeddings, labels, temperature):
    e = _np(embeddings)
    units = e / np.linalg.norm(e, axis=1, keepdims=True)
    sim = units @ units.T / temperature
    total, count = 0.0, 0
    for i in range(len(e)):
        negatives = [k for k in range(len(e)) if labels[k] != labels[i]]
        for j in range(len(e)):
            if j != i and labels[j] == labels[i]:
                denominator = np.exp(sim[i, j]) + sum(np.exp(sim[i, k]) for k in negatives)
                total += -(sim[i, j] - np.log(denominator))
                count += 1
    return total / count


def test_ntxent():
    cases = {"default": ((EMBEDDINGS, GROUPS), {})}
    results = compare_with_optax(losses.ntxent, optax.losses.ntxent, cases, rtol=1e-5, atol=1e-5)
    assert_close(results["default"][0], np_ntxent(EMBEDDINGS, GROUPS, 0.07), rtol=1e-5)


@pytest.mark.slow
def test_ntxent_more_cases():
    groups = np.array([0, 1, 0, 1, 0, 1])
    cases = {"warm": ((EMBEDDINGS, groups), {"temperature": 0.5})}
    results = compare_with_optax(losses.ntxent, optax.losses.ntxent, cases, rtol=1e-5, atol=1e-5)
    assert_close(results["warm"][0], np_ntxent(EMBEDDINGS, groups, 0.5), rtol=1e-5)
    # a tiny temperature does not overflow
    cold = jax.jit(jax.value_and_grad(lambda e: losses.ntxent(e, GROUPS, 1e-3)))(EMBEDDINGS)
    assert all(np.all(np.isfinite(x)) for x in cold)


def test_ntxent_bad_input():
    with pytest.raises(ValueError, match="leading dimension"):
        losses.ntxent(EMBEDDINGS, GROUPS[:4])
    with pytest.raises(TypeError, match="embeddings"):
        losses.ntxent(GROUPS[:, None], GROUPS)
    with pytest.raises(ValueError, match="labels"):
        losses.ntxent(EMBEDDINGS, GROUPS[:, None])


def test_triplet_margin_loss():
    cases = {
        "default": ((ANCHORS, POSITIVES, NEGATIVES), {}),
        "degree4": ((ANCHORS, POSITIVES, NEGATIVES), {"norm_degree": 4, "margin": 2.0, "eps": 1e-4}),
    }
    results = compare_with_optax(losses.triplet_margin_loss, optax.losses.triplet_margin_loss, cases)
    a, p, n = _np(ANCHORS), _np(POSITIVES), _np(NEGATIVES)
    distance = lambda x, y: np.sqrt(((x - y) ** 2).sum(-1) + 1e-6)
    assert_close(results["default"][0], np.maximum(distance(a, p) - distance(a, n) + 1.0, 0.0), rtol=1e-5)
    assert np.all(np.isfinite(results["default"][1]))
    # odd degrees use |x - y| (a true norm); Optax raises the signed difference to the power
    l1 = losses.triplet_margin_loss(ANCHORS, POSITIVES, NEGATIVES, norm_degree=1, eps=0.0)
    assert_close(l1, np.maximum(np.abs(a - p).sum(-1) - np.abs(a - n).sum(-1) + 1.0, 0.0), rtol=1e-5)


def test_triplet_margin_loss_torch():
    torch = pytest.importorskip("torch")
    a, p, n = (torch.tensor(x) for x in (ANCHORS, POSITIVES, NEGATIVES))
    expected = torch.nn.functional.triplet_margin_loss(a, p, n, margin=1.0, p=2, reduction="none")
    assert_close(losses.triplet_margin_loss(ANCHORS, POSITIVES, NEGATIVES), expected.numpy(), atol=1e-4)


def _check_dtypes(part):
    calls = {
        "ntxent": lambda m, x: m.ntxent(x, GROUPS, 0.5),
        "triplet_margin_loss": lambda m, x: m.triplet_margin_loss(x[:4], x[1:5], x[2:]),
    }
    if part == "bfloat16":
        x16 = jnp.asarray(EMBEDDINGS[:, :3] / 1e3, jnp.bfloat16)
        ours = jax.jit(lambda z: {n: c(losses, z) for n, c in calls.items()})(x16)
        theirs = jax.eval_shape(lambda z: {n: c(optax.losses, z) for n, c in calls.items()}, x16)
        for name in calls:
            assert ours[name].dtype == theirs[name].dtype and np.all(np.isfinite(_np(ours[name]))), name
        return
    with jax.enable_x64(True):
        x64 = jnp.asarray(EMBEDDINGS, jnp.float64)
        ours, theirs = jax.jit(lambda z: [{n: c(m, z) for n, c in calls.items()} for m in (losses, optax.losses)])(x64)
        for name in calls:
            assert ours[name].dtype == theirs[name].dtype == jnp.float64, name
            assert_close(ours[name], theirs[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_bfloat16():
    _check_dtypes("bfloat16")


@pytest.mark.slow
def test_float64():
    _check_dtypes("float64")
