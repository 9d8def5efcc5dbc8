"""Every optimizer as the ``tx`` of a Flax linen ``TrainState`` and of an ``nnx.Optimizer``.

Each run is checked against the same optimizer driven by hand (``init``, ``update``,
``apply_updates`` on a plain dict of parameters), so a wrapper that dropped the state, passed the
wrong parameters or applied an update twice would show up as a difference.
"""

import copy

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from flax.training import train_state

from optcompose import optimizers
from optcompose._base import apply_updates
from optcompose._hyperparams import get_hyperparams, set_hyperparams

STEPS = 4
LR = 0.05
OPTIMIZERS = {
    "sgd": lambda: optimizers.sgd(LR, momentum=0.9),
    "adagrad": lambda: optimizers.adagrad(LR),
    "rmsprop": lambda: optimizers.rmsprop(LR),
    "adam": lambda: optimizers.adam(LR),
    "adamw": lambda: optimizers.adamw(LR, weight_decay=0.1),
    "lars": lambda: optimizers.lars(LR * 10, weight_decay=1e-3),
    "lamb": lambda: optimizers.lamb(LR, weight_decay=0.01),
}


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS, 16, 3)).astype(np.float32)
    y = (x[..., :1] * x[..., 1:2] - x[..., 2:]).astype(np.float32)
    return x, y


def reference_run(tx, params, loss_of_params):
    """The optimizer driven by hand, eagerly, on a plain pytree of parameters."""
    x, y = data()
    state = tx.init(params)
    for t in range(STEPS):
        grads = jax.grad(loss_of_params)(params, x[t], y[t])
        updates, state = tx.update(grads, state, params)
        params = apply_updates(params, updates)
    return params


def assert_close(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=2e-6, atol=2e-6)


def test_transformations_are_hashable_and_comparable():
    tx = optimizers.adamw(1e-3)
    assert hash(tx) == hash(copy.copy(tx)) and tx == copy.copy(tx)
    assert tx != optimizers.adamw(1e-3)  # two builds are two optimizers (their closures differ)
    assert {tx: 1}[tx] == 1

    traces = []

    @jax.jit
    def jitted(s):
        traces.append(1)
        return s.replace(step=s.step + 1)

    state = train_state.TrainState.create(apply_fn=None, params={"w": jnp.zeros(2)}, tx=tx)
    state = jitted(state.replace(step=jnp.int32(0)))
    state = jitted(state)
    assert len(traces) == 1  # the static tx compares equal to itself: no retrace
    jitted(state.replace(tx=optimizers.sgd(0.1)))
    assert len(traces) == 2  # a different tx is a different program


# ----------------------------------------------------------------------------------------------
# linen + TrainState


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(8)(x)))


def linen_loss(params, x, y):
    return jnp.mean(jnp.square(MLP().apply({"params": params}, x) - y))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_linen_train_state(name):
    tx = OPTIMIZERS[name]()
    params = MLP().init(jax.random.key(0), jnp.zeros((1, 3)))["params"]
    state = train_state.TrainState.create(apply_fn=MLP().apply, params=params, tx=tx)
    traces = []

    @jax.jit
    def train_step(state, x, y):
        traces.append(1)
        loss, grads = jax.value_and_grad(lambda p: jnp.mean(jnp.square(state.apply_fn({"params": p}, x) - y)))(
            state.params
        )
        return state.apply_gradients(grads=grads), loss

    x, y = data()
    losses = []
    for t in range(STEPS):
        state, loss = train_step(state, x[t], y[t])
        losses.append(float(loss))
    # TrainState.create starts from a Python int step, so the second call traces once more.
    assert len(traces) <= 2
    assert int(state.step) == STEPS
    assert_close(state.params, reference_run(tx, params, linen_loss))
    assert np.isfinite(losses).all()

    # Hyperparameters as data through TrainState.replace: a zero learning rate freezes the
    # parameters, without a new trace (LARS's momentum comes after the learning rate: zero it too).
    zero = {"learning_rate": 0.0, **({"momentum": 0.0} if name == "lars" else {})}
    frozen = state.replace(opt_state=set_hyperparams(state.opt_state, zero))
    assert float(get_hyperparams(frozen.opt_state)["learning_rate"]) == 0.0
    after, _ = train_step(frozen, x[0], y[0])
    assert len(traces) <= 2
    assert_close(after.params, frozen.params)


# ----------------------------------------------------------------------------------------------
# nnx + nnx.Optimizer


class NnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(3, 8, rngs=rngs)
        self.out = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x)))


def nnx_loss(model, x, y):
    return jnp.mean(jnp.square(model(x) - y))


@nnx.jit
def nnx_train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(nnx_loss)(model, x, y)
    optimizer.update(model, grads)
    return loss


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_nnx_optimizer(name):
    tx = OPTIMIZERS[name]()
    model = NnxMLP(nnx.Rngs(0))
    graphdef, initial = nnx.split(model, nnx.Param)
    initial_pure = nnx.to_pure_dict(initial)

    def loss_of_pure(pure, x, y):
        # The same leaves in the same (sorted-key) order, put back into nnx's State of Params.
        state = jax.tree.unflatten(jax.tree.structure(initial), jax.tree.leaves(pure))
        return nnx_loss(nnx.merge(graphdef, state), x, y)

    expected = reference_run(tx, initial_pure, loss_of_pure)

    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x, y = data()
    for t in range(STEPS):
        nnx_train_step(model, optimizer, x[t], y[t])
    assert int(optimizer.step[...]) == STEPS
    assert_close(nnx.to_pure_dict(nnx.state(model, nnx.Param)), expected)
    # The optimizer state keeps optcompose's structure: hyperparameters are readable.
    hyper = get_hyperparams(nnx.pure(optimizer.opt_state))
    assert float(hyper["learning_rate"]) == pytest.approx(LR * 10 if name == "lars" else LR)
