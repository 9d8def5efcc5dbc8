"""PyTorch twins: PolynomialLR, LinearLR, ConstantLR, SequentialLR and ChainedScheduler, step for step."""

from __future__ import annotations

import inspect
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from schedules_reference import check_schedules, compare

import optcompose.schedules as sched

LR = 0.3
STEPS = 60


def ref_polynomial_lr(t, base, total, power):
    t = np.asarray(t, np.int64)
    return base * (1.0 - np.minimum(t, total) / total) ** power


def ref_linear_lr(t, base, start, end, total):
    t = np.asarray(t, np.int64)
    return base * (start + (end - start) * np.minimum(t, total) / total)


def ref_constant_lr(t, base, factor, total):
    t = np.asarray(t, np.int64)
    return np.where(t < total, base * factor, base)


def ref_sequential(t, references, milestones):
    """PyTorch's rule: the schedule at bisect_right(milestones, t), at t minus its milestone."""
    t = np.asarray(t, np.int64)
    starts = np.asarray([0, *milestones], np.int64)
    index = np.searchsorted(np.asarray(milestones, np.int64), t, side="right")
    pieces = zip(references, starts, strict=True)
    values = np.stack([reference(np.maximum(t - start, 0)) for reference, start in pieces])
    return np.take_along_axis(values, index[None], axis=0)[0]


def ref_chained(t, references, base):
    value = np.full(np.shape(t), float(base))
    for reference in references:
        value = value * (reference(t) / base)
    return value


# ---------------------------------------------------------------------------------------- torch


def _torch_lrs(build, steps=STEPS, lr=LR):
    """The optimizer's lr before each of ``steps`` updates, ``build(optimizer)`` giving the scheduler."""
    torch = pytest.importorskip("torch")
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = build(optimizer, torch.optim.lr_scheduler)
        lrs = []
        for _ in range(steps):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
    return np.asarray(lrs)


# (torch scheduler, our twin) pairs; lr = LR throughout.
FACTOR_PAIRS = [
    (lambda o, s: s.PolynomialLR(o, total_iters=20, power=2.0), sched.polynomial_lr_schedule(LR, 20, 2.0)),
    (lambda o, s: s.PolynomialLR(o, total_iters=45, power=0.5), sched.polynomial_lr_schedule(LR, 45, 0.5)),
    (lambda o, s: s.PolynomialLR(o), sched.polynomial_lr_schedule(LR)),
    (lambda o, s: s.LinearLR(o, start_factor=0.1, total_iters=30), sched.linear_lr_schedule(LR, 0.1, total_iters=30)),
    (lambda o, s: s.LinearLR(o, 1.0, 0.05, 25), sched.linear_lr_schedule(LR, 1.0, 0.05, 25)),
    (lambda o, s: s.LinearLR(o, 0.5, 0.0, 40), sched.linear_lr_schedule(LR, 0.5, 0.0, 40)),
    (lambda o, s: s.LinearLR(o), sched.linear_lr_schedule(LR)),
    (lambda o, s: s.ConstantLR(o, factor=0.25, total_iters=17), sched.constant_lr_schedule(LR, 0.25, 17)),
    (lambda o, s: s.ConstantLR(o), sched.constant_lr_schedule(LR)),
]


def test_factor_schedules_match_torch():
    expected = [_torch_lrs(build) for build, _ in FACTOR_PAIRS]
    compare([ours for _, ours in FACTOR_PAIRS], expected, STEPS, rtol=1e-6, atol=1e-12)


# exponential_decay(lr, 1, 0.9), the twin of ExponentialLR(gamma=0.9), rounds 0.9 to float32 before the
# power: its own relative error grows as t * 3e-8 (1.4e-6 at t = 53). The combinators add none, so a
# pair holding it is compared at that piece's accuracy; every other pair at 1e-6.
EXPONENTIAL_RTOL = 2e-6


def _compare_pairs(pairs):
    for index, (build, ours) in enumerate(pairs):
        rtol = EXPONENTIAL_RTOL if index == 0 else 1e-6
        compare([ours], [_torch_lrs(build)], STEPS, rtol=rtol, atol=1e-12)


