"""selective_transform against Optax and NumPy (row ``selective_transform_adam``), masks and state.

No torch counterpart (in torch one passes only the trainable tensors to the optimizer, which is
what selective_transform amounts to: ``test_only_trainable_leaves_hold_state``).
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from optcompose.optimizers._classic import adam, sgd
from optcompose.transforms._freezing import selective_transform
from optcompose.transforms._partition import MaskedNode


def test_signature_matches_optax():
    a = inspect.signature(selective_transform).parameters
    b = inspect.signature(optax.selective_transform).parameters
    assert [(n, p.kind, p.default) for n, p in a.items()] == [(n, p.kind, p.default) for n, p in b.items()]


PARAMS = {"a": jnp.ones(2), "b": {"c": jnp.full(3, 2.0), "d": jnp.zeros(1)}}
GRADS = {"a": jnp.full(2, 0.5), "b": {"c": jnp.full(3, -1.0), "d": jnp.ones(1)}}


@pytest.mark.parametrize("mask", [True, False, {"a": True, "b": False}, {"a": False, "b": {"c": True, "d": False}}],
                         ids=["all", "none", "prefix", "full"])  # fmt: skip
def test_matches_optax(mask):
    ours, theirs = selective_transform(sgd(0.1), freeze_mask=mask), optax.selective_transform(
        optax.sgd(0.1), freeze_mask=mask)  # fmt: skip
    u, _ = jax.jit(ours.update)(GRADS, ours.init(PARAMS), PARAMS)
    v, _ = theirs.update(GRADS, theirs.init(PARAMS), PARAMS)
    for x, y in zip(jax.tree.leaves(u), jax.tree.leaves(v), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-7)


def test_only_trainable_leaves_hold_state():
    """torch.optim.Adam over the trainable tensors only: the same numbers for the trained leaves."""
    tx = selective_transform(adam(0.1), freeze_mask={"a": True, "b": False})
    state = tx.init(PARAMS)
    train_state = state.inner_states["train"].inner_state
    assert isinstance(train_state[0].mu["a"], MaskedNode)
    u, _ = tx.update(GRADS, state, PARAMS)
    np.testing.assert_array_equal(u["a"], 0.0)
    c = torch.tensor(np.asarray(PARAMS["b"]["c"]), requires_grad=True)
    opt = torch.optim.Adam([c], lr=0.1)
    c.grad = torch.tensor(np.asarray(GRADS["b"]["c"]))
    opt.step()
    np.testing.assert_allclose(np.asarray(PARAMS["b"]["c"] + u["b"]["c"]), c.detach().numpy(), rtol=1e-6)
    h = {"a": jnp.ones(2, jnp.bfloat16)}
    assert selective_transform(adam(0.1), freeze_mask=False).update(h, selective_transform(
        adam(0.1), freeze_mask=False).init(h), h)[0]["a"].dtype == jnp.bfloat16  # fmt: skip


def test_bad_masks():
    with pytest.raises(TypeError, match="freeze_mask"):
        selective_transform(sgd(0.1), freeze_mask={"a": 1.0, "b": True})
    with pytest.raises(ValueError):
        selective_transform(sgd(0.1), freeze_mask={"x": True}).init(PARAMS)
    with pytest.raises(TypeError, match="optimizer"):
        selective_transform("adam", freeze_mask=True)
    with pytest.raises(TypeError):
        selective_transform(sgd(0.1), True)  # freeze_mask is keyword-only
