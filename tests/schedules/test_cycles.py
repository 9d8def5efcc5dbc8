"""One-cycle schedules: Optax's cosine/linear variants and PyTorch's OneCycleLR (lr and momentum)."""

from __future__ import annotations

import numpy as np
import pytest
from schedules_reference import (
    check_schedules,
    compare,
    ref_cosine_onecycle,
    ref_linear_onecycle,
    ref_one_cycle,
)

import optcompose.schedules as sched

COSINE_ONECYCLE_CASES = [(100, 0.3), (10, 0.05), (37, 0.5), (1000, 0.25)]  # transition_steps, pct_start
LINEAR_ONECYCLE_CASES = [(100, 0.3, 0.85), (20, 0.1, 0.5), (50, 0.4, 1.0)]  # ..., pct_final


def test_cosine_and_linear_onecycle():
    cases, steps = [], [0, 1, 10**7]
    for length, pct_start in COSINE_ONECYCLE_CASES:
        cases.append(
            (
                f"cosine_onecycle{(length, pct_start)}",
                sched.cosine_onecycle_schedule(
                    length, 2.0, pct_start, div_factor=10.0, final_div_factor=100.0
                ),
                lambda t, a=(length, pct_start): ref_cosine_onecycle(t, a[0], 2.0, a[1], 10.0, 100.0),
            )
        )
        peak = int(pct_start * length)
        steps += [peak - 1, peak, peak + 1, (peak + length) // 2, length - 1, length, length + 1]
    for length, pct_start, pct_final in LINEAR_ONECYCLE_CASES:
        cases.append(
            (
                f"linear_onecycle{(length, pct_start, pct_final)}",
                sched.linear_onecycle_schedule(length, 1.0, pct_start, pct_final),
                lambda t, a=(length, pct_start, pct_final): ref_linear_onecycle(t, a[0], 1.0, *a[1:]),
            )
        )
        for knot in (int(pct_start * length), int(pct_final * length), length):
            steps += [knot - 1, knot, knot + 1]
    check_schedules(cases, steps)


OPTAX_CASES = [
    ("cosine_onecycle_schedule", (100, 1.0), {}),
    ("cosine_onecycle_schedule", (10, 0.5), {"pct_start": 0.05, "div_factor": 5.0}),
    ("linear_onecycle_schedule", (100, 1.0), {}),
    ("linear_onecycle_schedule", (60, 0.3), {"pct_start": 0.2, "pct_final": 0.7, "final_div_factor": 50.0}),
]


def test_matches_optax():
    optax = pytest.importorskip("optax")
    compare(
        [getattr(sched, name)(*args, **kwargs) for name, args, kwargs in OPTAX_CASES],
        [getattr(optax, name)(*args, **kwargs) for name, args, kwargs in OPTAX_CASES],
        140,
    )


ONE_CYCLE_CASES = [
    # total_steps, pct_start, three_phase, anneal
    (100, 0.3, False, "cos"),
    (100, 0.3, True, "cos"),
    (100, 0.3, False, "linear"),
    (100, 0.3, True, "linear"),
    (37, 0.29, True, "cos"),  # fractional phase ends: 37 * 0.29 - 1 = 9.73
    (10, 0.25, False, "linear"),  # a first phase ending at 1.5
    (1000, 0.1, False, "cos"),
    (7, 0.4, True, "linear"),
]


def _one_cycle(total_steps, pct_start, three_phase, anneal):
    return sched.one_cycle_schedule(
        total_steps, 0.5, pct_start, div_factor=20.0, final_div_factor=1e3, three_phase=three_phase,
        anneal=anneal, base_momentum=0.8, max_momentum=0.9,
    )  # fmt: skip


def test_one_cycle_matches_numpy_reference():
    cases, steps = [], [0, 1, 10**8]
    for total, pct, three, anneal in ONE_CYCLE_CASES:
        schedules = _one_cycle(total, pct, three, anneal)
        for index, name in enumerate(schedules._fields):
            cases.append(
                (
                    f"one_cycle_{anneal}{(total, pct, three)}.{name}",
                    schedules[index],
                    lambda t, a=(total, pct, three, anneal), i=index: ref_one_cycle(
                        t, a[0], 0.5, a[1], 20.0, 1e3, a[2], a[3], 0.8, 0.9
                    )[i],
                )
            )
        for end in (pct * total - 1, 2 * pct * total - 2, total - 1):
            steps += [int(end) + d for d in (-1, 0, 1, 2)]
        steps += [total // 2, total, total + 1]
    check_schedules(cases, steps, jit64=True)


def _torch_one_cycle(total_steps, pct_start, three_phase, anneal, optimizer_name="SGD"):
    """PyTorch's lr and momentum for each of the total_steps updates of a run."""
    torch = pytest.importorskip("torch")
    param = torch.nn.Parameter(torch.zeros(1))
    if optimizer_name == "SGD":
        optimizer = torch.optim.SGD([param], lr=1.0, momentum=0.9)
    else:
        optimizer = torch.optim.Adam([param], lr=1.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.5, total_steps=total_steps, pct_start=pct_start, anneal_strategy=anneal,
        cycle_momentum=True, base_momentum=0.8, max_momentum=0.9, div_factor=20.0,
        final_div_factor=1e3, three_phase=three_phase,
    )  # fmt: skip
    lrs, momenta = [], []
    for _ in range(total_steps):
        group = optimizer.param_groups[0]
        lrs.append(group["lr"])
        momenta.append(group["momentum"] if optimizer_name == "SGD" else group["betas"][0])
        optimizer.step()
        scheduler.step()
    return np.asarray(lrs), np.asarray(momenta)


def test_one_cycle_matches_torch():
    # Every step of an N-step run; the schedules hold their last value afterwards (checked below).
    length = max(total for total, *_ in ONE_CYCLE_CASES)
    ours, expected = [], []
    for case in ONE_CYCLE_CASES + [(50, 0.3, False, "cos", "Adam")]:
        lrs, momenta = _torch_one_cycle(*case)
        schedules = _one_cycle(*case[:4])
        ours += list(schedules)
        expected += [np.pad(values, (0, length - len(values)), mode="edge") for values in (lrs, momenta)]
    compare(ours, expected, length, rtol=2e-6, atol=0)


def test_one_cycle_defaults_and_holding_after_the_end():
    schedules = sched.one_cycle_schedule(100, 1.0)
    assert isinstance(schedules, sched.OneCycleSchedules)
    np.testing.assert_allclose(schedules.learning_rate(0), 1.0 / 25.0)
    np.testing.assert_allclose(schedules.learning_rate(29), 1.0)
    np.testing.assert_allclose(schedules.momentum(29), 0.85)
    np.testing.assert_allclose(schedules.learning_rate(99), 1.0 / 25.0 / 1e4)
    np.testing.assert_allclose(schedules.momentum(99), 0.95)
    for step in (100, 101, 2**31 - 1, 2**62):
        assert float(schedules.learning_rate(step)) == float(schedules.learning_rate(99))
        assert float(schedules.momentum(step)) == float(schedules.momentum(99))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: sched.cosine_onecycle_schedule(0, 1.0), "transition_steps"),
        (lambda: sched.cosine_onecycle_schedule(100, 1.0, pct_start=0.0), "pct_start"),
        (lambda: sched.cosine_onecycle_schedule(100, 1.0, pct_start=1.0), "pct_start"),
        (lambda: sched.cosine_onecycle_schedule(100, 1.0, div_factor=0.0), "div_factor"),
        (lambda: sched.cosine_onecycle_schedule(100, 1.0, final_div_factor=-1.0), "final_div_factor"),
        (lambda: sched.linear_onecycle_schedule(100, 1.0, pct_start=0.5, pct_final=0.4), "pct_final"),
        (lambda: sched.linear_onecycle_schedule(100, 1.0, pct_final=1.2), "pct_final"),
        (lambda: sched.linear_onecycle_schedule(100, float("nan")), "peak_value"),
        (lambda: sched.one_cycle_schedule(0, 1.0), "total_steps"),
        (lambda: sched.one_cycle_schedule(100, 1.0, pct_start=0.0), "pct_start"),
        (lambda: sched.one_cycle_schedule(100, 1.0, pct_start=1.0), "pct_start"),
        (lambda: sched.one_cycle_schedule(100, 1.0, pct_start=-0.2), "pct_start"),
        (lambda: sched.one_cycle_schedule(3, 1.0, pct_start=0.3), "pct_start"),
        (lambda: sched.one_cycle_schedule(10, 1.0, pct_start=0.1), "pct_start"),
        (lambda: sched.one_cycle_schedule(100, 1.0, pct_start=0.6, three_phase=True), "pct_start"),
        (lambda: sched.one_cycle_schedule(100, 1.0, anneal="cosine"), "anneal"),
        (lambda: sched.one_cycle_schedule(100, 1.0, div_factor=0.0), "div_factor"),
        (lambda: sched.one_cycle_schedule(100, 1.0, final_div_factor=0.0), "final_div_factor"),
        (lambda: sched.one_cycle_schedule(100, -1.0), "max_lr"),
        (lambda: sched.one_cycle_schedule(100, 1.0, base_momentum=1.5), "base_momentum"),
        (lambda: sched.one_cycle_schedule(100, 1.0, max_momentum=-0.1), "max_momentum"),
    ],
)
def test_invalid_arguments_name_the_argument(build, match):
    with pytest.raises(ValueError, match=match):
        build()
