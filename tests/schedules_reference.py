"""NumPy references for the schedules (float64, written from the formulas) and the shared checker.

No tests here: the ``tests/schedules/test_*.py`` modules import this one (a helper module, as
helpers.py). Every reference takes an int64 array of step counts (exact up to ``2**63 - 1``) and
returns float64 values; the comparisons go through helpers.py's comparator.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from helpers import assert_finite, assert_trees_close

I32_MAX = 2**31 - 1
I64_MAX = 2**63 - 1
# Counts every schedule is also checked at: the end of the int32 range, and far beyond it.
HUGE_32 = [I32_MAX - 1, I32_MAX]
HUGE_64 = [2**40 + 3, 2**62, I64_MAX]


def ref_linear(t, init, end, steps, begin=0):
    t = np.asarray(t, np.int64)
    if steps == 0:
        return np.full(t.shape, float(init))
    x = np.clip(t - begin, 0, steps) / steps
    return init + (end - init) * x


def ref_polynomial(t, init, end, power, steps, begin=0):
    t = np.asarray(t, np.int64)
    if steps == 0:
        return np.full(t.shape, float(init))
    x = np.clip(t - begin, 0, steps) / steps
    return end + (init - end) * (1.0 - x) ** power


def ref_exponential(t, init, steps, rate, begin=0, staircase=False, end=None):
    t = np.asarray(t, np.int64)
    since = np.maximum(t - begin, 0)
    k = (since // steps).astype(np.float64) if staircase else since / steps
    with np.errstate(over="ignore", under="ignore"):
        value = init * np.power(float(rate), k)
    if end is not None:
        value = np.maximum(value, end) if rate < 1 else np.minimum(value, end)
    return value


def ref_piecewise_constant(t, init, boundaries_and_scales):
    t = np.asarray(t, np.int64)
    value = np.full(t.shape, float(init))
    for boundary, scale in boundaries_and_scales.items():
        value = np.where(t >= boundary, value * scale, value)
    return value


def _half_cosine(x):
    return 0.5 * (1.0 + np.cos(np.pi * x))


def ref_cosine_decay(t, init, steps, alpha=0.0, exponent=1.0):
    t = np.asarray(t, np.int64)
    c = _half_cosine(np.minimum(t, steps) / steps) ** exponent
    return alpha * init + (1 - alpha) * init * c


def ref_warmup_cosine(t, init, peak, warmup, decay_steps, end=0.0, exponent=1.0):
    t = np.asarray(t, np.int64)
    ramp = init + (peak - init) * np.minimum(t, max(warmup, 1)) / max(warmup, 1)
    length = decay_steps - warmup
    c = _half_cosine(np.clip(t - warmup, 0, length) / length) ** exponent
    return np.where(t < warmup, ramp, end + (peak - end) * c)


def ref_join(t, references: Sequence[Callable], boundaries: Sequence[int]):
    t = np.asarray(t, np.int64)
    value = references[0](t)
    for boundary, reference in zip(boundaries, references[1:], strict=True):
        value = np.where(t >= boundary, reference(np.maximum(t - boundary, 0)), value)
    return value


def ref_sgdr(t, cycles):
    boundaries = list(np.cumsum([c["decay_steps"] for c in cycles])[:-1])
    references = [lambda s, c=c: ref_warmup_cosine(s, **_warmup_cosine_args(c)) for c in cycles]
    return ref_join(t, references, boundaries)


def _warmup_cosine_args(kwargs):
    args = dict(kwargs)
    return {
        "init": args.pop("init_value"),
        "peak": args.pop("peak_value"),
        "warmup": args.pop("warmup_steps"),
        "decay_steps": args.pop("decay_steps"),
        "end": args.pop("end_value", 0.0),
        "exponent": args.pop("exponent", 1.0),
    }


def ref_warm_restarts(t, init, first_period, period_mult=1, end=0.0):
    """Loshchilov & Hutter's SGDR with period T_i = T_0 * m**i, found by walking the periods."""

    def one(step: int) -> float:
        start, period = (step - step % first_period, first_period) if period_mult == 1 else (0, first_period)
        while step >= start + period:
            start, period = start + period, period * period_mult
        return end + (init - end) * _half_cosine((step - start) / period)

    unique, inverse = np.unique(np.asarray(t, np.int64), return_inverse=True)
    return np.array([one(int(step)) for step in unique])[inverse.ravel()]


