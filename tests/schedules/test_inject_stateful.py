"""inject_stateful_hyperparams, StatefulSchedule and WrappedSchedule: Optax's API, numbers and timing."""

from __future__ import annotations

import inspect
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close

from optcompose import optimizers
from optcompose.schedules import (
    InjectStatefulHyperparamsState,
    StatefulSchedule,
    WrappedSchedule,
    WrappedScheduleState,
    inject_hyperparams,
    inject_stateful_hyperparams,
)

PARAMS = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.25, -0.5])}
GRADS = [jax.tree.map(lambda p, k=k: jnp.cos(p * (k + 1)) + 0.1 * k, PARAMS) for k in range(5)]
LOSSES = [2.0, 1.5, 1.25, 0.5, 0.75]


def halving(count):
    return 0.1 * 0.5 ** jnp.asarray(count, jnp.float32)


class LossSumState(NamedTuple):
    total: jax.Array


class LossScaled:
    """A stateful schedule from the losses seen so far: 0.1 / (1 + sum of losses)."""

    def init(self):
        return LossSumState(jnp.zeros((), jnp.float32))

    def update(self, state, loss=0.0, **extra_args):
        return LossSumState(state.total + loss)

    def __call__(self, state, **extra_args):
        return 0.1 / (1.0 + state.total)


def _signature(function):
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_api_matches_optax():
    optax = pytest.importorskip("optax")
    assert _signature(inject_stateful_hyperparams) == _signature(optax.inject_stateful_hyperparams)
    assert _signature(WrappedSchedule) == _signature(optax.WrappedSchedule)
    assert InjectStatefulHyperparamsState._fields == optax.InjectStatefulHyperparamsState._fields
    theirs = optax.schedules.StatefulSchedule
    for method in ("init", "update", "__call__"):
        assert _signature(getattr(StatefulSchedule, method)) == _signature(getattr(theirs, method)), method
    # Structural: ours, Optax's and a hand-written one are all stateful schedules; a plain function is not.
    assert isinstance(WrappedSchedule(halving), StatefulSchedule)
    assert isinstance(optax.WrappedSchedule(halving), StatefulSchedule)
    assert isinstance(LossScaled(), StatefulSchedule) and isinstance(LossScaled(), optax.schedules.StatefulSchedule)
    assert not isinstance(halving, StatefulSchedule)


def test_wrapped_schedule_counts_and_saturates():
    wrapped = WrappedSchedule(halving)
    state = wrapped.init()
    assert isinstance(state, WrappedScheduleState) and state.count.dtype == jnp.int32
    values = []
    for _ in range(4):
        values.append(float(wrapped(state, loss=1.0)))
        state = wrapped.update(state, loss=1.0)
    np.testing.assert_allclose(values, [0.1, 0.05, 0.025, 0.0125])
    top = WrappedScheduleState(jnp.asarray(2**31 - 1, jnp.int32))
    assert int(wrapped.update(top).count) == 2**31 - 1  # no wrap to negative
    assert np.isfinite(float(wrapped(top)))


def _run(tx, with_loss=False):
    state = tx.init(PARAMS)
    step = jax.jit(tx.update)
    history = []
    for grads, loss in zip(GRADS, LOSSES, strict=True):
        extra = {"loss": jnp.float32(loss)} if with_loss else {}
        updates, state = step(grads, state, PARAMS, **extra)
        history.append((updates, state))
    return history


def _close(a, b, rtol=1e-6):
    assert_trees_close(a, b, rtol=rtol, atol=1e-8)


