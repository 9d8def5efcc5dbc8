"""optcompose/integrations/flax.py: the one-pass step reaches Flax users by changing one name.

``optcompose.TrainState`` (linen) and ``optcompose.Optimizer`` (nnx) step through ``optcompose.step``;
each must give the numbers of Flax's own ``TrainState`` / ``nnx.Optimizer`` (``tx.update`` then
``apply_updates``) on a real model trained with ``jax.grad`` / ``nnx.grad``, with tree and with flat
parameters (``optcompose.flat_params``), and the kernel must be in the compiled step.
"""

from __future__ import annotations

import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import CASES_BY_NAME
from flax import nnx
from flax.training import train_state
from helpers import assert_trees_close

import optcompose as oc
from optcompose.speed._flat_params import FlatParams

STEPS = 3
TOLERANCE = {"float32": (2e-6, 2e-6)}
ROWS = ["sgd_momentum", "adamw_mask", "lamb", "adam_l2_flat", "adamw_mask_flat", "rmsprop_defaults"]
KERNEL = {"sgd_momentum": "optcompose_sgd", "adamw_mask": "optcompose_adam", "lamb": "optcompose_lamb"}


def _data():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(STEPS, 8, 3)), jnp.float32)
    return x, jnp.sin(x[..., :1] * x[..., 1:2])


# ----------------------------------------------------------------------------------------------
# linen


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(16)(x)))


def _linen_run(state_type, tx, flat=False):
    model = MLP()
    params = model.init(jax.random.key(0), jnp.zeros((1, 3)))["params"]
    if flat:
        params = oc.flat_params(params)
    state = state_type.create(apply_fn=model.apply, params=params, tx=tx)
    as_tree = (lambda p: p.tree) if flat else (lambda p: p)

    @jax.jit
    def train_step(state, x, y):
        def loss(p):
            return jnp.mean((state.apply_fn({"params": as_tree(p)}, x) - y) ** 2)

        return state.apply_gradients(grads=jax.grad(loss)(state.params))

    x, y = _data()
    for t in range(STEPS):
        state = train_step(state, x[t], y[t])
    return state, train_step.lower(state, x[0], y[0]).as_text()


@pytest.mark.parametrize("name", ROWS)
def test_linen_train_state_equals_flax_train_state(name):
    tx = CASES_BY_NAME[name].make()
    theirs, _ = _linen_run(train_state.TrainState, tx)
    ours, text = _linen_run(oc.TrainState, tx)
    assert int(ours.step) == STEPS
    assert_trees_close((ours.params, ours.opt_state), (theirs.params, theirs.opt_state), **TOLERANCE)
    if name in KERNEL:
        assert KERNEL[name] in text


@pytest.mark.parametrize("name", ROWS)
def test_linen_train_state_with_flat_params_equals_flax_train_state(name):
    tx = CASES_BY_NAME[name].make()
    theirs, _ = _linen_run(train_state.TrainState, tx)
    ours, text = _linen_run(oc.TrainState, tx, flat=True)
    assert isinstance(ours.params, FlatParams) and len(ours.params.buffers) == 1
    assert_trees_close((ours.params.tree, ours.opt_state), (theirs.params, theirs.opt_state), **TOLERANCE)
    if name in ("adam_l2_flat",):  # flat moments, uniform per-leaf choices: the kernel over the buffers
        assert "optcompose_adam" in text


def test_linen_train_state_keeps_the_overwrite_with_gradient_collection_with_flat_params():
    inner = oc.flat_params({"w": jnp.ones((3,)), "b": jnp.zeros((2,))})
    params = {"params": inner, train_state.OVERWRITE_WITH_GRADIENT: {"scale": jnp.ones(())}}
    state = oc.TrainState.create(apply_fn=None, params=params, tx=oc.adam(0.1))
    grads = {"params": oc.flat_params({"w": jnp.ones((3,)), "b": jnp.ones((2,))}),
             train_state.OVERWRITE_WITH_GRADIENT: {"scale": jnp.full((), 3.0)}}  # fmt: skip
    new = state.apply_gradients(grads=grads)
    assert float(new.params[train_state.OVERWRITE_WITH_GRADIENT]["scale"]) == 3.0
    assert isinstance(new.params["params"], FlatParams)


# ----------------------------------------------------------------------------------------------
# nnx


