"""piecewise_interpolate_schedule: Optax's numbers and signature, NumPy reference, huge counts."""

from __future__ import annotations

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from schedules_reference import check_schedules, compare

import optcompose.schedules as sched


def ref_piecewise_interpolate(t, kind, init, boundaries_and_scales):
    """Knots (0, init), (b_i, init * s_1 * ... * s_i); linear or half-cosine between; the last after."""
    t = np.asarray(t, np.int64)
    pairs = sorted((boundaries_and_scales or {}).items())
    knots = [0] + [b for b, _ in pairs]
    values = [float(init)]
    for _, scale in pairs:
        values.append(values[-1] * scale)
    value = np.full(t.shape, values[-1])
    for i in reversed(range(len(knots) - 1)):
        a, b = knots[i], knots[i + 1]
        if a == b:
            continue
        x = (t - a) / (b - a)
        if kind == "linear":
            piece = values[i] + (values[i + 1] - values[i]) * x
        else:
            piece = values[i + 1] + (values[i] - values[i + 1]) * 0.5 * (1 + np.cos(np.pi * x))
        value = np.where((t >= a) & (t < b), piece, value)
    return value


CASES = [
    ("linear", 1.0, {4: 0.1, 8: 0.01}),  # Optax's docstring example
    ("cosine", 1.0, {4: 0.1, 8: 0.01}),
    ("linear", 0.5, {30: 2.0, 10: 0.5, 70: 0.0}),  # unsorted, a scale of 0
    ("cosine", 2.0, {0: 0.5, 20: 3.0, 21: 0.1, 50: 1.0}),  # a boundary at 0, a one-step segment
    ("linear", 0.25, None),
    ("cosine", 0.25, {}),
    ("linear", 1.0, {100: 0.5, 2**40: 0.1}),  # a segment longer than int32
]


def test_matches_numpy_reference():
    cases, steps = [], [0, 1, 2, 3, 5, 10**6]
    for kind, init, scales in CASES:
        cases.append(
            (
                f"piecewise_interpolate_{kind}{(init, scales)}",
                sched.piecewise_interpolate_schedule(kind, init, scales),
                lambda t, a=(kind, init, scales): ref_piecewise_interpolate(t, *a),
            )
        )
        for boundary in scales or {}:
            steps += [boundary + d for d in (-1, 0, 1)]
    steps += [(2**40 + 100) // 2, 2**40 + 7]
    check_schedules(cases, steps, jit64=True)


def test_matches_optax_values_and_signature():
    optax = pytest.importorskip("optax")
    signature = lambda f: [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]  # noqa: E731
    assert signature(sched.piecewise_interpolate_schedule) == signature(optax.piecewise_interpolate_schedule)
    finite = CASES[:-1]  # Optax stacks boundaries as int32: 2**40 does not fit
    theirs = [optax.piecewise_interpolate_schedule(*case) for case in finite]
    # Optax's schedule takes a scalar count: evaluate all of them in one jitted vmap (one compilation).
    expected = jax.jit(jax.vmap(lambda count: tuple(f(count) for f in theirs)))(jnp.arange(120))
    compare(
        [sched.piecewise_interpolate_schedule(*case) for case in finite],
        [np.asarray(values) for values in expected],
        120,
        rtol=1e-6,
        atol=1e-12,
    )
    # Keywords as Optax names them; the docstring's printed values.
    schedule = sched.piecewise_interpolate_schedule(
        interpolate_type="linear", init_value=1.0, boundaries_and_scales={4: 0.1, 8: 0.01}
    )
    np.testing.assert_allclose(
        np.asarray(schedule(np.arange(0, 11, 2))), [1.0, 0.55, 0.1, 0.0505, 0.001, 0.001], rtol=1e-6
    )


def test_huge_counts_hold_the_last_value():
    for kind, init, scales in CASES:
        schedule = sched.piecewise_interpolate_schedule(kind, init, scales)
        last = ref_piecewise_interpolate([2**62], kind, init, scales)[0] if not scales or max(scales) < 2**31 else None
        for count in (2**31 - 1, 2**62, 2**64 + 3, 10**30):
            value = float(schedule(count))
            assert math.isfinite(value)
            if last is not None:
                assert value == pytest.approx(last, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: sched.piecewise_interpolate_schedule("cos", 1.0), ValueError, "interpolate_type"),
        (lambda: sched.piecewise_interpolate_schedule("linear", float("nan")), ValueError, "init_value"),
        (lambda: sched.piecewise_interpolate_schedule("linear", 1.0, {5: -0.5}), ValueError, "scale"),
        (lambda: sched.piecewise_interpolate_schedule("linear", 1.0, {5: float("inf")}), ValueError, "scale"),
        (lambda: sched.piecewise_interpolate_schedule("linear", 1.0, {-5: 0.5}), ValueError, "boundary"),
        (lambda: sched.piecewise_interpolate_schedule("cosine", 1.0, {2.5: 0.5}), TypeError, "boundary"),
    ],
)
def test_invalid_arguments_name_the_argument(build, error, match):
    with pytest.raises(error, match=match):
        build()