def test_plain_schedule_matches_inject_hyperparams_and_optax():
    optax = pytest.importorskip("optax")
    ours = _run(inject_stateful_hyperparams(optimizers.adam)(learning_rate=halving, b1=0.8))
    plain = _run(inject_hyperparams(optimizers.adam)(learning_rate=halving, b1=0.8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ref = _run(optax.inject_stateful_hyperparams(optax.adam)(learning_rate=halving, b1=0.8))
    for (updates, state), (plain_updates, plain_state), (ref_updates, ref_state) in zip(ours, plain, ref, strict=True):
        _close(updates, plain_updates)
        _close(updates, ref_updates)
        # Optax's timing: the dict holds the values the last update used.
        for name in ("learning_rate", "b1", "b2", "eps"):
            assert float(state.hyperparams[name]) == pytest.approx(float(ref_state.hyperparams[name]), rel=1e-7)
            assert float(state.hyperparams[name]) == pytest.approx(float(plain_state.hyperparams[name]), rel=1e-7)
        schedule_count = ref_state.hyperparams_states["learning_rate"].count
        assert int(state.hyperparams_states["learning_rate"].count) == int(schedule_count)
        assert int(state.count) == int(ref_state.count)
    last = ours[-1][1]
    assert isinstance(last, InjectStatefulHyperparamsState)
    assert isinstance(last.hyperparams_states["learning_rate"], WrappedScheduleState)
    assert float(last.hyperparams.upcoming["learning_rate"]) == pytest.approx(float(halving(len(GRADS))))


def test_stateful_schedule_sees_the_extra_args_as_in_optax():
    optax = pytest.importorskip("optax")
    ours = _run(inject_stateful_hyperparams(optimizers.sgd)(learning_rate=LossScaled(), momentum=0.9), True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        factory = optax.inject_stateful_hyperparams(optax.sgd)
    ref = _run(factory(learning_rate=LossScaled(), momentum=0.9), True)
    seen = 0.0
    for k, ((updates, state), (ref_updates, ref_state)) in enumerate(zip(ours, ref, strict=True)):
        _close(updates, ref_updates)
        used = 0.1 / (1.0 + seen)  # update k uses the losses of updates 0 .. k-1
        assert float(state.hyperparams["learning_rate"]) == pytest.approx(used, rel=1e-6)
        assert float(ref_state.hyperparams["learning_rate"]) == pytest.approx(used, rel=1e-6)
        seen += LOSSES[k]
        assert float(state.hyperparams_states["learning_rate"].total) == pytest.approx(seen, rel=1e-6)
        assert float(state.hyperparams.upcoming["learning_rate"]) == pytest.approx(0.1 / (1.0 + seen), rel=1e-6)


def test_state_is_namedtuples_of_float32_data_and_scan_friendly():
    tx = inject_stateful_hyperparams(optimizers.sgd)(learning_rate=LossScaled(), momentum=0.9, nesterov=True)
    state = tx.init(PARAMS)
    assert isinstance(state, InjectStatefulHyperparamsState) and isinstance(state, tuple)
    assert state.count.dtype == jnp.int32
    for name in ("learning_rate", "momentum"):
        assert state.hyperparams[name].dtype == jnp.float32 and state.hyperparams[name].shape == ()
    assert "nesterov" not in state.hyperparams  # booleans stay static
    assert isinstance(state.hyperparams_states["learning_rate"], LossSumState)

    def body(carry, inputs):
        grads, loss = inputs
        updates, carry = tx.update(grads, carry, PARAMS, loss=loss)
        return carry, updates

    stacked = jax.tree.map(lambda *g: jnp.stack(g), *GRADS)
    final, _ = jax.jit(lambda s: jax.lax.scan(body, s, (stacked, jnp.asarray(LOSSES, jnp.float32))))(state)
    assert int(final.count) == len(GRADS)
    assert float(final.hyperparams_states["learning_rate"].total) == pytest.approx(sum(LOSSES), rel=1e-6)
    assert jax.tree.structure(final) == jax.tree.structure(state)
    bf16 = inject_stateful_hyperparams(optimizers.sgd, hyperparam_dtype=jnp.bfloat16)(learning_rate=halving)
    assert bf16.init(PARAMS).hyperparams["learning_rate"].dtype == jnp.bfloat16


def test_assigned_constants_take_effect_next_update():
    tx = inject_stateful_hyperparams(optimizers.sgd)(learning_rate=0.1)
    state = tx.init(PARAMS)
    step = jax.jit(tx.update)
    updates, state = step(GRADS[0], state, PARAMS)
    _close(updates, jax.tree.map(lambda g: -0.1 * g, GRADS[0]))
    state.hyperparams["learning_rate"] = jnp.float32(0.02)
    updates, state = step(GRADS[1], state, PARAMS)
    _close(updates, jax.tree.map(lambda g: -0.02 * g, GRADS[1]))
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.02)


def test_static_args_and_bad_arguments():
    # A callable named in static_args is passed through, not scheduled.
    tx = inject_stateful_hyperparams(optimizers.sgd, static_args="learning_rate")(learning_rate=halving)
    state = tx.init(PARAMS)
    assert "learning_rate" not in state.hyperparams and not state.hyperparams_states
    with pytest.raises(ValueError, match="static_args"):
        inject_stateful_hyperparams(optimizers.sgd, static_args=("learning_rat",))
    with pytest.raises(TypeError, match="schedule_fn"):
        WrappedSchedule(0.1)
    tx = inject_stateful_hyperparams(optimizers.sgd)(learning_rate=LossScaled())
    state = tx.init(PARAMS)
    with pytest.raises(KeyError, match="hyperparams_states"):
        tx.update(GRADS[0], state._replace(hyperparams_states={}), PARAMS)
