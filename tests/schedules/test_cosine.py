"""Cosine decay, warm-up + cosine, SGDR, and PyTorch's CosineAnnealingLR / CosineAnnealingWarmRestarts."""

from __future__ import annotations

import numpy as np
import pytest
from schedules_reference import (
    check_schedules,
    compare,
    ref_cosine_decay,
    ref_sgdr,
    ref_warm_restarts,
    ref_warmup_cosine,
)

import optcompose.schedules as sched


def _torch_lrs(make_scheduler, steps, lr=1.0):
    """The learning rate the optimizer uses for each of ``steps`` updates (step() after each)."""
    torch = pytest.importorskip("torch")
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr, momentum=0.9)
    scheduler = make_scheduler(torch.optim.lr_scheduler, optimizer)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return np.asarray(lrs)


COSINE_CASES = [(0.0, 1.0), (0.1, 1.0), (0.05, 2.0), (0.0, 0.5)]  # alpha, exponent
WARMUP_COSINE_CASES = [
    (10, 100, 0.0, 1.0),
    (0, 30, 0.1, 1.0),
    (5, 6, 0.01, 1.0),
    (20, 60, 0.05, 1.5),
    (1, 40, 0.0, 1.0),
]


def test_cosine_decay_and_warmup_cosine_decay():
    cases = [
        (
            f"cosine_decay{(alpha, exponent)}",
            sched.cosine_decay_schedule(2.0, 50, alpha, exponent),
            lambda t, a=(alpha, exponent): ref_cosine_decay(t, 2.0, 50, *a),
        )
        for alpha, exponent in COSINE_CASES
    ]
    steps = [0, 1, 25, 49, 50, 51, 1000, 10**5]
    for warmup, total, end, exponent in WARMUP_COSINE_CASES:
        cases.append(
            (
                f"warmup_cosine{(warmup, total, end, exponent)}",
                sched.warmup_cosine_decay_schedule(0.01, 1.0, warmup, total, end, exponent),
                lambda t, a=(warmup, total, end, exponent): ref_warmup_cosine(t, 0.01, 1.0, *a),
            )
        )
        steps += [warmup - 1, warmup, warmup + 1, (warmup + total) // 2, total - 1, total, total + 1]
    check_schedules(cases, steps)


def test_cosine_decay_matches_torch_cosine_annealing():
    # PyTorch's CosineAnnealingLR(T_max, eta_min) is cosine_decay_schedule(lr, T_max, alpha=eta_min / lr)
    # up to T_max; beyond it PyTorch climbs back up the cosine while this schedule stays at eta_min.
    ours, expected = [], []
    for base_lr, t_max, eta_min in [(0.1, 20, 0.0), (1.0, 7, 1e-3), (0.5, 1, 0.05), (0.3, 40, 0.3)]:
        lrs = _torch_lrs(
            lambda s, opt, t=t_max, e=eta_min: s.CosineAnnealingLR(opt, T_max=t, eta_min=e), 41, base_lr
        )
        lrs[t_max + 1 :] = eta_min
        expected.append(lrs)
        ours.append(sched.cosine_decay_schedule(base_lr, t_max, alpha=eta_min / base_lr))
    compare(ours, expected, 41, rtol=1e-5, atol=1e-8)


SGDR_CYCLES = [
    {"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 2, "decay_steps": 10, "end_value": 0.1},
    {"init_value": 0.5, "peak_value": 0.8, "warmup_steps": 0, "decay_steps": 20},
    {"init_value": 0.1, "peak_value": 0.6, "warmup_steps": 5, "decay_steps": 40, "exponent": 2.0},
]


def test_sgdr():
    check_schedules(
        [
            ("three cycles", sched.sgdr_schedule(SGDR_CYCLES), lambda t: ref_sgdr(t, SGDR_CYCLES)),
            ("one cycle", sched.sgdr_schedule(iter(SGDR_CYCLES[:1])), lambda t: ref_sgdr(t, SGDR_CYCLES[:1])),
        ],
        [0, 1, 2, 9, 10, 11, 29, 30, 31, 35, 36, 69, 70, 71, 500],
        jit64=True,
    )


RESTART_CASES = [
    (5, 1, 0.01),
    (3, 2, 0.0),
    (1, 1, 0.0),
    (1, 2, 0.2),
    (2**31 + 5, 1, 0.0),
    (7, 10, 0.0),
    (4, 3, 0.1),
]


def test_cosine_warm_restarts():
    cases, steps = [], [10**6, 10**9 + 7, 2**40 + 1]
    for first, mult, end in RESTART_CASES:
        cases.append(
            (
                f"warm_restarts_{'fixed' if mult == 1 else 'growing'}{(first, mult, end)}",
                sched.cosine_warm_restarts_schedule(0.5, first, mult, end),
                lambda t, a=(first, mult, end): ref_warm_restarts(t, 0.5, *a),
            )
        )
        start = 0
        for i in range(5):
            steps += [start - 1, start, start + 1]
            start += first * mult**i
    check_schedules(cases, steps, jit64=True)


def test_cosine_warm_restarts_matches_torch():
    ours, expected = [], []
    for t_0, t_mult, eta_min in [(5, 1, 0.01), (3, 2, 0.0), (4, 3, 0.1), (1, 2, 0.3), (1, 1, 0.0)]:
        make = lambda s, opt, a=(t_0, t_mult, eta_min): s.CosineAnnealingWarmRestarts(opt, *a)
        expected.append(_torch_lrs(make, 300))
        ours.append(sched.cosine_warm_restarts_schedule(1.0, t_0, t_mult, eta_min))
    compare(ours, expected, 300, rtol=1e-6, atol=1e-9)


OPTAX_CASES = [
    ("cosine_decay_schedule", (1.0, 100), {"alpha": 0.1, "exponent": 2.0}),
    ("cosine_decay_schedule", (0.3, 7), {}),
    ("warmup_cosine_decay_schedule", (0.0, 1.0, 10, 100), {"end_value": 0.05, "exponent": 1.5}),
    ("warmup_cosine_decay_schedule", (0.1, 1.0, 0, 100), {}),
    ("sgdr_schedule", (SGDR_CYCLES,), {}),
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
        (lambda: sched.cosine_decay_schedule(1.0, 0), "decay_steps"),
        (lambda: sched.cosine_decay_schedule(1.0, -5), "decay_steps"),
        (lambda: sched.cosine_decay_schedule(1.0, 10, exponent=-1.0), "exponent"),
        (lambda: sched.cosine_decay_schedule(1.0, 10, alpha=float("nan")), "alpha"),
        (lambda: sched.warmup_cosine_decay_schedule(0.0, 1.0, 20, 10), "warmup_steps"),
        (lambda: sched.warmup_cosine_decay_schedule(0.0, 1.0, 10, 10), "warmup_steps"),
        (lambda: sched.warmup_cosine_decay_schedule(0.0, 1.0, -1, 10), "warmup_steps"),
        (lambda: sched.warmup_cosine_decay_schedule(0.0, 1.0, 0, 0), "decay_steps"),
        (lambda: sched.warmup_cosine_decay_schedule(0.0, float("inf"), 1, 10), "peak_value"),
        (lambda: sched.sgdr_schedule([]), "cosine_kwargs"),
        (
            lambda: sched.sgdr_schedule([SGDR_CYCLES[0], {**SGDR_CYCLES[1], "warmup_steps": 50}]),
            r"cosine_kwargs\[1\]",
        ),
        (lambda: sched.sgdr_schedule([{**SGDR_CYCLES[0], "warmup_steps": -1}]), "warmup_steps"),
        (lambda: sched.cosine_warm_restarts_schedule(1.0, 0), "first_period"),
        (lambda: sched.cosine_warm_restarts_schedule(1.0, 10, 0), "period_mult"),
        (lambda: sched.cosine_warm_restarts_schedule(1.0, 10, end_value=float("nan")), "end_value"),
    ],
)
def test_invalid_arguments_name_the_argument(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_non_integer_period_is_a_type_error():
    with pytest.raises(TypeError, match="period_mult"):
        sched.cosine_warm_restarts_schedule(1.0, 10, 1.5)