def ref_piecewise_interpolate(t, knots, values, kind):
    """Anneals values[i] -> values[i + 1] over [knots[i], knots[i + 1]]; values[-1] after."""
    t = np.asarray(t, np.int64)
    value = np.full(t.shape, float(values[0]))
    for i in range(len(knots) - 1):
        a, b, va, vb = knots[i], knots[i + 1], values[i], values[i + 1]
        x = np.ones(t.shape) if b == a else np.clip(t - a, 0, b - a) / (b - a)
        weight = _half_cosine(x) if kind == "cos" else 1.0 - x
        value = np.where(t >= a, vb + (va - vb) * weight, value)
    return value


def ref_cosine_onecycle(t, steps, peak, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    start = peak / div_factor
    knots = [0, int(pct_start * steps), steps]
    return ref_piecewise_interpolate(t, knots, [start, peak, start / final_div_factor], "cos")


def ref_linear_onecycle(t, steps, peak, pct_start=0.3, pct_final=0.85, div_factor=25.0, final_div_factor=1e4):
    start = peak / div_factor
    knots = [0, int(pct_start * steps), int(pct_final * steps), steps]
    return ref_piecewise_interpolate(t, knots, [start, peak, start, start / final_div_factor], "linear")


def ref_one_cycle(
    t,
    total_steps,
    max_lr,
    pct_start=0.3,
    div_factor=25.0,
    final_div_factor=1e4,
    three_phase=False,
    anneal="cos",
    base_momentum=0.85,
    max_momentum=0.95,
):
    """PyTorch's documented OneCycleLR phases; returns (lr, momentum), held after total_steps - 1."""
    initial = max_lr / div_factor
    final = initial / final_div_factor
    if three_phase:
        phases = [
            (pct_start * total_steps - 1, initial, max_lr, max_momentum, base_momentum),
            (2 * pct_start * total_steps - 2, max_lr, initial, base_momentum, max_momentum),
            (total_steps - 1, initial, final, max_momentum, max_momentum),
        ]
    else:
        phases = [
            (pct_start * total_steps - 1, initial, max_lr, max_momentum, base_momentum),
            (total_steps - 1, max_lr, final, base_momentum, max_momentum),
        ]

    def annealed(a, b, x):
        if anneal == "cos":
            return b + (a - b) / 2 * (math.cos(math.pi * x) + 1)
        return a + (b - a) * x

    unique, inverse = np.unique(np.asarray(t, np.int64), return_inverse=True)
    lrs, momenta = [], []
    for step in unique:
        step = min(int(step), total_steps - 1)
        begin = 0.0
        for index, (end, lr_a, lr_b, m_a, m_b) in enumerate(phases):
            if step <= end or index == len(phases) - 1:
                x = (step - begin) / (end - begin)
                lrs.append(annealed(lr_a, lr_b, x))
                momenta.append(annealed(m_a, m_b, x))
                break
            begin = end
    return np.array(lrs)[inverse.ravel()], np.array(momenta)[inverse.ravel()]


def _assert_close(got, want, label, rtol, atol):
    """A schedule's float32 values against its float64 reference (finite, within rtol/atol)."""
    got = np.asarray(got)
    assert got.dtype == np.float32, f"{label}: dtype {got.dtype}, expected float32"
    assert_finite(got, f"{label}: ")
    assert_trees_close(got, np.broadcast_to(np.asarray(want, np.float64), got.shape), rtol=rtol, atol=atol,
                       check_dtype=False, label=label)


# Every eager evaluation uses arrays of this one length: eager JAX compiles each primitive once per
# shape and caches it, so one shape across the suite keeps the eager checks nearly free, while each
# jitted function costs a compilation. Hence: jit one schedule per kind, evaluate the rest eagerly.
EVAL_LENGTH = 1024


def _padded(steps: list[int]) -> list[int]:
    """Pads to :data:`EVAL_LENGTH` by repeating the last step."""
    assert len(steps) <= EVAL_LENGTH, f"at most {EVAL_LENGTH} steps per check, got {len(steps)}"
    return steps + steps[-1:] * (EVAL_LENGTH - len(steps))


Case = tuple[str, Callable, Callable]
"""(label, schedule, NumPy reference) for :func:`check_schedules`; labels read ``kind(arguments)``."""


def _kind(label: str) -> str:
    return re.sub(r"\(.*\)", "", label)


def check_schedules(cases: Sequence[Case], steps, *, rtol=2e-6, atol=1e-9, jit64=False):
    """Compares each schedule with its reference at ``steps`` plus huge counts, every way it is fed.

    * jitted: one ``jax.jit(jax.vmap(...))`` over int32 counts evaluating the first case of each
      kind (one compilation per call; configurations of a kind share their traced code paths);
    * without jit, every case: a NumPy int64 array, elementwise, including counts beyond int32
      (they saturate at ``2**31 - 1`` when x64 is off, so the reference is taken there), a JAX
      int32 array, a Python int (``2**62``) and a NumPy int64 scalar;
    * with ``jit64``, also the jitted function over true int64 counts under ``jax.enable_x64``
      (exact, no saturation), for the schedules whose integer paths differ.
    """
    steps = {int(s) for s in steps if s >= 0}
    steps32 = np.asarray(_padded(sorted({s for s in steps if s <= I32_MAX} | set(HUGE_32))), np.int64)
    steps64 = np.asarray(_padded(sorted(set(steps32.tolist()) | steps | set(HUGE_64))), np.int64)
    kinds: dict[str, Case] = {}
    for case in cases:
        kinds.setdefault(_kind(case[0]), case)
    traced = list(kinds.values())
    batched = jax.vmap(lambda count: tuple(schedule(count) for _, schedule, _ in traced))
    jitted32 = jax.jit(batched)(steps32.astype(np.int32))
    for (label, _, reference), got in zip(traced, jitted32, strict=True):
        _assert_close(got, reference(steps32), f"{label}: jit int32", rtol, atol)
    if jit64:
        with jax.enable_x64(True):
            jitted64 = jax.jit(batched)(steps64)
        for (label, _, reference), got in zip(traced, jitted64, strict=True):
            _assert_close(got, reference(steps64), f"{label}: jit int64 (x64)", rtol, atol)

    middle = len(steps) // 2
    top = np.asarray([I32_MAX])
    for label, schedule, reference in cases:
        want32 = reference(steps32)
        _assert_close(schedule(jnp.asarray(steps32, jnp.int32)), want32, f"{label}: int32 array", rtol, atol)
        want_saturated = reference(np.minimum(steps64, I32_MAX))
        _assert_close(schedule(steps64), want_saturated, f"{label}: numpy int64 array", rtol, atol)
        _assert_close(schedule(2**62), reference(top)[0], f"{label}: python int 2**62", rtol, atol)
        got = schedule(np.int64(steps32[middle]))
        _assert_close(got, want32[middle], f"{label}: np.int64 scalar", rtol, atol)


def check_schedule(schedule, reference, steps, **kwargs):
    """:func:`check_schedules` for a single schedule."""
    check_schedules([("schedule", schedule, reference)], steps, **kwargs)


def _evaluate(schedule: Callable, counts: jax.Array) -> np.ndarray:
    """Another library's schedule at ``counts``: elementwise where it can, else by a jitted ``vmap``
    (one compilation instead of one per eager primitive)."""
    try:
        return np.broadcast_to(schedule(counts), counts.shape)  # Optax's constant returns a scalar
    except TypeError:  # e.g. a Python comparison inside the schedule
        return np.asarray(jax.jit(jax.vmap(schedule))(counts))


def compare(ours: Sequence[Callable], theirs: Sequence[Callable | np.ndarray], length: int, **tolerances):
    """Our schedules against other schedules (or arrays of their values) at steps ``0 .. length-1``.

    Evaluated eagerly on one array of counts (jit is covered by :func:`check_schedules`).
    """
    tolerances = {"rtol": 1e-5, "atol": 1e-7, **tolerances}
    counts = jnp.arange(EVAL_LENGTH, dtype=jnp.int32)
    for index, (schedule, other) in enumerate(zip(ours, theirs, strict=True)):
        got = np.asarray(schedule(counts))[:length]
        want = _evaluate(other, counts) if callable(other) else np.asarray(other)
        assert got.dtype == np.float32, f"case {index}: dtype {got.dtype}"
        want = np.broadcast_to(np.asarray(want)[:length], got.shape)
        assert_trees_close(got, want, check_dtype=False, label=f"case {index}", **tolerances)
