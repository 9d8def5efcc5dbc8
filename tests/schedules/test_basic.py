"""Constant, linear, polynomial, exponential and piecewise-constant schedules; step-count handling."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from schedules_reference import (
    check_schedule,
    check_schedules,
    compare,
    ref_exponential,
    ref_linear,
    ref_piecewise_constant,
    ref_polynomial,
)

import optcompose.schedules as sched

OPTAX_NAMED = [
    "constant_schedule",
    "linear_schedule",
    "polynomial_schedule",
    "exponential_decay",
    "piecewise_constant_schedule",
    "cosine_decay_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_constant_schedule",
    "join_schedules",
    "sgdr_schedule",
    "cosine_onecycle_schedule",
    "linear_onecycle_schedule",
    "warmup_exponential_decay_schedule",
]


def test_public_names():
    assert set(OPTAX_NAMED + ["cosine_warm_restarts_schedule", "one_cycle_schedule", "OneCycleSchedules"]) <= set(
        sched.__all__
    )
    for name in sched.__all__:
        if name != "Schedule":  # a type alias
            assert getattr(sched, name).__doc__, name


@pytest.mark.parametrize("name", OPTAX_NAMED)
def test_signature_matches_optax(name):
    optax = pytest.importorskip("optax")
    ours = inspect.signature(getattr(sched, name)).parameters
    theirs = inspect.signature(getattr(optax, name)).parameters
    assert list(ours) == list(theirs)
    assert [p.default for p in ours.values()] == [p.default for p in theirs.values()]
    assert [p.kind for p in ours.values()] == [p.kind for p in theirs.values()]


def test_constant():
    check_schedule(sched.constant_schedule(0.25), lambda t: np.full(np.shape(t), 0.25), [0, 1, 7])


LINEAR_CASES = [(1.0, 0.01, 100, 0), (0.0, 3.0, 10, 5), (2.0, 1.0, 1, 0), (1.0, 0.0, 0, 4), (0.5, 0.5, 7, 2)]
POLYNOMIAL_CASES = [(2.0, 5), (0.5, 0), (1.0, 3), (3, 0)]


def _transition_steps(begin, steps):
    return [
        begin - 1,
        begin,
        begin + 1,
        begin + steps // 2,
        begin + steps - 1,
        begin + steps,
        begin + steps + 1,
    ]


def test_linear_and_polynomial():
    cases, steps = [], [0, 1, 10**6]
    for init, end, length, begin in LINEAR_CASES:
        cases.append(
            (
                f"linear{(init, end, length, begin)}",
                sched.linear_schedule(init, end, length, begin),
                lambda t, a=(init, end, length, begin): ref_linear(t, *a),
            )
        )
        steps += _transition_steps(begin, length)
    for power, begin in POLYNOMIAL_CASES:
        cases.append(
            (
                f"polynomial{(power, begin)}",
                sched.polynomial_schedule(1.0, 0.01, power, 40, begin),
                lambda t, a=(power, 40, begin): ref_polynomial(t, 1.0, 0.01, *a),
            )
        )
        steps += _transition_steps(begin, 40)
    check_schedules(cases, steps)


EXPONENTIAL_CASES = [
    # decay_rate, transition_begin, staircase, end_value
    (0.5, 0, False, None),
    (0.5, 5, True, None),
    (0.9, 3, False, 0.2),
    (0.9, 0, True, 0.2),
    (1.5, 2, False, 40.0),
    (1.5, 0, True, 40.0),
    (0.5, 0, False, 2.0),  # a lower bound above init_value holds from the start, as in Optax
]


def test_exponential_decay():
    init, length = 3.0, 10
    cases = [
        (
            f"exponential_{'staircase' if args[2] else 'decay'}{args}",
            sched.exponential_decay(init, length, *args),
            lambda t, a=args: ref_exponential(t, init, length, *a),
        )
        for args in EXPONENTIAL_CASES
    ]
    steps = [b + d for b in (0, 2, 3, 5) for d in (0, 1, 9, 10, 11, 25, 100)] + [5000]
    check_schedules(cases, steps, jit64=True)


def test_exponential_growth_saturates_instead_of_overflowing():
    schedule = sched.exponential_decay(3.0, 10, 2.0)
    values = np.asarray(schedule(np.asarray([0, 10, 100, 1000, 2000, 10**6, 2**31 - 1, 2**62])))
    assert np.all(np.isfinite(values)) and np.all(np.diff(values) >= 0)
    np.testing.assert_allclose(values[:3], [3.0, 6.0, 3.0 * 2**10], rtol=1e-6)
    assert values[-1] >= 3e38
    assert float(sched.exponential_decay(0.0, 10, 2.0)(2**31 - 1)) == 0.0


def test_piecewise_constant():
    table = {30: 0.1, 10: 3.0, 60: 0.5, 61: 0.0, 2**40: 7.0}
    check_schedules(
        [
            (
                "table",
                sched.piecewise_constant_schedule(2.0, table),
                lambda t: ref_piecewise_constant(t, 2.0, table),
            ),
            ("none", sched.piecewise_constant_schedule(0.7), lambda t: np.full(np.shape(t), 0.7)),
            ("empty", sched.piecewise_constant_schedule(0.7, {}), lambda t: np.full(np.shape(t), 0.7)),
        ],
        [0, 9, 10, 11, 29, 30, 31, 59, 60, 61, 62, 2**40 - 1, 2**40, 2**40 + 1],
        jit64=True,
    )


MULTISTEP_CASES = [([3, 7, 12], 0.1), ([1, 2], 0.5), ([5], 2.0), ([4, 4, 9], 0.3)]


def test_piecewise_constant_matches_torch_multistep():
    torch = pytest.importorskip("torch")
    expected, ours = [], []
    for milestones, gamma in MULTISTEP_CASES:
        param = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.SGD([param], lr=0.3)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=gamma)
        lrs = []
        for _ in range(20):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        expected.append(np.asarray(lrs))
        # A milestone listed twice decays twice in PyTorch: fold repeats into one scale.
        scales = {m: gamma ** milestones.count(m) for m in milestones}
        ours.append(sched.piecewise_constant_schedule(0.3, scales))
    compare(ours, expected, 20, rtol=1e-6, atol=0)


OPTAX_CASES = [
    ("constant_schedule", (0.3,), {}),
    ("linear_schedule", (1.0, 0.01, 100), {"transition_begin": 5}),
    ("linear_schedule", (1.0, 0.01, 0), {}),
    ("polynomial_schedule", (1.0, 0.01, 2.0, 100), {"transition_begin": 5}),
    ("exponential_decay", (1.0, 10, 0.5), {"transition_begin": 5, "staircase": True, "end_value": 0.01}),
    ("exponential_decay", (1.0, 10, 0.5), {}),
    ("exponential_decay", (1.0, 10, 1.5), {"end_value": 20.0}),
    ("piecewise_constant_schedule", (1.0, {30: 0.1, 60: 0.5, 10: 3.0}), {}),
    ("piecewise_constant_schedule", (1.0, None), {}),
]


def test_matches_optax():
    optax = pytest.importorskip("optax")
    compare(
        [getattr(sched, name)(*args, **kwargs) for name, args, kwargs in OPTAX_CASES],
        [getattr(optax, name)(*args, **kwargs) for name, args, kwargs in OPTAX_CASES],
        140,
    )


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: sched.constant_schedule(float("nan")), "value"),
        (lambda: sched.linear_schedule(float("inf"), 0.0, 10), "init_value"),
        (lambda: sched.linear_schedule(1.0, 0.0, -1), "transition_steps"),
        (lambda: sched.linear_schedule(1.0, 0.0, 10, transition_begin=-1), "transition_begin"),
        (lambda: sched.polynomial_schedule(1.0, 0.0, -1.0, 10), "power"),
        (lambda: sched.polynomial_schedule(1.0, float("nan"), 1.0, 10), "end_value"),
        (lambda: sched.exponential_decay(1.0, 0, 0.5), "transition_steps"),
        (lambda: sched.exponential_decay(1.0, 10, 0.0), "decay_rate"),
        (lambda: sched.exponential_decay(1.0, 10, -0.5), "decay_rate"),
        (lambda: sched.exponential_decay(1.0, 10, 0.5, transition_begin=-2), "transition_begin"),
        (lambda: sched.exponential_decay(1.0, 10, 0.5, end_value=float("nan")), "end_value"),
        (lambda: sched.piecewise_constant_schedule(1.0, {10: -0.1}), "boundaries_and_scales"),
        (lambda: sched.piecewise_constant_schedule(1.0, {-1: 0.1}), "boundaries_and_scales"),
    ],
)
def test_invalid_arguments_name_the_argument(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_non_integer_steps_are_type_errors():
    with pytest.raises(TypeError, match="transition_steps"):
        sched.linear_schedule(1.0, 0.0, 10.5)
