"""Comparison helpers shared by the loss and projection tests (values and gradients against Optax)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


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


def check_dtypes_against_optax(ours, theirs, calls, inputs, part):
    """``calls`` (name -> ``f(module, x)``) on ``inputs``: in bfloat16, each result has Optax's dtype
    and is finite; in float64 (x64), each equals Optax's to 1e-12."""
    if part == "bfloat16":
        x16 = jnp.asarray(inputs, jnp.bfloat16)
        got = jax.jit(lambda z: {n: c(ours, z) for n, c in calls.items()})(x16)
        want = jax.eval_shape(lambda z: {n: c(theirs, z) for n, c in calls.items()}, x16)
        for name in calls:
            assert got[name].dtype == want[name].dtype and np.all(np.isfinite(_np(got[name]))), name
        return
    with jax.enable_x64(True):
        x64 = jnp.asarray(inputs, jnp.float64)
        got, want = jax.jit(lambda z: [{n: c(m, z) for n, c in calls.items()} for m in (ours, theirs)])(x64)
        for name in calls:
            assert got[name].dtype == want[name].dtype == jnp.float64, name
            assert_close(got[name], want[name], rtol=1e-12, atol=1e-12, err_msg=name)