def _sequential_pairs():
    linear = lambda o, s: s.LinearLR(o, 0.1, 1.0, 5)  # noqa: E731
    exponential = lambda o, s: s.ExponentialLR(o, gamma=0.9)  # noqa: E731
    return [
        # The common warm-up then decay: LinearLR stops one step short of its end factor.
        (
            lambda o, s: s.SequentialLR(o, [linear(o, s), exponential(o, s)], milestones=[5]),
            sched.sequential_schedule(
                [sched.linear_lr_schedule(LR, 0.1, 1.0, 5), sched.exponential_decay(LR, 1, 0.9)], [5]
            ),
        ),
        # Three pieces, each restarting from its own step 0 (ConstantLR's factor again at 20).
        (
            lambda o, s: s.SequentialLR(
                o, [s.ConstantLR(o, 0.5, 3), s.PolynomialLR(o, 10, 2.0), s.ConstantLR(o, 0.2, 30)], milestones=[6, 20]
            ),
            sched.sequential_schedule(
                [sched.constant_lr_schedule(LR, 0.5, 3), sched.polynomial_lr_schedule(LR, 10, 2.0),
                 sched.constant_lr_schedule(LR, 0.2, 30)],
                [6, 20],
            ),
        ),  # fmt: skip
        # Equal milestones: the middle scheduler never runs.
        (
            lambda o, s: s.SequentialLR(
                o,
                [s.LinearLR(o, 0.2, 1.0, 8), s.ConstantLR(o, 0.1, 50), s.PolynomialLR(o, 30, 1.0)],
                milestones=[10, 10],
            ),
            sched.sequential_schedule(
                [sched.linear_lr_schedule(LR, 0.2, 1.0, 8), sched.constant_lr_schedule(LR, 0.1, 50),
                 sched.polynomial_lr_schedule(LR, 30)],
                [10, 10],
            ),
        ),  # fmt: skip
        # A milestone at 0: the first scheduler never runs.
        (
            lambda o, s: s.SequentialLR(o, [s.ConstantLR(o, 0.1, 50), s.LinearLR(o, 0.3, 0.9, 12)], milestones=[0]),
            sched.sequential_schedule(
                [sched.constant_lr_schedule(LR, 0.1, 50), sched.linear_lr_schedule(LR, 0.3, 0.9, 12)], [0]
            ),
        ),
        # Cosine annealing (within T_max), multi-step, step decay and a cyclic phase.
        (
            lambda o, s: s.SequentialLR(
                o,
                [s.CosineAnnealingLR(o, T_max=15, eta_min=0.03), s.MultiStepLR(o, [4, 9], 0.5),
                 s.StepLR(o, step_size=4, gamma=0.7), s.CyclicLR(o, 0.01, 0.2, 3, 5, cycle_momentum=False)],
                milestones=[15, 27, 40],
            ),
            sched.sequential_schedule(
                [sched.cosine_decay_schedule(LR, 15, 0.1), sched.piecewise_constant_schedule(LR, {4: 0.5, 9: 0.5}),
                 sched.exponential_decay(LR, 4, 0.7, staircase=True),
                 sched.cyclic_schedule(0.01, 0.2, 3, 5).learning_rate],
                [15, 27, 40],
            ),
        ),  # fmt: skip
        # One scheduler, no milestones.
        (
            lambda o, s: s.SequentialLR(o, [s.PolynomialLR(o, 40, 3.0)], milestones=[]),
            sched.sequential_schedule([sched.polynomial_lr_schedule(LR, 40, 3.0)], []),
        ),
    ]


def test_sequential_matches_torch_sequential_lr():
    _compare_pairs(_sequential_pairs())


def _chained_pairs():
    return [
        (
            lambda o, s: s.ChainedScheduler(
                [s.ConstantLR(o, factor=0.1, total_iters=2), s.ExponentialLR(o, gamma=0.9)]
            ),
            sched.chained_schedule([sched.constant_lr_schedule(LR, 0.1, 2), sched.exponential_decay(LR, 1, 0.9)], LR),
        ),
        (
            lambda o, s: s.ChainedScheduler(
                [s.LinearLR(o, 0.2, 1.0, 10), s.PolynomialLR(o, 50, 1.5), s.MultiStepLR(o, [20, 35], 0.3)]
            ),
            sched.chained_schedule(
                [sched.linear_lr_schedule(LR, 0.2, 1.0, 10), sched.polynomial_lr_schedule(LR, 50, 1.5),
                 sched.piecewise_constant_schedule(LR, {20: 0.3, 35: 0.3})],
                LR,
            ),
        ),  # fmt: skip
        (
            lambda o, s: s.ChainedScheduler([s.StepLR(o, 7, 0.5)], optimizer=o),
            sched.chained_schedule([sched.exponential_decay(LR, 7, 0.5, staircase=True)], LR),
        ),
    ]


