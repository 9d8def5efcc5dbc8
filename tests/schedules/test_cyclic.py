"""cyclic_schedule: PyTorch's CyclicLR (lr and momentum, three modes), NumPy reference, huge counts."""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
import pytest
from schedules_reference import check_schedules, compare

import optcompose.schedules as sched

CASES = [
    # base_lr, max_lr, step_size_up, step_size_down, mode, gamma
    (0.001, 0.1, 10, None, "triangular", 1.0),
    (0.001, 0.1, 7, 13, "triangular2", 1.0),
    (0.01, 0.5, 5, 9, "exp_range", 0.99),
    (0.002, 0.02, 8, 0, "triangular", 1.0),  # a saw-tooth: no falling half
    (0.1, 1.0, 3, 4, "exp_range", 1.001),  # gamma > 1: the cycle grows
]
MOMENTA = (0.85, 0.95)


def ref_cyclic(t, base_lr, max_lr, up, down, mode, gamma, base_m=0.8, max_m=0.9):
    """Smith (2017) from the formulas: cycle number, position, triangle, amplitude scale."""
    t = np.asarray(t, np.int64)
    down = up if down is None else down
    length = up + down
    cycle = 1 + t // length  # PyTorch's 1-based cycle number
    x = (t % length) / length
    ratio = up / length
    triangle = np.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1) if ratio < 1 else 0.0)
    if mode == "triangular":
        scale = np.ones(t.shape)
    elif mode == "triangular2":
        scale = np.exp2(1.0 - cycle.astype(np.float64))
    else:
        with np.errstate(over="ignore"):
            scale = np.minimum(np.power(gamma, t.astype(np.float64)), 1e38 if gamma > 1 else np.inf)
    with np.errstate(over="ignore", invalid="ignore"):
        lr = base_lr + (max_lr - base_lr) * triangle * scale
        momentum = max_m - (max_m - base_m) * triangle * scale
    return lr, momentum


def _build(case, momenta=MOMENTA):
    base_lr, max_lr, up, down, mode, gamma = case
    return sched.cyclic_schedule(
        base_lr, max_lr, up, down, mode, gamma, base_momentum=momenta[0], max_momentum=momenta[1]
    )


def test_matches_numpy_reference():
    cases, steps = [], [0, 1, 2, 10**5]
    for case in CASES:
        schedules = _build(case)
        for index, name in enumerate(schedules._fields):
            cases.append(
                (
                    f"cyclic_{case[4]}{case}.{name}",
                    schedules[index],
                    lambda t, c=case, i=index: np.clip(ref_cyclic(t, *c, *MOMENTA)[i], -3.4e38, 3.4e38),
                )
            )
        up = case[2]
        length = up + (up if case[3] is None else case[3])
        for k in range(4):
            steps += [k * length + d for d in (-1, 0, 1, up - 1, up, up + 1)]
    # gamma > 1 is compared below its saturation; the last case is checked separately below.
    finite_cases = [c for c in cases if "1.001" not in c[0]]
    check_schedules(finite_cases, steps, jit64=True)