class Model(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(3, 16, rngs=rngs)
        self.norm = nnx.LayerNorm(16, rngs=rngs)
        self.out = nnx.Linear(16, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.tanh(self.norm(self.hidden(x))))


def _loss(model, x, y):
    return jnp.mean((model(x) - y) ** 2)


def _nnx_run(optimizer_type, tx):
    model = Model(nnx.Rngs(0))
    optimizer = optimizer_type(model, tx, wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, x, y):
        grads = nnx.grad(_loss)(model, x, y)
        return optimizer.update(model, grads)

    x, y = _data()
    graphdef, state = nnx.split((model, optimizer))

    def pure_step(state, x, y):  # the same step, functional, to read its compiled program
        model, optimizer = nnx.merge(graphdef, state)
        optimizer.update(model, nnx.grad(_loss)(model, x, y))
        return nnx.state((model, optimizer))

    text = jax.jit(pure_step).lower(state, x[0], y[0]).as_text()
    updates = [train_step(model, optimizer, x[t], y[t]) for t in range(STEPS)]
    return model, optimizer, updates, text


@pytest.mark.parametrize("name", ROWS)
def test_nnx_optimizer_equals_flax_nnx_optimizer(name):
    tx = CASES_BY_NAME[name].make()
    theirs, their_opt, their_updates, _ = _nnx_run(nnx.Optimizer, tx)
    ours, our_opt, our_updates, text = _nnx_run(oc.Optimizer, tx)
    assert isinstance(our_opt, nnx.Optimizer) and int(our_opt.step[...]) == STEPS
    assert_trees_close(nnx.to_pure_dict(nnx.state(ours)), nnx.to_pure_dict(nnx.state(theirs)), **TOLERANCE)
    assert_trees_close(nnx.pure(our_opt.opt_state), nnx.pure(their_opt.opt_state), **TOLERANCE)
    # The returned updates are the change applied (new - old): Flax's updates to round-off.
    assert_trees_close(nnx.pure(our_updates[-1]), nnx.pure(their_updates[-1]), float32=(1e-4, 1e-7))
    if name in KERNEL:
        assert KERNEL[name] in text


def test_nnx_split_merge_with_flat_params_equals_nnx_optimizer():
    tx = oc.flat_state(oc.adamw(0.05, weight_decay=0.1))
    reference, _, _, _ = _nnx_run(nnx.Optimizer, tx)
    graphdef, params, rest = nnx.split(Model(nnx.Rngs(0)), nnx.Param, ...)
    flat = oc.flat_params(params)
    state = tx.init(flat.tree)

    @jax.jit
    def train_step(flat, state, x, y):
        grads = jax.grad(lambda f: _loss(nnx.merge(graphdef, f.tree, rest), x, y))(flat)
        return oc.step(tx, grads, state, flat)

    x, y = _data()
    for t in range(STEPS):
        flat, state = train_step(flat, state, x[t], y[t])
    assert "optcompose_adam" in train_step.lower(flat, state, x[0], y[0]).as_text()
    model = nnx.merge(graphdef, flat.tree, rest)
    assert_trees_close(nnx.to_pure_dict(nnx.state(model)), nnx.to_pure_dict(nnx.state(reference)), **TOLERANCE)


def test_plain_dict_model_with_flat_params():
    rng = np.random.default_rng(0)
    params = {f"layer{i}": {"w": jnp.asarray(rng.normal(size=(4, 4)) / 2, jnp.float32), "b": jnp.zeros((4,))}
              for i in range(3)}  # fmt: skip
    tx = oc.flat_state(oc.sgd(0.1, momentum=0.9))

    def loss(p, x):
        for i in range(3):
            x = jnp.tanh(x @ p[f"layer{i}"]["w"] + p[f"layer{i}"]["b"])
        return jnp.sum(x**2)

    x = jnp.ones((2, 4))
    tree_step = jax.jit(lambda p, s: oc.step(tx, jax.grad(loss)(p, x), s, p))
    flat_step = jax.jit(lambda f, s: oc.step(tx, jax.grad(lambda f: loss(f.tree, x))(f), s, f))
    p, s = params, tx.init(params)
    f, fs = oc.flat_params(params), tx.init(params)
    for _ in range(STEPS):
        p, s = tree_step(p, s)
        f, fs = flat_step(f, fs)
    assert_trees_close(f.tree, p, float32=(1e-6, 1e-7))


def test_flax_is_imported_only_for_the_flax_names():
    code = (
        "import sys, optcompose as oc; print('flax' in sys.modules); "
        "oc.flat_params; oc.FlatParams; print('flax' in sys.modules); oc.Optimizer; print('flax' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True"]