def test_chained_matches_torch_chained_scheduler():
    _compare_pairs(_chained_pairs())


# ------------------------------------------------------------------------- NumPy, jit, huge counts


def test_match_numpy_references():
    poly = lambda t: ref_polynomial_lr(t, LR, 20, 2.0)  # noqa: E731
    linear = lambda t: ref_linear_lr(t, LR, 0.1, 1.0, 30)  # noqa: E731
    constant = lambda t: ref_constant_lr(t, LR, 0.25, 17)  # noqa: E731
    far = lambda t: ref_constant_lr(t, LR, 0.5, 2**40)  # noqa: E731
    pieces = [sched.polynomial_lr_schedule(LR, 20, 2.0), sched.linear_lr_schedule(LR, 0.1, 1.0, 30),
              sched.constant_lr_schedule(LR, 0.25, 17)]  # fmt: skip
    cases = [
        ("polynomial_lr(20, 2.0)", pieces[0], poly),
        ("polynomial_lr(7, 1.0)", sched.polynomial_lr_schedule(LR, 7), lambda t: ref_polynomial_lr(t, LR, 7, 1.0)),
        ("polynomial_lr(2**40, 0.5)", sched.polynomial_lr_schedule(LR, 2**40, 0.5),
         lambda t: ref_polynomial_lr(t, LR, 2**40, 0.5)),
        ("linear_lr(0.1, 1.0, 30)", pieces[1], linear),
        ("linear_lr(0.0, 0.5, 2**35)", sched.linear_lr_schedule(LR, 0.0, 0.5, 2**35),
         lambda t: ref_linear_lr(t, LR, 0.0, 0.5, 2**35)),
        ("constant_lr(0.25, 17)", pieces[2], constant),
        ("constant_lr(0.5, 2**40)", sched.constant_lr_schedule(LR, 0.5, 2**40), far),
        ("sequential(3)", sched.sequential_schedule(pieces, [25, 40]),
         lambda t: ref_sequential(t, [poly, linear, constant], [25, 40])),
        ("sequential(duplicates)", sched.sequential_schedule(pieces, [0, 0]), constant),
        ("sequential(far)", sched.sequential_schedule(pieces[:2], [2**40]),
         lambda t: ref_sequential(t, [poly, linear], [2**40])),
        ("chained(3)", sched.chained_schedule(pieces, LR), lambda t: ref_chained(t, [poly, linear, constant], LR)),
        ("chained(far)", sched.chained_schedule([pieces[1], sched.constant_lr_schedule(LR, 0.5, 2**40)], LR),
         lambda t: ref_chained(t, [linear, far], LR)),
    ]  # fmt: skip
    steps = [0, 1, 2, 6, 7, 8, 16, 17, 18, 19, 20, 21, 24, 25, 26, 29, 30, 31, 39, 40, 41, 55, 57, 58, 10**6]
    steps += [2**35 - 1, 2**35, 2**35 + 1, 2**39, 2**40 - 1, 2**40, 2**40 + 1, 2**41]
    check_schedules(cases, steps, jit64=True)


def test_sequential_and_chained_take_any_schedule_and_are_jittable():
    halving = lambda count: 0.5 ** jnp.asarray(count, jnp.float32)  # noqa: E731
    joined = sched.sequential_schedule([sched.constant_lr_schedule(1.0, 0.5, 2), halving], [3])
    got = jax.jit(jax.vmap(joined))(jnp.arange(6))
    np.testing.assert_allclose(got, [0.5, 0.5, 1.0, 1.0, 0.5, 0.25])
    chained = sched.chained_schedule([halving, sched.linear_lr_schedule(1.0, 0.0, 1.0, 4)], 1.0)
    got = jax.jit(chained)(jnp.arange(6))
    np.testing.assert_allclose(got, 0.5 ** np.arange(6) * np.minimum(np.arange(6) / 4, 1.0))
    zero = sched.chained_schedule([sched.linear_lr_schedule(0.0), sched.constant_lr_schedule(0.0)], 0.0)
    assert np.all(np.asarray(zero(np.arange(10))) == 0.0)


