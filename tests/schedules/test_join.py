"""join_schedules and the warm-up compositions; schedules as hyperparameters under jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from schedules_reference import (
    check_schedules,
    compare,
    ref_cosine_decay,
    ref_exponential,
    ref_join,
    ref_linear,
)

import optcompose.schedules as sched


def test_join_schedules():
    pieces = [
        sched.linear_schedule(0.0, 1.0, 10),
        sched.constant_schedule(0.7),
        sched.cosine_decay_schedule(1.0, 50, alpha=0.1),
    ]
    references = [
        lambda t: ref_linear(t, 0.0, 1.0, 10),
        lambda t: np.full(np.shape(t), 0.7),
        lambda t: ref_cosine_decay(t, 1.0, 50, 0.1),
    ]
    two = [sched.constant_schedule(1.0), sched.constant_schedule(2.0)]
    check_schedules(
        [
            (
                "three pieces",
                sched.join_schedules(pieces, [10, 25]),
                lambda t: ref_join(t, references, [10, 25]),
            ),
            ("one piece", sched.join_schedules(pieces[2:], []), references[2]),
            # A boundary no int32 count reaches: int64 counts (x64) do reach it.
            (
                "beyond int32",
                sched.join_schedules(two, [2**40]),
                lambda t: np.where(np.asarray(t) >= 2**40, 2.0, 1.0),
            ),
        ],
        [0, 1, 9, 10, 11, 24, 25, 26, 50, 74, 75, 76, 10**6, 2**40 - 1, 2**40, 2**40 + 1],
        jit64=True,
    )


def test_join_schedules_accepts_foreign_schedules():
    # Any function of the step count works; each piece sees the count since its own boundary.
    joined = sched.join_schedules([lambda c: c * 0.0 + 1.0, lambda c: jnp.asarray(c, jnp.float32)], [5])
    got = jax.jit(jax.vmap(joined))(jnp.arange(9))
    np.testing.assert_array_equal(got, [1, 1, 1, 1, 1, 0, 1, 2, 3])


WARMUP_CONSTANT_CASES = [(20, 0.1), (1, 0.0), (0, 0.5)]  # warmup_steps, init_value
WARMUP_EXPONENTIAL_CASES = [(10, 3, True, 0.1), (10, 0, False, None), (0, 2, False, 0.3), (5, 0, True, None)]


def _ref_warmup_exponential(t, warmup, begin, staircase, end):
    decay = lambda s: ref_exponential(s, 1.0, 5, 0.5, begin, staircase, end)
    if warmup == 0:
        return decay(t)
    return ref_join(t, [lambda s: ref_linear(s, 0.0, 1.0, warmup), decay], [warmup])


def test_warmup_constant_and_warmup_exponential_decay():
    cases, steps = [], [0, 1, 100, 10**4, 10**6]
    for warmup, init in WARMUP_CONSTANT_CASES:
        cases.append(
            (
                f"warmup_constant{(warmup, init)}",
                sched.warmup_constant_schedule(init, 2.0, warmup),
                lambda t, w=warmup, i=init: ref_linear(t, i, 2.0, w) if w else np.full(np.shape(t), 2.0),
            )
        )
        steps += [warmup - 1, warmup, warmup + 1]
    for warmup, begin, staircase, end in WARMUP_EXPONENTIAL_CASES:
        cases.append(
            (
                f"warmup_exponential{(warmup, begin, staircase, end)}",
                sched.warmup_exponential_decay_schedule(0.0, 1.0, warmup, 5, 0.5, begin, staircase, end),
                lambda t, a=(warmup, begin, staircase, end): _ref_warmup_exponential(t, *a),
            )
        )
        steps += [warmup - 1, warmup, warmup + 1, warmup + begin, warmup + begin + 4, warmup + begin + 5]
    check_schedules(cases, steps)


OPTAX_CASES = [
    ("warmup_constant_schedule", (0.1, 1.0, 20), {}),
    ("warmup_exponential_decay_schedule", (0.0, 1.0, 10, 5, 0.5), {"transition_begin": 3, "staircase": True}),
    ("warmup_exponential_decay_schedule", (0.0, 1.0, 0, 5, 0.5), {"end_value": 0.1}),
    ("warmup_exponential_decay_schedule", (0.2, 1.0, 7, 4, 1.2), {"end_value": 3.0}),
]


def test_matches_optax():
    optax = pytest.importorskip("optax")
    ours = [getattr(sched, name)(*args, **kwargs) for name, args, kwargs in OPTAX_CASES]
    theirs = [getattr(optax, name)(*args, **kwargs) for name, args, kwargs in OPTAX_CASES]
    ours.append(
        sched.join_schedules(
            [sched.linear_schedule(0.0, 1.0, 10), sched.cosine_decay_schedule(1.0, 50)], [10]
        )
    )
    theirs.append(
        optax.join_schedules(
            [optax.linear_schedule(0.0, 1.0, 10), optax.cosine_decay_schedule(1.0, 50)], [10]
        )
    )
    compare(ours, theirs, 140)


def test_warmup_constant_with_no_warmup_starts_at_peak():
    # A deliberate difference from Optax 0.2.8, which holds init_value forever when warmup_steps=0.
    schedule = sched.warmup_constant_schedule(0.5, 1.0, 0)
    np.testing.assert_array_equal(jax.vmap(schedule)(jnp.arange(3)), [1.0, 1.0, 1.0])


def test_schedule_drives_a_jitted_update_from_an_int32_counter():
    schedule = sched.warmup_cosine_decay_schedule(0.0, 1.0, 5, 20)

    @jax.jit
    def step(count, value):
        return count + 1, value - schedule(count) * 0.1

    count, value = jnp.zeros((), jnp.int32), jnp.float32(3.0)
    for _ in range(25):
        count, value = step(count, value)
    expected = 3.0 - 0.1 * sum(float(schedule(t)) for t in range(25))
    np.testing.assert_allclose(value, expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: sched.join_schedules([], []), "schedules"),
        (lambda: sched.join_schedules([sched.constant_schedule(1.0)] * 2, []), "boundaries"),
        (lambda: sched.join_schedules([sched.constant_schedule(1.0)] * 3, [5, 5]), "boundaries"),
        (lambda: sched.join_schedules([sched.constant_schedule(1.0)] * 3, [7, 5]), "boundaries"),
        (lambda: sched.join_schedules([sched.constant_schedule(1.0)] * 2, [-1]), "boundaries"),
        (lambda: sched.warmup_constant_schedule(0.0, 1.0, -1), "warmup_steps"),
        (lambda: sched.warmup_constant_schedule(0.0, float("inf"), 3), "peak_value"),
        (lambda: sched.warmup_exponential_decay_schedule(0.0, 1.0, -1, 5, 0.5), "warmup_steps"),
        (lambda: sched.warmup_exponential_decay_schedule(0.0, 1.0, 3, 0, 0.5), "transition_steps"),
        (lambda: sched.warmup_exponential_decay_schedule(0.0, 1.0, 3, 5, 0.0), "decay_rate"),
        (lambda: sched.warmup_exponential_decay_schedule(0.0, 1.0, 3, 5, 0.5, -1), "transition_begin"),
        (lambda: sched.warmup_exponential_decay_schedule(0.0, float("nan"), 3, 5, 0.5), "peak_value"),
    ],
)
def test_invalid_arguments_name_the_argument(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_join_rejects_non_callables():
    with pytest.raises(TypeError, match=r"schedules\[1\]"):
        sched.join_schedules([sched.constant_schedule(1.0), 0.5], [3])
