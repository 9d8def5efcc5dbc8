"""flatten against Optax and NumPy (row ``flatten_adam``), plus dtypes, None leaves, empty trees.

No torch counterpart (torch's optimizers already work on flat parameter lists).
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optcompose._base import GradientTransformationExtraArgs, chain
from optcompose._tree import NotFloatingError
from optcompose.optimizers._classic import adam, sgd
from optcompose.transforms._layouts import flatten


def test_signature_matches_optax():
    assert inspect.signature(flatten).parameters.keys() == inspect.signature(optax.flatten).parameters.keys()


def test_flatten_matches_optax_and_the_unflattened_optimizer():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), "b": jnp.zeros(2), "s": jnp.asarray(1.0)}
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=(20, *p.shape)), jnp.float32), params)

    def run(tx):
        def step(carry, g):
            p, s = carry
            u, s = tx.update(g, s, p)
            p = jax.tree.map(jnp.add, p, u)
            return (p, s), p

        return jax.jit(lambda: jax.lax.scan(step, (params, tx.init(params)), grads)[1])()

    # Heavy-ball SGD for the comparison with Optax (Optax's own Adam rounds 1 - b2**t in float32).
    ours, theirs = run(flatten(sgd(0.1, momentum=0.9))), run(optax.flatten(optax.sgd(0.1, momentum=0.9)))
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # A per-element optimizer gives the same numbers flattened or not (to XLA's vectorised rounding).
    for a, c in zip(jax.tree.leaves(run(flatten(adam(0.1)))), jax.tree.leaves(run(adam(0.1))), strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-6)
    state = flatten(adam(0.1)).init(params)
    assert state[0].mu.shape == (9,)


def test_dtypes_none_leaves_empty_trees_and_extra_args():
    tx = flatten(sgd(0.5))
    p = {"a": jnp.ones(2, jnp.bfloat16), "b": jnp.ones(3, jnp.float16), "c": None, "d": jnp.ones(1, jnp.float32)}
    u, _ = tx.update(p, tx.init(p), p)
    assert {k: None if v is None else v.dtype for k, v in u.items()} == {
        "a": jnp.bfloat16, "b": jnp.float16, "c": None, "d": jnp.float32}  # fmt: skip
    np.testing.assert_allclose(np.asarray(u["a"], np.float32), -0.5)
    assert tx.update({}, tx.init({}), {})[0] == {}
    with pytest.raises(NotFloatingError, match=r"updates\['i'\] has dtype int32"):
        q = {"i": jnp.ones(2, jnp.int32)}
        tx.update(q, flatten(sgd(0.5)).init({"i": jnp.ones(2)}))
    seen = {}

    def update(updates, state, params=None, **extra):
        seen.update(extra)
        return updates, state

    inner = GradientTransformationExtraArgs(lambda params: (), update)
    chain(flatten(inner)).update({"a": jnp.ones(2)}, ((),), None, value=1.0)
    assert seen == {"value": 1.0}
    z = {"a": jnp.ones(2, jnp.complex64)}
    assert flatten(adam(0.1)).update(z, flatten(adam(0.1)).init(z), z)[0]["a"].dtype == jnp.complex64