def test_huge_counts_are_finite():
    schedules = [sched.polynomial_lr_schedule(LR, 20, 2.0), sched.linear_lr_schedule(LR, 0.1, 1.0, 30),
                 sched.constant_lr_schedule(LR, 0.25, 17)]  # fmt: skip
    schedules += [sched.sequential_schedule(schedules, [10, 2**31 - 1]), sched.chained_schedule(schedules, LR)]
    for schedule in schedules:
        for count in (2**31 - 2, 2**31 - 1, 2**62, 2**64 + 1, 10**40):
            value = float(schedule(count))
            assert math.isfinite(value) and value >= 0.0
    # After their transitions the twins hold their last value exactly.
    assert float(schedules[0](10**40)) == 0.0
    assert float(schedules[1](10**40)) == pytest.approx(LR)
    assert float(schedules[2](10**40)) == pytest.approx(LR)


def test_signatures_mirror_torch():
    torch = pytest.importorskip("torch")
    lr_scheduler = torch.optim.lr_scheduler
    for ours, theirs in [
        (sched.polynomial_lr_schedule, lr_scheduler.PolynomialLR),
        (sched.linear_lr_schedule, lr_scheduler.LinearLR),
        (sched.constant_lr_schedule, lr_scheduler.ConstantLR),
    ]:
        mine = list(inspect.signature(ours).parameters.values())
        torch_params = [p for p in inspect.signature(theirs).parameters.values() if p.name != "last_epoch"]
        assert mine[0].name == "base_lr" and torch_params[0].name == "optimizer"
        assert [(p.name, p.default) for p in mine[1:]] == [(p.name, p.default) for p in torch_params[1:]]


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: sched.polynomial_lr_schedule(-0.1), ValueError, "base_lr"),
        (lambda: sched.polynomial_lr_schedule(0.1, 0), ValueError, "total_iters"),
        (lambda: sched.polynomial_lr_schedule(0.1, 5, -1.0), ValueError, "power"),
        (lambda: sched.polynomial_lr_schedule(0.1, 5.0), TypeError, "total_iters"),
        (lambda: sched.linear_lr_schedule(float("nan")), ValueError, "base_lr"),
        (lambda: sched.linear_lr_schedule(0.1, start_factor=-0.5), ValueError, "start_factor"),
        (lambda: sched.linear_lr_schedule(0.1, end_factor=float("inf")), ValueError, "end_factor"),
        (lambda: sched.linear_lr_schedule(0.1, total_iters=0), ValueError, "total_iters"),
        (lambda: sched.constant_lr_schedule(0.1, factor=-1.0), ValueError, "factor"),
        (lambda: sched.constant_lr_schedule(0.1, total_iters=0), ValueError, "total_iters"),
        (lambda: sched.sequential_schedule([], []), ValueError, "schedules"),
        (lambda: sched.sequential_schedule([sched.constant_lr_schedule(0.1)], [3]), ValueError, "milestones"),
        (lambda: sched.sequential_schedule([abs, 0.5], [3]), TypeError, r"schedules\[1\]"),
        (lambda: sched.sequential_schedule([abs, abs, abs], [5, 3]), ValueError, "non-decreasing"),
        (lambda: sched.sequential_schedule([abs, abs], [-1]), ValueError, r"milestones\[0\]"),
        (lambda: sched.sequential_schedule([abs, abs], [2.5]), TypeError, r"milestones\[0\]"),
        (lambda: sched.chained_schedule([], 0.1), ValueError, "schedules"),
        (lambda: sched.chained_schedule([abs, "x"], 0.1), TypeError, r"schedules\[1\]"),
        (lambda: sched.chained_schedule([abs], -0.1), ValueError, "base_lr"),
    ],
)
def test_invalid_arguments_name_the_argument(build, error, match):
    with pytest.raises(error, match=match):
        build()
