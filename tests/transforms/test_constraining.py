"""zero_nans, keep_params_nonnegative and centralize against Optax, NumPy and torch.

torch mapping (``test_zero_nans_matches_torch_nan_to_num``): ``zero_nans()`` is
``torch.nan_to_num(g, nan=0.0, posinf=inf, neginf=-inf)`` per leaf. keep_params_nonnegative and
centralize have no torch.optim counterpart.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from optcompose._base import EmptyState, chain
from optcompose.optimizers._classic import sgd
from optcompose.transforms._constraining import (
    NonNegativeParamsState,
    ZeroNansState,
    centralize,
    keep_params_nonnegative,
    zero_nans,
)


def test_signatures_and_states_match_optax():
    for ours, theirs in ((centralize, optax.centralize), (zero_nans, optax.zero_nans),
                         (keep_params_nonnegative, optax.keep_params_nonnegative)):  # fmt: skip
        assert inspect.signature(ours).parameters.keys() == inspect.signature(theirs).parameters.keys()
    assert ZeroNansState._fields == optax.ZeroNansState._fields
    assert NonNegativeParamsState is EmptyState


def test_zero_nans_matches_optax_and_torch_nan_to_num():
    g = {"a": jnp.array([1.0, jnp.nan, -jnp.inf, 2.0]), "b": jnp.array([[0.5, 1.0]]), "c": None}
    tx, ref = zero_nans(), optax.zero_nans()
    ours, state = jax.jit(tx.update)(g, tx.init(g))
    theirs, their_state = ref.update(g, ref.init(g))
    assert jax.tree.structure(ours) == jax.tree.structure(g)
    for x, y in zip(jax.tree.leaves((ours, state)), jax.tree.leaves((theirs, their_state)), strict=True):
        np.testing.assert_array_equal(x, y)
    assert bool(state.found_nan["a"]) and not bool(state.found_nan["b"])
    torch_a = torch.nan_to_num(torch.tensor(np.asarray(g["a"])), nan=0.0, posinf=float("inf"), neginf=float("-inf"))
    np.testing.assert_array_equal(ours["a"], torch_a.numpy())
    # Complex, bfloat16 and integer leaves.
    z = jnp.array([1 + 1j, complex(np.nan, 1.0)], jnp.complex64)
    np.testing.assert_array_equal(tx.update(z, tx.init(z))[0], [1 + 1j, 0])
    h = jnp.array([jnp.nan, 1.0], jnp.bfloat16)
    assert tx.update(h, tx.init(h))[0].dtype == jnp.bfloat16
    k = jnp.array([1, 2], jnp.int32)
    np.testing.assert_array_equal(tx.update(k, tx.init(k))[0], k)


def test_keep_params_nonnegative_matches_optax_for_20_steps_and_in_float64():
    rng = np.random.default_rng(0)
    for dtype, rtol in ((jnp.float32, 1e-6), (jnp.float64, 1e-12)):
        with jax.enable_x64(dtype == jnp.float64):
            w0 = jnp.asarray(rng.uniform(0, 1, (3, 4)), dtype)
            grads = jnp.asarray(rng.normal(size=(20, 3, 4)), dtype)
            runs = []
            for lib_chain, lib_sgd, lib_keep in ((chain, sgd, keep_params_nonnegative),
                                                 (optax.chain, optax.sgd, optax.keep_params_nonnegative)):
                tx = lib_chain(lib_sgd(0.3), lib_keep())

                def step(carry, g, tx=tx):
                    w, s = carry
                    u, s = tx.update(g, s, w)
                    return (w + u, s), w + u

                runs.append(jax.jit(lambda w0, grads, tx=tx, step=step: jax.lax.scan(step, (w0, tx.init(w0)),
                                                                                      grads)[1])(w0, grads))
            np.testing.assert_allclose(runs[0], runs[1], rtol=rtol, atol=0)
            assert runs[0].dtype == dtype and float(runs[0].min()) == 0.0  # some land exactly on 0


def test_keep_params_nonnegative_edges():
    tx = keep_params_nonnegative()
    w = {"a": jnp.array([1.0, 0.0, -2.0]), "n": None}
    u = {"a": jnp.array([-3.0, 0.0, 0.5]), "n": None}
    got, _ = tx.update(u, tx.init(w), w)
    np.testing.assert_array_equal(got["a"], [-1.0, 0.0, 2.0])  # a negative param is moved to 0
    assert got["n"] is None
    bf = jnp.array([0.5, 1.0], jnp.bfloat16)
    assert tx.update(jnp.array([-1.0, -0.5], jnp.bfloat16), tx.init(bf), bf)[0].dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="params"):
        tx.update(u, tx.init(w))
    with pytest.raises(TypeError, match="complex"):
        z = jnp.ones(2, jnp.complex64)
        tx.update(z, tx.init(z), z)


def test_centralize_matches_optax_numpy_and_edges():
    rng = np.random.default_rng(1)
    g = {"m": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "k": jnp.asarray(rng.normal(size=(2, 3, 2)),
         jnp.float32), "v": jnp.ones(3), "s": jnp.asarray(2.0)}  # fmt: skip
    tx, ref = centralize(), optax.centralize()
    ours, state = jax.jit(tx.update)(g, tx.init(g))
    theirs, _ = ref.update(g, ref.init(g))
    for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours["m"], g["m"] - np.mean(np.asarray(g["m"]), axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ours["k"]).reshape(2, -1).mean(axis=1), 0.0, atol=1e-7)
    np.testing.assert_array_equal(ours["v"], g["v"])  # vectors and scalars pass
    assert state == EmptyState()
    z = jnp.asarray(rng.normal(size=(2, 3)) + 1j * rng.normal(size=(2, 3)), jnp.complex64)
    np.testing.assert_allclose(tx.update(z, EmptyState())[0], ref.update(z, ())[0], rtol=1e-6)
    h = jnp.asarray(rng.normal(size=(2, 3)), jnp.bfloat16)
    assert tx.update(h, EmptyState())[0].dtype == jnp.bfloat16
    big = jnp.full((2, 2), 1e30)
    np.testing.assert_array_equal(tx.update(big, EmptyState())[0], 0.0)
