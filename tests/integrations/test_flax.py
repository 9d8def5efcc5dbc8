"""optcompose/integrations/flax.py and the transforms as Flax's ``tx``: hashing, hyperparameters as data.

Every row of the table as the ``tx`` of a linen ``TrainState`` and of an ``nnx.Optimizer``, against
the same row driven by hand, is tests/table/test_flax.py's. Here: transforms hash and compare as
Flax's static fields need, a learning rate set through ``TrainState.replace`` takes effect without a
retrace, and ``optcompose.TrainState`` (stepped by ``optcompose.step``) is Flax's ``TrainState``.
"""

import copy

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import CASES_BY_NAME
from flax.training import train_state
from helpers import assert_trees_close, assert_trees_equal, random_like, random_params

import optcompose as oc
from optcompose import optimizers
from optcompose._hyperparams import get_hyperparams, set_hyperparams

STEPS = 4
# The classic optimizers with their default settings (rows of tests/rows/classic.py).
ROWS = ["sgd_momentum", "adagrad", "rmsprop_defaults", "adam_defaults", "adamw_defaults", "lars_defaults", "lamb"]


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS, 16, 3)).astype(np.float32)
    y = (x[..., :1] * x[..., 1:2] - x[..., 2:]).astype(np.float32)
    return x, y


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


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(8)(x)))


@pytest.mark.parametrize("name", ROWS)
def test_learning_rate_set_through_replace_takes_effect_without_a_retrace(name):
    tx = CASES_BY_NAME[name].make()
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
    for t in range(STEPS):
        state, loss = train_step(state, x[t], y[t])
        assert np.isfinite(float(loss))
    # TrainState.create starts from a Python int step, so the second call traces once more.
    assert len(traces) <= 2
    assert int(state.step) == STEPS
    # A zero learning rate freezes the parameters, without a new trace (LARS's momentum comes after
    # the learning rate: zero it too).
    zero = {"learning_rate": 0.0, **({"momentum": 0.0} if name.startswith("lars") else {})}
    frozen = state.replace(opt_state=set_hyperparams(state.opt_state, zero))
    assert float(get_hyperparams(frozen.opt_state)["learning_rate"]) == 0.0
    after, _ = train_step(frozen, x[0], y[0])
    assert len(traces) <= 2
    assert_trees_close(after.params, frozen.params, rtol=2e-6, atol=2e-6)


# ----------------------------------------------------------------------------------------------
# optcompose.TrainState: Flax's TrainState stepped by optcompose.step.


def _params(seed=0):
    return random_params(None, seed)


def _grads(params, seed):
    return random_like(params, seed)


def _general(tx):
    def run(grads, state, params):
        updates, state = tx.update(grads, state, params)
        return oc.apply_updates(params, updates), state

    return run


def test_train_state_steps_like_flax_train_state():
    tx = oc.adamw(0.01, weight_decay=0.1)
    params = _params()
    ours = oc.TrainState.create(apply_fn=None, params=params, tx=tx)
    theirs = train_state.TrainState.create(apply_fn=None, params=params, tx=tx)
    apply = jax.jit(lambda state, g: state.apply_gradients(grads=g))
    for t in range(3):
        ours, theirs = apply(ours, _grads(params, t)), apply(theirs, _grads(params, t))
    assert int(ours.step) == 3
    assert_trees_close((ours.params, ours.opt_state), (theirs.params, theirs.opt_state), float32=(2e-6, 1e-6))
    text = jax.jit(lambda state, g: state.apply_gradients(grads=g)).lower(ours, params).as_text()
    assert "optcompose_adam" in text


def test_train_state_overwrite_with_gradient_collection():
    tx = oc.sgd(0.1, momentum=0.9)
    inner = _params()
    params = {"params": inner, train_state.OVERWRITE_WITH_GRADIENT: {"scale": jnp.ones(())}}
    state = oc.TrainState.create(apply_fn=None, params=params, tx=tx)
    grads = {"params": _grads(inner, 1), train_state.OVERWRITE_WITH_GRADIENT: {"scale": jnp.full((), 3.0)}}
    new = state.apply_gradients(grads=grads)
    assert float(new.params[train_state.OVERWRITE_WITH_GRADIENT]["scale"]) == 3.0
    expected = _general(tx)(grads["params"], tx.init(inner), inner)[0]
    assert_trees_equal(new.params["params"], expected)
