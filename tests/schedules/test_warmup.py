"""warmup_stable_decay_schedule and inverse_sqrt_schedule: NumPy references, PyTorch, huge counts."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from schedules_reference import check_schedules, compare

import optcompose.schedules as sched


def ref_wsd(t, peak, warmup, stable, decay, init=0.0, end=0.0, decay_type="linear"):
    """Hägele et al. (2024): ramp, plateau, cool-down; float64 from the formula."""
    t = np.asarray(t, np.int64).astype(np.float64)
    ramp = init + (peak - init) * t / max(warmup, 1)
    s = t - warmup - stable
    x = np.clip(s, 0, decay) / decay if decay else (s >= 0).astype(np.float64)
    if decay_type == "linear":
        cool = peak + (end - peak) * x
    elif decay_type == "cosine":
        cool = end + (peak - end) * 0.5 * (1 + np.cos(np.pi * x))
    else:
        cool = peak - (peak - end) * np.sqrt(x)
    return np.where(t < warmup, ramp, cool)


def ref_inverse_sqrt(t, peak, warmup):
    t = np.asarray(t, np.int64).astype(np.float64)
    with np.errstate(divide="ignore"):
        return peak * np.minimum(t / warmup, np.sqrt(warmup / t))


WSD_CASES = [
    # peak, warmup, stable, decay, init, end, decay_type
    (1.0, 10, 50, 20, 0.0, 0.0, "linear"),
    (3e-4, 100, 700, 200, 1e-6, 3e-5, "cosine"),
    (2.0, 5, 10, 40, 0.5, 0.01, "1-sqrt"),
    (1.0, 0, 7, 3, 0.0, 0.1, "1-sqrt"),  # no warm-up
    (1.0, 4, 0, 0, 0.2, 0.05, "linear"),  # no plateau, no cool-down: a drop at step 4
    (0.5, 3, 2**40, 10, 0.0, 0.0, "cosine"),  # a plateau longer than int32
    (1.0, 2**33, 20, 2**35, 0.0, 0.1, "1-sqrt"),  # a warm-up and a cool-down longer than int32
]


def test_wsd_matches_numpy_reference():
    cases, steps = [], [0, 1, 2, 10**7]
    for peak, warmup, stable, decay, init, end, kind in WSD_CASES:
        label = f"wsd_{kind}{(peak, warmup, stable, decay, init, end)}"
        schedule = sched.warmup_stable_decay_schedule(peak, warmup, stable, decay, init, end, kind)
        cases.append((label, schedule, lambda t, a=(peak, warmup, stable, decay, init, end, kind): ref_wsd(t, *a)))
        for knot in (warmup, warmup + stable, warmup + stable + decay):
            steps += [knot + d for d in (-2, -1, 0, 1, 2)]
        steps += [warmup + stable + decay // 2, warmup + stable + decay // 3]
    check_schedules(cases, steps, jit64=True)


def test_wsd_keywords_defaults_and_ends():
    schedule = sched.warmup_stable_decay_schedule(peak_value=1.0, warmup_steps=4, stable_steps=6, decay_steps=10)
    got = np.asarray(schedule(np.arange(25)))
    np.testing.assert_allclose(got[:5], [0.0, 0.25, 0.5, 0.75, 1.0])
    assert np.all(got[4:11] == 1.0)  # the plateau is exactly the peak, through the cool-down's start
    np.testing.assert_allclose(got[10:21], np.linspace(1.0, 0.0, 11), atol=1e-7)
    assert np.all(got[20:] == 0.0)
    # The 1-sqrt cool-down ends exactly at end_value and is exact near it (no cancellation).
    one_minus_sqrt = sched.warmup_stable_decay_schedule(1.0, 0, 0, 10**6, end_value=0.25, decay_type="1-sqrt")
    near_end = float(one_minus_sqrt(10**6 - 1))
    want = 1.0 - 0.75 * math.sqrt(1 - 1e-6)
    assert near_end == pytest.approx(want, rel=1e-6)
    assert float(one_minus_sqrt(10**6)) == 0.25


def _torch_lrs(torch, build, lr, steps):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = build(optimizer)
        lrs = []
        for _ in range(steps):
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
    return np.asarray(lrs)


def test_wsd_matches_torch_sequential_and_lambda():
    torch = pytest.importorskip("torch")
    lr_sched = torch.optim.lr_scheduler
    peak, warmup, stable, decay, init, end = 0.4, 8, 20, 25, 0.04, 0.01
    steps = 80  # warm-up, plateau, cool-down, then 27 steps at the end value
    decay_begin = warmup + stable

    def linear(opt):
        return lr_sched.SequentialLR(
            opt,
            [
                lr_sched.LinearLR(opt, init / peak, 1.0, warmup),
                lr_sched.ConstantLR(opt, 1.0, stable),
                lr_sched.LinearLR(opt, 1.0, end / peak, decay),
            ],
            milestones=[warmup, decay_begin],
        )

    def cosine(opt):
        return lr_sched.SequentialLR(
            opt,
            [
                lr_sched.LinearLR(opt, init / peak, 1.0, warmup),
                lr_sched.ConstantLR(opt, 1.0, stable),
                lr_sched.CosineAnnealingLR(opt, T_max=decay, eta_min=end),
                lr_sched.LambdaLR(opt, lambda _: end / peak),
            ],
            milestones=[warmup, decay_begin, decay_begin + decay],
        )

    def one_minus_sqrt_factor(t):
        if t < warmup:
            return (init + (peak - init) * t / warmup) / peak
        x = min(max(t - decay_begin, 0), decay) / decay
        return 1.0 - (1.0 - end / peak) * math.sqrt(x)

    builders = {
        "linear": linear,
        "cosine": cosine,
        "1-sqrt": lambda opt: lr_sched.LambdaLR(opt, one_minus_sqrt_factor),
    }
    ours, expected = [], []
    for kind, build in builders.items():
        expected.append(_torch_lrs(torch, build, peak, steps))
        ours.append(sched.warmup_stable_decay_schedule(peak, warmup, stable, decay, init, end, kind))
    compare(ours, expected, steps, rtol=1e-6, atol=1e-12)


INVERSE_SQRT_CASES = [(1.0, 1), (5e-4, 4000), (2.0, 7), (1.0, 2**33)]


def test_inverse_sqrt_matches_numpy_reference():
    cases, steps = [], [0, 1, 2, 3, 100, 10**6, 10**9]
    for peak, warmup in INVERSE_SQRT_CASES:
        cases.append(
            (
                f"inverse_sqrt{(peak, warmup)}",
                sched.inverse_sqrt_schedule(peak, warmup),
                lambda t, a=(peak, warmup): ref_inverse_sqrt(t, *a),
            )
        )
        steps += [warmup - 1, warmup, warmup + 1, 4 * warmup, 100 * warmup]
    check_schedules(cases, steps, jit64=True)


def test_inverse_sqrt_matches_torch_lambda_and_the_transformer():
    torch = pytest.importorskip("torch")
    peak, warmup, steps = 0.01, 10, 120

    def factor(t):
        return min(t / warmup, (warmup / t) ** 0.5) if t > 0 else 0.0

    expected = _torch_lrs(torch, lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, factor), peak, steps)
    schedule = sched.inverse_sqrt_schedule(peak, warmup)
    compare([schedule], [expected], steps, rtol=1e-6, atol=0)
    assert float(schedule(0)) == 0.0 and float(schedule(warmup)) == pytest.approx(peak, rel=1e-7)
    # Vaswani et al. (2017), eq. 3, at update n = t: d_model**-0.5 * min(n**-0.5, n * W**-1.5).
    d_model, n = 512, np.arange(1, 200)
    transformer = d_model**-0.5 * np.minimum(n**-0.5, n * 4000.0**-1.5)
    vaswani = sched.inverse_sqrt_schedule((d_model * 4000) ** -0.5, 4000)
    np.testing.assert_allclose(np.asarray(vaswani(n)), transformer, rtol=1e-6)


def test_huge_counts_are_finite_and_monotone_at_the_end():
    counts = [2**31 - 2, 2**31 - 1, 2**62, 2**64 + 5, 10**30]
    wsd = sched.warmup_stable_decay_schedule(1.0, 10, 10, 10, end_value=0.125, decay_type="1-sqrt")
    inv = sched.inverse_sqrt_schedule(1.0, 100)
    for count in counts:
        assert float(wsd(count)) == 0.125
        value = float(inv(count))
        assert math.isfinite(value) and 0 < value <= math.sqrt(100 / (2**31 - 1)) * (1 + 1e-6)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: sched.warmup_stable_decay_schedule(float("nan"), 1, 1, 1), "peak_value"),
        (lambda: sched.warmup_stable_decay_schedule(1.0, -1, 1, 1), "warmup_steps"),
        (lambda: sched.warmup_stable_decay_schedule(1.0, 1, -1, 1), "stable_steps"),
        (lambda: sched.warmup_stable_decay_schedule(1.0, 1, 1, -3), "decay_steps"),
        (lambda: sched.warmup_stable_decay_schedule(1.0, 1, 1, 1, init_value=float("inf")), "init_value"),
        (lambda: sched.warmup_stable_decay_schedule(1.0, 1, 1, 1, end_value=float("nan")), "end_value"),
        (lambda: sched.warmup_stable_decay_schedule(1.0, 1, 1, 1, decay_type="sqrt"), "decay_type"),
        (lambda: sched.inverse_sqrt_schedule(1.0, 0), "warmup_steps"),
        (lambda: sched.inverse_sqrt_schedule(float("inf"), 10), "peak_value"),
    ],
)
def test_invalid_arguments_name_the_argument(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_non_integer_steps_are_type_errors():
    with pytest.raises(TypeError, match="stable_steps"):
        sched.warmup_stable_decay_schedule(1.0, 10, 5.0, 10)
    with pytest.raises(TypeError, match="warmup_steps"):
        sched.inverse_sqrt_schedule(1.0, 10.5)
