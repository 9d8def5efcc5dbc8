"""SAM (transparent and opaque) and ``normalize`` against Optax (float32, float64) and NumPy."""

from __future__ import annotations

import contrib_harness as h
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optcompose import contrib
from optcompose._base import chain
from optcompose.optimizers._classic import adam, sgd

ROWS = h.rows(["sam", "sam_adam_period_3", "normalize"])


def test_rows_match_numpy_and_optax():
    h.check_parity(ROWS)


@pytest.mark.slow
def test_rows_match_optax_in_float64():
    h.check_parity(ROWS, x64=True)


@pytest.mark.slow
def test_eager_equals_jit():
    h.eager_matches_jit(ROWS[0], steps=3)


def test_opaque_mode_matches_optax():
    params = {"w": jnp.asarray([1.0, -2.0, 0.5]), "b": jnp.asarray(0.3)}
    grad_fn = lambda p, i: jax.tree.map(lambda x: 2.0 * x + 0.1 * i, p)
    ours = contrib.sam(adam(0.05), chain(contrib.normalize(), sgd(0.1)), sync_period=3, opaque_mode=True)
    theirs = optax.contrib.sam(optax.adam(0.05), optax.chain(optax.contrib.normalize(), optax.sgd(0.1)),
                               sync_period=3, opaque_mode=True)  # fmt: skip

    def steps(tx):
        p, state, out = params, tx.init(params), []
        for _ in range(4):
            u, state = tx.update(grad_fn(p, 0), state, p, grad_fn=grad_fn)
            p = jax.tree.map(jnp.add, p, u)
            out.append(p)
        return out

    for a, b in zip(jax.tree.leaves(jax.jit(lambda: steps(ours))()), jax.tree.leaves(jax.jit(lambda: steps(theirs))()),
                    strict=True):  # fmt: skip
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)  # Adam's b2 rounding


def test_normalize_keeps_zero_updates_zero():
    u, _ = contrib.normalize().update({"w": jnp.zeros(2)}, ())
    assert np.all(np.asarray(u["w"]) == 0)  # Optax: 0 / 0 = NaN
    u, _ = contrib.normalize().update({"w": jnp.asarray([3e30, 4e30])}, ())
    np.testing.assert_allclose(np.asarray(u["w"]), [0.6, 0.8], rtol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="sync_period"):
        contrib.sam(sgd(0.1), sgd(0.1), sync_period=0)
    with pytest.raises(TypeError, match="adv_optimizer"):
        contrib.sam(sgd(0.1), "sgd")
    tx = contrib.sam(sgd(0.1), sgd(0.1), opaque_mode=True)
    w = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="grad_fn"):
        tx.update(w, tx.init(w), w)
