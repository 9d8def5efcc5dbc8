"""Cosine decay, warm-up + cosine, SGDR, and PyTorch's CosineAnnealingWarmRestarts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_schedules_reference import (
    check_schedule,
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


@pytest.mark.parametrize(("alpha", "exponent"), [(0.0, 1.0), (0.1, 1.0), (0.05, 2.0), (0.0, 0.5)])
def test_cosine_decay(alpha, exponent):
    init, steps = 2.0, 50
    check_schedule(
        sched.cosine_decay_schedule(init, steps, alpha, exponent),
        lambda t: ref_cosine_decay(t, init, steps, alpha, exponent),
        [0, 1, 25, 49, 50, 51, 1000],
    )


@pytest.mark.parametrize(("base_lr", "t_max", "eta_min"), [(0.1, 20, 0.0), (1.0, 7, 1e-3), (0.5, 1, 0.05)])
def test_cosine_decay_matches_torch_cosine_annealing(base_lr, t_max, eta_min):
    # PyTorch's CosineAnnealingLR(T_max, eta_min) is cosine_decay_schedule(lr, T_max, alpha=eta_min / lr)
    # up to T_max; beyond it PyTorch climbs back up the cosine while Optax's schedule stays put.
    expected = _torch_lrs(
        lambda s, opt: s.CosineAnnealingLR(opt, T_max=t_max, eta_min=eta_min), t_max + 1, lr=base_lr
    )
    schedule = sched.cosine_decay_schedule(base_lr, t_max, alpha=eta_min / base_lr)
    got = jax.jit(jax.vmap(schedule))(jnp.arange(t_max + 1))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(schedule(t_max + 10), eta_min, rtol=1e-6)


@pytest.mark.parametrize(
    ("warmup", "decay_steps", "end", "exponent"),
    [(10, 100, 0.0, 1.0), (0, 30, 0.1, 1.0), (5, 6, 0.01, 1.0), (20, 60, 0.05, 1.5), (1, 40, 0.0, 1.0)],
)
def test_warmup_cosine_decay(warmup, decay_steps, end, exponent):
    init, peak = 0.01, 1.0
    check_schedule(
        sched.warmup_cosine_decay_schedule(init, peak, warmup, decay_steps, end, exponent),
        lambda t: ref_warmup_cosine(t, init, peak, warmup, decay_steps, end, exponent),
        [0, 1, max(warmup - 1, 0), warmup, warmup + 1, (warmup + decay_steps) // 2, decay_steps - 1]
        + [decay_steps, decay_steps + 1, 10**5],
    )


SGDR_CYCLES = [
    {"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 2, "decay_steps": 10, "end_value": 0.1},
    {"init_value": 0.5, "peak_value": 0.8, "warmup_steps": 0, "decay_steps": 20},
    {"init_value": 0.1, "peak_value": 0.6, "warmup_steps": 5, "decay_steps": 40, "exponent": 2.0},
]


def test_sgdr():
    check_schedule(
        sched.sgdr_schedule(SGDR_CYCLES),
        lambda t: ref_sgdr(t, SGDR_CYCLES),
        [0, 1, 2, 9, 10, 11, 29, 30, 31, 35, 36, 69, 70, 71, 500],
    )
    check_schedule(sched.sgdr_schedule(iter(SGDR_CYCLES[:1])), lambda t: ref_sgdr(t, SGDR_CYCLES[:1]), [0, 11])


@pytest.mark.parametrize(
    ("first_period", "period_mult", "end"),
    [(5, 1, 0.01), (3, 2, 0.0), (4, 3, 0.1), (1, 1, 0.0), (1, 2, 0.2), (2**31 + 5, 1, 0.0), (7, 10, 0.0)],
)
def test_cosine_warm_restarts(first_period, period_mult, end):
    init = 0.5
    starts = [0]
    while len(starts) < 6:
        starts.append(starts[-1] + first_period * period_mult ** (len(starts) - 1))
    around = sorted({s + d for s in starts for d in (-1, 0, 1) if s + d >= 0} | {10**6, 10**9 + 7})
    check_schedule(
        sched.cosine_warm_restarts_schedule(init, first_period, period_mult, end),
        lambda t: ref_warm_restarts(t, init, first_period, period_mult, end),
        around,
    )


@pytest.mark.parametrize(("t_0", "t_mult", "eta_min"), [(5, 1, 0.01), (3, 2, 0.0), (4, 3, 0.1), (1, 2, 0.3)])
def test_cosine_warm_restarts_matches_torch(t_0, t_mult, eta_min):
    steps = 300
    expected = _torch_lrs(lambda s, opt: s.CosineAnnealingWarmRestarts(opt, t_0, t_mult, eta_min), steps)
    schedule = sched.cosine_warm_restarts_schedule(1.0, t_0, t_mult, eta_min)
    got = jax.jit(jax.vmap(schedule))(jnp.arange(steps))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    ("name", "args", "kwargs"),
    [
        ("cosine_decay_schedule", (1.0, 100), {"alpha": 0.1, "exponent": 2.0}),
        ("cosine_decay_schedule", (0.3, 7), {}),
        ("warmup_cosine_decay_schedule", (0.0, 1.0, 10, 100), {"end_value": 0.05, "exponent": 1.5}),
        ("warmup_cosine_decay_schedule", (0.1, 1.0, 0, 100), {}),
        ("sgdr_schedule", (SGDR_CYCLES,), {}),
    ],
)
def test_matches_optax(name, args, kwargs):
    optax = pytest.importorskip("optax")
    steps = jnp.arange(0, 140)
    got = jax.jit(jax.vmap(getattr(sched, name)(*args, **kwargs)))(steps)
    want = jax.vmap(getattr(optax, name)(*args, **kwargs))(steps)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


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
        (lambda: sched.sgdr_schedule([SGDR_CYCLES[0], {**SGDR_CYCLES[1], "warmup_steps": 50}]), r"cosine_kwargs\[1\]"),
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
