"""``step`` is differentiable, builds its kernel only when it will run, and keeps sharded state sharded."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optcompose as oc
from optcompose.speed import kernels
from optcompose.speed.kernels import _build as build

PARAMS = {"w": jnp.linspace(-1.0, 1.0, 16, dtype=jnp.float32), "b": jnp.full((8,), 0.5)}
GRADS = jax.tree.map(lambda p: jnp.sin(2.0 * p) + 0.1, PARAMS)


def _loss_after_step(lr, use_kernel, tx):
    state = oc.set_hyperparams(tx.init(PARAMS), learning_rate=lr)
    new_params, _ = oc.step(tx, GRADS, state, PARAMS, use_kernel=use_kernel)
    return sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(new_params))


@pytest.mark.skipif(not kernels.available(), reason="kernels unavailable")
@pytest.mark.parametrize("tx", [oc.adamw(0.1, weight_decay=0.1), oc.sgd(0.1, 0.9), oc.lamb(0.1)], ids=["adamw", "sgd", "lamb"])  # noqa: E501
def test_grad_through_step_equals_grad_through_update(tx):
    # Meta-learning the learning rate through the optimizer step: the kernel's derivative rule is
    # the general road's, so the derivatives agree and the forward pass still runs the kernel.
    kernel = jax.jit(jax.grad(lambda lr: _loss_after_step(lr, True, tx)))
    general = jax.jit(jax.grad(lambda lr: _loss_after_step(lr, False, tx)))
    np.testing.assert_allclose(float(kernel(0.1)), float(general(0.1)), rtol=1e-5)
    assert "optcompose_" in jax.jit(lambda lr: _loss_after_step(lr, True, tx)).lower(0.1).as_text()


def test_the_kernel_is_not_built_for_inputs_it_cannot_take(monkeypatch):
    def refuse():
        raise AssertionError("the kernel was built although no kernel runs")

    monkeypatch.setattr(build, "_state", {})
    monkeypatch.setattr(build, "_load", refuse)
    tx = oc.adamw(0.1)
    bf16 = jax.tree.map(lambda p: p.astype(jnp.bfloat16), PARAMS)
    new_params, _ = oc.step(tx, jax.tree.map(lambda g: g.astype(jnp.bfloat16), GRADS), tx.init(bf16), bf16)
    assert new_params["w"].dtype == jnp.bfloat16
    oc.step(oc.rmsprop(0.1), GRADS, oc.rmsprop(0.1).init(PARAMS), PARAMS)  # no kernel pattern at all


@pytest.mark.skipif(not kernels.available(), reason="kernels unavailable")
def test_sharded_state_stays_sharded():
    mesh = jax.make_mesh((8,), ("data",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    tx = oc.adamw(0.1)
    params = jax.device_put(PARAMS, sharding)
    state = tx.init(params)
    state = (state[0]._replace(mu=jax.device_put(state[0].mu, sharding), nu=jax.device_put(state[0].nu, sharding)),
             *state[1:])  # fmt: skip
    lowered = jax.jit(lambda g, s, p: oc.step(tx, g, s, p)).lower(GRADS, state, params).as_text()
    assert "optcompose_adam" not in lowered  # XLA's road, which partitions; a custom call would replicate
    new_params, new_state = jax.jit(lambda g, s, p: oc.step(tx, g, s, p))(GRADS, state, params)
    assert not new_state[0].mu["w"].sharding.is_fully_replicated
    expected = oc.apply_updates(PARAMS, tx.update(GRADS, tx.init(PARAMS), PARAMS)[0])
    np.testing.assert_allclose(np.asarray(new_params["w"]), np.asarray(expected["w"]), rtol=2e-6)
