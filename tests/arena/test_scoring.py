"""Scoring: hand-computed performance profiles, ties, unreached targets, ratio caps, selection, speedups."""

import math

import numpy as np
import pytest

from optcompose.arena import _scoring as sc

INF = math.inf


class T:
    """A stand-in trial for select_trial."""

    def __init__(self, steps=None, final=1.0, best=1.0, error=None):
        self.steps_to_target, self.final_valid, self.best_valid, self.error = steps, final, best, error


def test_ratios_and_scores_by_hand():
    times = {"A": {"w1": 10.0, "w2": 20.0}, "B": {"w1": 20.0, "w2": 10.0}, "C": {"w1": 40.0, "w2": None}}
    r = sc.performance_ratios(times)
    assert r["A"] == {"w1": 1.0, "w2": 2.0}
    assert r["B"] == {"w1": 2.0, "w2": 1.0}
    assert r["C"] == {"w1": 4.0, "w2": INF}
    s = sc.scores(times)
    # A: (4 - 1) + (4 - 2) = 5 over n (tau_max - 1) = 2 * 3.
    assert s["A"] == pytest.approx(5 / 6)
    assert s["B"] == pytest.approx(5 / 6)
    assert s["C"] == 0.0  # a ratio of exactly 4 earns nothing, nor does a miss


def test_profile_values_by_hand():
    ratios = {"w1": 1.0, "w2": 2.0, "w3": INF, "w4": 1.5}
    rho = sc.performance_profile(ratios, [1.0, 1.49, 1.5, 2.0, 3.9, 100.0])
    np.testing.assert_allclose(rho, [0.25, 0.25, 0.5, 0.75, 0.75, 0.75])


def test_ties_share_the_best_ratio():
    r = sc.performance_ratios({"A": {"w": 5.0}, "B": {"w": 5.0}, "C": {"w": 7.5}})
    assert r["A"]["w"] == r["B"]["w"] == 1.0
    assert r["C"]["w"] == pytest.approx(1.5)
    assert sc.profile_score(r["A"]) == 1.0
    assert sc.profile_score(r["C"]) == pytest.approx((4 - 1.5) / 3)


def test_never_reaching_and_nobody_reaching():
    times = {"A": {"w1": 3.0, "w2": None}, "B": {"w1": INF, "w2": float("nan")}}
    r = sc.performance_ratios(times)
    assert r["B"]["w1"] == INF
    assert r["A"]["w2"] == r["B"]["w2"] == INF  # nobody reached w2: no credit for anyone
    assert sc.profile_score(r["B"]) == 0.0
    assert sc.profile_score(r["A"]) == pytest.approx(0.5)


def test_ratio_cap_at_four():
    for ratio, credit in [(1.0, 1.0), (2.5, 0.5), (3.999, 0.001 / 3), (4.0, 0.0), (7.0, 0.0)]:
        assert sc.profile_score({"w": ratio}) == pytest.approx(credit, abs=1e-12)


def test_exact_score_matches_numerical_integral():
    rng = np.random.default_rng(0)
    ratios = {f"w{i}": float(x) for i, x in enumerate(np.concatenate([1 + 4 * rng.random(7), [INF, 1.0]]))}
    taus = np.linspace(1, 4, 300001)
    rho = sc.performance_profile(ratios, taus)
    numeric = np.sum(0.5 * (rho[1:] + rho[:-1]) * np.diff(taus)) / 3
    assert sc.profile_score(ratios) == pytest.approx(numeric, abs=1e-4)


def test_missing_workload_counts_as_unreached():
    r = sc.performance_ratios({"A": {"w1": 1.0, "w2": 1.0}, "B": {"w1": 2.0}})
    assert r["B"]["w2"] == INF


def test_median_spread():
    assert sc.median_spread([3, 1, 2]) == (2.0, 1.0, 3.0)
    assert sc.median_spread([1, None, 3]) == (3.0, 1.0, INF)  # one of three missed: median still finite
    assert sc.median_spread([1, None]) == (INF, 1.0, INF)  # one of two missed: median infinite
    assert sc.median_spread([1.0, 3.0]) == (2.0, 1.0, 3.0)
    assert sc.median_spread([]) == (INF, INF, INF)


def test_select_trial():
    study = [T(steps=200, final=0.1), T(steps=100, final=0.3), T(steps=100, final=0.2), T(steps=None, best=0.0)]
    assert sc.select_trial(study) == 2  # fewest steps, then the better final metric
    assert sc.select_trial([T(best=0.5), T(best=0.2), T(best=float("nan"))]) == 1  # none reached: best metric
    assert sc.select_trial([T(steps=10, error="boom"), T(steps=None, best=0.9)]) == 1  # crashes last
    assert sc.select_trial([]) is None


def test_geomean_speedup_with_budget_caps():
    ref = {"w1": 10.0, "w2": 10.0, "w3": None}
    mine = {"w1": 5.0, "w2": 20.0, "w3": None}
    budgets = {"w1": 100.0, "w2": 100.0, "w3": 50.0}
    g, both = sc.geomean_speedup(mine, ref, budgets, budgets)
    # w1: 2x, w2: 0.5x, w3: neither reached -> budget / budget = 1.
    assert g == pytest.approx(1.0)
    assert both == 2
    g, _ = sc.geomean_speedup({"w1": None}, {"w1": 10.0}, {"w1": 40.0}, {"w1": 40.0})
    assert g == pytest.approx(0.25)  # a miss counts as taking the whole budget
    g, both = sc.geomean_speedup({"w1": None}, {"w1": None}, {"w1": 1.0}, {"w1": 4.0})
    assert (g, both) == (1.0, 0)  # both missed: a tie, however cheap each step was
    assert sc.geomean_speedup({}, {}, {}, {}) == (None, 0)