def _torch_cyclic(case, steps, optimizer_name="SGD", momenta=MOMENTA):
    torch = pytest.importorskip("torch")
    base_lr, max_lr, up, down, mode, gamma = case
    param = torch.nn.Parameter(torch.zeros(1))
    if optimizer_name == "SGD":
        optimizer = torch.optim.SGD([param], lr=1.0, momentum=0.5)
    else:
        optimizer = torch.optim.Adam([param], lr=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = torch.optim.lr_scheduler.CyclicLR(
            optimizer, base_lr, max_lr, step_size_up=up, step_size_down=down, mode=mode, gamma=gamma,
            cycle_momentum=True, base_momentum=momenta[0], max_momentum=momenta[1],
        )  # fmt: skip
        lrs, momentum = [], []
        for _ in range(steps):
            group = optimizer.param_groups[0]
            lrs.append(group["lr"])
            momentum.append(group["momentum"] if optimizer_name == "SGD" else group["betas"][0])
            optimizer.step()
            scheduler.step()
    return np.asarray(lrs), np.asarray(momentum)


def test_matches_torch_cyclic_lr_for_three_cycles_and_more():
    runs = [(case, "SGD") for case in CASES] + [((0.001, 0.1, 6, None, "triangular2", 1.0), "Adam")]
    for case, optimizer_name in runs:
        length = case[2] + (case[2] if case[3] is None else case[3])
        steps = 4 * length + 3  # four full cycles and the start of a fifth
        lrs, momenta = _torch_cyclic(case, steps, optimizer_name)
        compare(list(_build(case)), [lrs, momenta], steps, rtol=1e-6, atol=1e-12)


def test_defaults_are_torch_defaults():
    torch = pytest.importorskip("torch")
    ours = inspect.signature(sched.cyclic_schedule).parameters
    theirs = inspect.signature(torch.optim.lr_scheduler.CyclicLR).parameters
    for name in ("step_size_up", "step_size_down", "mode", "gamma", "base_momentum", "max_momentum"):
        assert ours[name].default == theirs[name].default, name
    schedules = sched.cyclic_schedule(0.1, 1.0)
    assert isinstance(schedules, sched.CyclicSchedules)
    assert float(schedules.learning_rate(2000)) == pytest.approx(1.0)
    assert float(schedules.momentum(2000)) == pytest.approx(0.8)
    assert float(schedules.learning_rate(4000)) == pytest.approx(0.1)
    assert float(schedules.momentum(4000)) == pytest.approx(0.9)


def test_huge_counts_stay_finite():
    counts = np.asarray([2**31 - 2, 2**31 - 1, 2**62])  # int64: saturated at the int32 maximum
    for case in CASES:
        for schedule in _build(case):
            assert np.all(np.isfinite(np.asarray(schedule(counts)))), case
            assert math.isfinite(float(schedule(10**25))), case  # beyond int64
    grow = _build((0.1, 1.0, 3, 4, "exp_range", 1.5))
    top = float(np.finfo(np.float32).max)
    assert float(grow.learning_rate(2**31 - 2)) <= top
    # Half-cycles longer than any int32 count: rising, or (past a short rise) falling, exactly.
    long_up = sched.cyclic_schedule(0.01, 0.1, 2**40)
    assert float(long_up.learning_rate(2**31 - 1)) == pytest.approx(0.01 + 0.09 * (2**31 - 1) / 2**40, rel=1e-6)
    long_down = sched.cyclic_schedule(0.01, 0.1, 4, 2**40, mode="triangular2")
    got = np.asarray(long_down.learning_rate(np.asarray([2, 4, 5, 2**31 - 1])))
    want = 0.01 + 0.09 * np.asarray([0.5, 1.0, 1 - 1 / 2**40, 1 - (2**31 - 5) / 2**40])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    fractional = np.asarray(long_down.learning_rate(np.asarray([2.0, 4.0, 2.0**31])))
    np.testing.assert_allclose(fractional, 0.01 + 0.09 * np.asarray([0.5, 1.0, 1 - (2**31 - 4) / 2**40]), rtol=1e-6)
    # triangular2 halves the amplitude every cycle: after 2**31 steps only base_lr is left.
    halving = _build(CASES[1])
    assert float(halving.learning_rate(2**31 - 1)) == pytest.approx(0.001)
    assert float(halving.momentum(2**31 - 1)) == pytest.approx(MOMENTA[1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_lr": -0.1}, "base_lr"),
        ({"max_lr": float("nan")}, "max_lr"),
        ({"step_size_up": 0}, "step_size_up"),
        ({"step_size_down": -1}, "step_size_down"),
        ({"mode": "cosine"}, "mode"),
        ({"gamma": 0.0}, "gamma"),
        ({"base_momentum": 1.5}, "base_momentum"),
        ({"max_momentum": -0.1}, "max_momentum"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, match):
    arguments = {"base_lr": 0.01, "max_lr": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        sched.cyclic_schedule(**arguments)


def test_non_integer_step_sizes_are_type_errors():
    with pytest.raises(TypeError, match="step_size_up"):
        sched.cyclic_schedule(0.01, 0.1, 10.5)
    with pytest.raises(TypeError, match="step_size_down"):
        sched.cyclic_schedule(0.01, 0.1, 10, 2.5)
