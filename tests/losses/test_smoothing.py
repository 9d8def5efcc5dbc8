"""Label smoothing (``optcompose/losses/_smoothing.py``).

Compared with Optax 0.2.8 (value, shape, dtype, gradient; with and without ``jax.jit``) and with a
NumPy reference.

PyTorch mapping checked here (``F = torch.nn.functional``):

* ``softmax_cross_entropy(x, smooth_labels(one_hot(y), a))`` == ``F.cross_entropy(x, y, label_smoothing=a,
  reduction="none")``
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optcompose import losses

RNG = np.random.default_rng(9)
INT_LABELS = np.array([1, 0, 3], np.int32)
ONE_HOT = np.eye(4, dtype=np.float32)[INT_LABELS]
WHERE = RNG.random((3, 4)) > 0.3
WHERE[:, 0] = True
LOGITS = (2 * RNG.normal(size=(3, 4))).astype(np.float32)


def _np(x):
    return np.asarray(x, dtype=np.float64)


def assert_close(actual, expected, *, rtol=2e-5, atol=2e-6, err_msg=""):
    """Element-wise closeness of two arrays (or two pytrees of arrays); NaNs must match."""
    jax.tree.map(
        lambda a, e: np.testing.assert_allclose(_np(a), _np(e), rtol=rtol, atol=atol, equal_nan=True, err_msg=err_msg),
        actual,
        expected,
    )


def _assert_same_layout(actual, expected, name):
    assert jax.tree.structure(actual) == jax.tree.structure(expected), name
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert (a.shape, a.dtype) == (e.shape, e.dtype), f"{name}: {a.shape} {a.dtype} vs {e.shape} {e.dtype}"


def _weighted_sum(tree):
    """A scalar giving every output element its own weight, so the gradient sees all of them."""
    leaves = jax.tree.leaves(tree)
    return sum(jnp.sum(jnp.cos(jnp.arange(jnp.size(x)) + 1.0).reshape(jnp.shape(x)) * x) for x in leaves)


def compare_with_optax(ours, theirs, cases, *, grad=True, rtol=2e-5, atol=2e-6):
    """Checks ``ours`` against Optax's ``theirs`` on every case, under jit and (first case) without.

    ``cases`` maps a name to ``(args, kwargs)``. One jitted program computes, for every case, both
    values and both gradients in the first argument (array kwargs are traced like the arguments, so
    nothing is constant-folded); values must agree in structure, shape, dtype and number. Returns
    ``{name: (our value, our gradient or None)}``.
    """
    is_array = lambda v: isinstance(v, (np.ndarray, jax.Array))
    traced = {n: (args, {k: v for k, v in kw.items() if is_array(v)}) for n, (args, kw) in cases.items()}
    static = {n: {k: v for k, v in kw.items() if not is_array(v)} for n, (_, kw) in cases.items()}

    def program(traced):
        out = {}
        for name, (args, array_kwargs) in traced.items():
            fs = [functools.partial(f, **static[name], **array_kwargs) for f in (ours, theirs)]
            out[name] = [f(*args) for f in fs]
            if grad:
                out[name] += [jax.grad(lambda a0, f=f, a=args: _weighted_sum(f(a0, *a[1:])))(args[0]) for f in fs]
        return out

    results = jax.jit(program)(traced)
    for name, values in results.items():
        _assert_same_layout(values[0], values[1], name)
        assert_close(values[0], values[1], rtol=rtol, atol=atol, err_msg=name)
        if grad:
            assert_close(values[2], values[3], rtol=rtol, atol=atol, err_msg=f"{name} (gradient)")
    first = next(iter(cases))
    args, kwargs = cases[first]
    assert_close(ours(*args, **kwargs), results[first][1], rtol=rtol, atol=atol, err_msg=f"{first} (without jit)")
    return {name: (values[0], values[2] if grad else None) for name, values in results.items()}


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
