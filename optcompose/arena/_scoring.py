"""Scoring: time to target, trial selection, performance profiles and speedups (AlgoPerf's method).

Notation: submissions ``s`` in ``S``, workloads ``w`` in ``W`` (``n = |W|``), and ``t_{s,w}`` the
time (or steps) submission ``s`` needs to reach workload ``w``'s validation target, ``inf`` if it
does not reach it within the budget.

Per workload
    In the tuned ruleset each study (one per seed) selects its fastest trial (:func:`select_trial`);
    ``t_{s,w}`` is the *median* over studies of the selected trials' times, so a submission that
    reaches the target in fewer than half its studies has ``t = inf`` (AlgoPerf). Spreads are
    reported as the min and max over studies.

Performance ratio (Dolan & More 2002)
    ``r_{s,w} = t_{s,w} / min_{s'} t_{s',w}``, in ``[1, inf]``; ``inf`` where ``s`` did not reach the
    target, and for everyone on a workload nobody reached.

Performance profile
    ``rho_s(tau) = |{w : r_{s,w} <= tau}| / n``: the fraction of workloads on which ``s`` is within a
    factor ``tau`` of the fastest. Non-decreasing, from ``rho_s(1)`` (the fraction it wins, ties
    included) to the fraction it reaches at all.

Benchmark score
    ``B_s = 1/(tau_max - 1) * integral_1^tau_max rho_s(tau) dtau``, ``tau_max = 4``, in ``[0, 1]``.
    Since ``rho_s`` is a step function, each workload contributes exactly
    ``max(0, tau_max - r_{s,w}) / (tau_max - 1) / n``: a ratio of 1 earns full credit, a ratio of 4
    or more (or a target not reached) earns nothing, so taking more than 4x the fastest is the
    same as not training at all (AlgoPerf's rule).

Speedup over the reference (AlgoPerf's alternative score)
    ``(prod_w t_{ref,w} / t_{s,w})^(1/n)``, the geometric mean over workloads. A target not reached
    would make a ratio 0 or infinite; here an unreached time is replaced by the run's budget (the
    time it spent without reaching), which credits a run that never reaches with a speedup of at
    most ``t_ref / budget`` and counts two runs that both miss as equal (ratio 1). The number of
    workloads both reached is reported beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

TAU_MAX = 4.0
INF = float("inf")


def _finite_or_inf(x: Any) -> float:
    if x is None:
        return INF
    x = float(x)
    return x if math.isfinite(x) else INF


def median_spread(values: Sequence[Any]) -> tuple[float, float, float]:
    """``(median, min, max)`` of ``values``, where ``None`` and NaN count as ``inf`` (not reached).

    The median of an even count is the mean of the middle two (so one of two seeds missing the
    target makes the median ``inf``).
    """
    x = np.array([_finite_or_inf(v) for v in values], dtype=np.float64)
    if x.size == 0:
        return INF, INF, INF
    x.sort()
    mid = x.size // 2
    median = x[mid] if x.size % 2 else 0.5 * (x[mid - 1] + x[mid])
    return float(median), float(x[0]), float(x[-1])


def select_trial(trials: Sequence[Any]) -> int | None:
    """The index of a study's selected trial (AlgoPerf: the fastest to the target).

    Order: trials that reached the target by fewest steps to target, then lowest final validation
    metric; if none reached, the lowest best validation metric; trials that crashed come last.
    Each trial needs ``steps_to_target`` (``None`` if not reached), ``final_valid``, ``best_valid``
    and ``error``. Returns ``None`` for an empty study.
    """
    if not trials:
        return None

    def key(i: int) -> tuple:
        t = trials[i]
        crashed = t.error is not None
        reached = t.steps_to_target is not None
        return (
            crashed,
            not reached,
            t.steps_to_target if reached else 0,
            _finite_or_inf(t.final_valid) if reached else _finite_or_inf(t.best_valid),
            i,
        )

    return min(range(len(trials)), key=key)


def performance_ratios(times: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """``r_{s,w} = t_{s,w} / min_s' t_{s',w}`` for ``times[s][w]`` (``None``/inf/NaN: not reached).

    Workloads missing from a submission's mapping count as not reached by it.
    """
    workloads = sorted({w for per in times.values() for w in per})
    best = {w: min((_finite_or_inf(per.get(w)) for per in times.values()), default=INF) for w in workloads}
    ratios: dict[str, dict[str, float]] = {}
    for s, per in times.items():
        ratios[s] = {}
        for w in workloads:
            t = _finite_or_inf(per.get(w))
            if not math.isfinite(best[w]) or not math.isfinite(t):
                ratios[s][w] = INF
            elif best[w] <= 0:
                ratios[s][w] = 1.0 if t <= 0 else INF
            else:
                ratios[s][w] = t / best[w]
    return ratios


def performance_profile(ratios: Mapping[str, float], taus: Sequence[float] | np.ndarray) -> np.ndarray:
    """``rho(tau) = |{w : r_w <= tau}| / n`` at each ``tau``, for one submission's ratios ``{w: r_w}``."""
    r = np.array([_finite_or_inf(v) for v in ratios.values()], dtype=np.float64)
    taus = np.asarray(taus, dtype=np.float64)
    if r.size == 0:
        return np.zeros_like(taus)
    return (r[None, :] <= taus[:, None]).mean(axis=1)


def profile_score(ratios: Mapping[str, float], tau_max: float = TAU_MAX) -> float:
    """The benchmark score ``1/(tau_max - 1) * integral_1^tau_max rho(tau) dtau`` (exact, see the module docstring)."""
    if not ratios:
        return 0.0
    credit = [max(0.0, tau_max - max(1.0, _finite_or_inf(r))) for r in ratios.values()]
    return float(sum(credit) / (len(credit) * (tau_max - 1.0)))


def scores(times: Mapping[str, Mapping[str, Any]], tau_max: float = TAU_MAX) -> dict[str, float]:
    """Every submission's benchmark score from ``times[s][w]``."""
    return {s: profile_score(r, tau_max) for s, r in performance_ratios(times).items()}


def geomean_speedup(
    times: Mapping[str, Any], reference: Mapping[str, Any], budgets: Mapping[str, Any], ref_budgets: Mapping[str, Any]
) -> tuple[float | None, int]:
    """``(prod_w t_ref,w / t_w)^(1/n)`` over the workloads of ``reference``, and how many both reached.

    An unreached time (``None``/inf) is replaced by that run's budget (``budgets[w]``, resp.
    ``ref_budgets[w]``); a workload both missed counts as a ratio of 1. Returns ``(None, 0)`` when
    no workload has usable numbers.
    """
    logs, both = [], 0
    for w in reference:
        t, t_ref = _finite_or_inf(times.get(w)), _finite_or_inf(reference.get(w))
        if not math.isfinite(t) and not math.isfinite(t_ref):
            logs.append(0.0)  # both missed: a tie, whatever each run's budget cost
            continue
        both += math.isfinite(t) and math.isfinite(t_ref)
        t = t if math.isfinite(t) else _finite_or_inf(budgets.get(w))
        t_ref = t_ref if math.isfinite(t_ref) else _finite_or_inf(ref_budgets.get(w))
        if math.isfinite(t) and math.isfinite(t_ref) and t > 0 and t_ref > 0:
            logs.append(math.log(t_ref / t))
    if not logs:
        return None, 0
    return float(math.exp(sum(logs) / len(logs))), both
