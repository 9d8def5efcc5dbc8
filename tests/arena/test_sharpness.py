"""Sharpness: power iteration and the box measure on functions whose answers are known."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optcompose.arena import _sharpness as sh
from optcompose.arena import _sweep as sw
from optcompose.arena import _workloads as wl

A = jnp.array([1.0, 5.0, 2.0, 0.5])


def quad(params):
    return 0.5 * jnp.sum(A * params["x"] ** 2) + 0.25 * jnp.sum(params["y"] ** 2)


def test_hvp_is_the_hessian_times_v():
    p = {"x": jnp.ones(4), "y": jnp.ones(2)}
    v = {"x": jnp.arange(4.0), "y": jnp.array([1.0, -1.0])}
    hv = jax.jit(lambda p, v: sh.hvp(quad, p, v))(p, v)
    np.testing.assert_allclose(hv["x"], A * v["x"])
    np.testing.assert_allclose(hv["y"], 0.5 * v["y"])


def test_power_iteration_finds_the_top_eigenvalue():
    p = {"x": jnp.zeros(4), "y": jnp.zeros(2)}
    v0, _ = sh.probe_vectors(p)
    top = jax.jit(lambda p, v: sh.top_hessian_eigenvalue(quad, p, v, iterations=40))(p, v0)
    assert float(top) == pytest.approx(5.0, rel=1e-4)


def test_box_sharpness_of_a_quadratic_and_a_linear_function():
    rho = 1e-2
    p = {"x": jnp.zeros(4), "y": jnp.zeros(2)}
    _, corners = sh.probe_vectors(p)
    # At the minimum every corner z = +-rho gives the same increase: sum_i 1/2 a_i rho^2.
    expected = 0.5 * float(jnp.sum(A)) * rho**2 + 0.25 * 2 * rho**2
    got = jax.jit(lambda p, c: sh.box_sharpness(quad, p, c, rho=rho))(p, corners)
    assert float(got) == pytest.approx(expected, rel=1e-4)
    # For a linear function the adversarial corner is the exact maximiser: sum_i |g_i| rho (|theta_i| + 1).
    g = {"x": jnp.array([1.0, -2.0, 0.5, 0.0]), "y": jnp.array([3.0, -1.0])}
    lin = lambda q: sum(jnp.vdot(g[k], q[k]) for k in q)
    q = {"x": jnp.array([0.0, 1.0, -2.0, 3.0]), "y": jnp.array([0.5, 0.0])}
    exact = sum(float(jnp.sum(jnp.abs(g[k]) * rho * (jnp.abs(q[k]) + 1))) for k in q)
    got = jax.jit(lambda p, c: sh.box_sharpness(lin, p, c, rho=rho))(q, sh.probe_vectors(q)[1])
    assert float(got) == pytest.approx(exact, rel=1e-4)


def test_measure_fills_every_finished_trial():
    w = dataclasses.replace(wl.WORKLOADS["ravine"], eval_every=10)
    results = sw.run_trials(w, lambda c, n: __import__("optcompose").sgd(**c), [({"learning_rate": 1e-3}, s)
                                                                                  for s in (0, 1)], 20)
    sw.measure_final(w, results.trials)
    for t in results.trials:
        assert set(t.final) == {"valid", "test", "objective", "sharpness", "box_sharpness"}
        assert t.final["valid"] == pytest.approx(t.valid[-1], rel=1e-5)
        # Rosenbrock's Hessian near the valley has a top eigenvalue in the hundreds.
        assert 100 < t.final["sharpness"] < 5000 and t.final["box_sharpness"] > 0
