"""Step counts (optcompose/schedules/_count.py): any integer type, floats, arrays and huge counts.

Every schedule stays finite at the int32 maximum and far beyond it (Python ints up to 2**70, int64),
and an optimizer following a schedule keeps working from a saturated count.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_finite

import optcompose.schedules as sched
from optcompose import optimizers as opt
from optcompose import schedules
from optcompose._base import chain
from optcompose._tree import INT32_MAX
from optcompose.transforms._clipping import clip


@pytest.mark.parametrize(
    "count",
    [
        np.uint32(2**32 - 1),
        np.uint64(2**64 - 1),
        jnp.uint32(2**32 - 1),
        jnp.int8(100),
        jnp.int16(-5),
        np.int64(-(2**62)),
        -3,
        True,
        jnp.float32(np.inf),
        2**100,
    ],
)
def test_counts_of_any_integer_type_are_clipped(count):
    schedule = sched.linear_schedule(1.0, 0.0, 200)
    value = schedule(count)
    assert value.dtype == jnp.float32 and value.shape == ()
    expected = float(np.clip(float(count), 0, 200)) if np.isfinite(float(count)) else 200.0
    np.testing.assert_allclose(value, 1.0 - expected / 200, atol=1e-7)


def test_float_counts_interpolate():
    schedule = sched.linear_schedule(1.0, 0.0, 10)
    np.testing.assert_allclose(schedule(2.5), 0.75)
    np.testing.assert_allclose(jax.jit(schedule)(jnp.float32(7.5)), 0.25)


def test_schedules_are_elementwise_over_count_arrays():
    schedule = sched.piecewise_constant_schedule(1.0, {2: 0.5})
    np.testing.assert_allclose(schedule(jnp.arange(4).reshape(2, 2)), [[1.0, 1.0], [0.5, 0.5]])



def _all_schedules():
    found = {
        "constant": schedules.constant_schedule(0.1),
        "linear": schedules.linear_schedule(0.1, 0.0, 1000),
        "polynomial": schedules.polynomial_schedule(0.1, 0.001, 2.0, 1000, 10),
        "exponential": schedules.exponential_decay(0.1, 10, 0.5),
        "exponential_growth": schedules.exponential_decay(0.1, 10, 2.0),
        "exponential_staircase": schedules.exponential_decay(0.1, 10, 0.5, staircase=True),
        "piecewise": schedules.piecewise_constant_schedule(0.1, {10: 0.1, 2**40: 10.0}),
        "cosine": schedules.cosine_decay_schedule(0.1, 1000),
        "warmup_cosine": schedules.warmup_cosine_decay_schedule(0.0, 0.1, 10, 1000),
        "sgdr": schedules.sgdr_schedule(
            [{"init_value": 0.1, "peak_value": 0.1, "decay_steps": 100, "warmup_steps": 0}] * 3
        ),
        "warm_restarts": schedules.cosine_warm_restarts_schedule(0.1, 7, 2),
        "cosine_onecycle": schedules.cosine_onecycle_schedule(1000, 0.1),
        "linear_onecycle": schedules.linear_onecycle_schedule(1000, 0.1),
        "join": schedules.join_schedules(
            [schedules.constant_schedule(0.1), schedules.linear_schedule(0.1, 0.0, 9)], [5]
        ),
        "warmup_constant": schedules.warmup_constant_schedule(0.0, 0.1, 10),
        "warmup_exponential": schedules.warmup_exponential_decay_schedule(0.0, 0.1, 10, 10, 0.5),
    }
    cycle = schedules.one_cycle_schedule(1000, 0.1)
    parts = cycle._asdict().items() if hasattr(cycle, "_asdict") else [("", cycle)]
    for field, schedule in parts:
        if callable(schedule):
            found[f"one_cycle{field and '.' + field}"] = schedule
    return found


SCHEDULES = _all_schedules()
HUGE_COUNTS = [INT32_MAX, jnp.asarray(INT32_MAX, jnp.int32), jnp.asarray(INT32_MAX - 1, jnp.int32), 2**62,
               np.int64(2**62), np.iinfo(np.int64).max, 2**70]


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedules_finite_at_huge_counts(name):
    schedule = SCHEDULES[name]
    for count in HUGE_COUNTS:
        value = np.asarray(schedule(count))
        assert value.shape == () and math.isfinite(float(value)), (name, count, value)
    jitted = jax.jit(schedule)(jnp.asarray(INT32_MAX, jnp.int32))
    assert math.isfinite(float(jitted))


@pytest.mark.parametrize("name", ["warmup_cosine", "exponential_growth", "warm_restarts", "one_cycle.learning_rate"])
def test_scheduled_optimizer_at_int32_max(name):
    tx = chain(opt.adam(SCHEDULES[name]), clip(1.0))
    params = {"a": jnp.asarray([1.0, -2.0, 0.5], jnp.float32), "b": jnp.asarray(1.0, jnp.float32)}
    state = jax.tree.map(lambda x: jnp.asarray(INT32_MAX, jnp.int32) if x.dtype == jnp.int32 and x.ndim == 0 else x,
                         tx.init(params))  # fmt: skip
    for _ in range(2):
        updates, state = tx.update(params, state, params)
        assert_finite((updates, state))
