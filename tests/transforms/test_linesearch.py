"""The zoom and backtracking line searches and value_and_grad_from_state against Optax and NumPy.

torch has no stand-alone line search (its strong-Wolfe search lives inside torch.optim.LBFGS and
is compared there, in tests/optimizers/test_lbfgs.py), so these are checked against Optax step by
step and against an Armijo search written in NumPy (reference_wrappers.ref_backtracking_run).
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference_wrappers as refw

from optcompose._base import apply_updates, chain
from optcompose._hyperparams import get_hyperparams
from optcompose.optimizers._classic import sgd
from optcompose.transforms._linesearch import (
    BacktrackingLinesearchInfo,
    ScaleByBacktrackingLinesearchState,
    ScaleByZoomLinesearchState,
    ZoomLinesearchInfo,
    scale_by_backtracking_linesearch,
    scale_by_zoom_linesearch,
    value_and_grad_from_state,
)

STEPS = 20
RNG = np.random.default_rng(0)
XS = jnp.asarray(RNG.normal(size=(STEPS, 3)), jnp.float32)
YS = jnp.asarray(RNG.normal(size=(STEPS,)), jnp.float32)


def loss(params, x, y):
    """A stochastic least-squares objective plus a quartic term (so the search has work to do)."""
    return 0.5 * (x @ params - y) ** 2 + 0.25 * jnp.sum(params**4)


def run(opt, apply, x0):
    """``STEPS`` jitted updates on ``loss`` with a new (x, y) batch each step (extra args for value_fn)."""

    def step(carry, batch):
        params, state = carry
        x, y = batch
        value, grad = jax.value_and_grad(loss)(params, x, y)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss, x=x, y=y)
        return (apply(params, updates), state), (params, state)

    (_, final), (trajectory, states) = jax.jit(lambda c: jax.lax.scan(step, c, (XS, YS)))((x0, opt.init(x0)))
    return trajectory, states, final


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


def test_signatures_and_state_fields_match_optax():
    for ours, theirs in [
        (scale_by_zoom_linesearch, optax.scale_by_zoom_linesearch),
        (scale_by_backtracking_linesearch, optax.scale_by_backtracking_linesearch),
        (value_and_grad_from_state, optax.value_and_grad_from_state),
    ]:
        a, b = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
        assert [(n, p.kind, p.default) for n, p in a.items()] == [(n, p.kind, p.default) for n, p in b.items()]
    assert ScaleByZoomLinesearchState._fields == (*optax.ScaleByZoomLinesearchState._fields, "hyperparams")
    assert ScaleByBacktrackingLinesearchState._fields == (
        *optax.ScaleByBacktrackingLinesearchState._fields, "hyperparams")  # fmt: skip
    assert ZoomLinesearchInfo._fields == optax.ZoomLinesearchInfo._fields
    from optax._src.linesearch import BacktrackingLinesearchInfo as TheirInfo

    assert BacktrackingLinesearchInfo._fields == TheirInfo._fields


@pytest.mark.parametrize("kind", ["zoom", "backtracking"])
def test_matches_optax_for_20_stochastic_steps(kind):
    if kind == "zoom":
        kwargs = {"max_learning_rate": 4.0, "approx_dec_rtol": None}  # the default approx test: test_lbfgs.py
        ours = chain(sgd(1.0), scale_by_zoom_linesearch(15, **kwargs))
        theirs = optax.chain(optax.sgd(1.0), optax.scale_by_zoom_linesearch(15, **kwargs))
    else:
        kwargs = {"decrease_factor": 0.5, "increase_factor": 2.0}
        ours = chain(sgd(1.0), scale_by_backtracking_linesearch(15, **kwargs))
        theirs = optax.chain(optax.sgd(1.0), optax.scale_by_backtracking_linesearch(15, **kwargs))
    x0 = jnp.array([1.5, -1.0, 0.5], jnp.float32)
    xs, states, _ = run(ours, apply_updates, x0)
    ys, their_states, _ = run(theirs, optax.apply_updates, x0)
    assert rel(xs, ys) <= 1e-6
    assert rel(states[-1].learning_rate, their_states[-1].learning_rate) <= 1e-6
    np.testing.assert_array_equal(states[-1].info.num_linesearch_steps, their_states[-1].info.num_linesearch_steps)
    assert float(np.std(np.asarray(states[-1].learning_rate))) > 0  # the step size does vary


def test_backtracking_matches_numpy_armijo_in_float64():
    A = np.array([[4.0, 1.0], [1.0, 0.5]])
    with jax.enable_x64(True):
        fun = lambda p: 0.5 * p @ jnp.asarray(A) @ p + jnp.sum(jnp.cos(p))
        opt = chain(sgd(0.9), scale_by_backtracking_linesearch(10, store_grad=True))
        vg = value_and_grad_from_state(fun)

        def step(carry, _):
            p, s = carry
            value, grad = vg(p, state=s)
            u, s = opt.update(grad, s, p, value=value, grad=grad, value_fn=fun)
            return (apply_updates(p, u), s), (apply_updates(p, u), s[-1].learning_rate)

        x0 = jnp.array([2.0, -3.0])
        _, (xs, etas) = jax.jit(lambda c: jax.lax.scan(step, c, None, length=STEPS))((x0, opt.init(x0)))
    fun_np = lambda p: 0.5 * p @ A @ p + np.sum(np.cos(p))
    grad_np = lambda p: A @ p - np.sin(p)
    want_x, want_eta = refw.ref_backtracking_run(fun_np, grad_np, np.array([2.0, -3.0]), STEPS, 0.9, 10)
    np.testing.assert_allclose(np.asarray(etas), want_eta, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(xs), np.stack(want_x), rtol=1e-10, atol=1e-13)


def test_value_and_grad_from_state_reuses_the_search():
    """After the first step the stored value and gradient are returned without calling value_fn."""
    calls = []

    def fun(p):
        calls.append(1)  # counted at trace time: one trace per path that evaluates fun
        return jnp.sum(p**2)

    for search in (scale_by_zoom_linesearch(10), scale_by_backtracking_linesearch(10, store_grad=True)):
        opt = chain(sgd(1.0), search)
        vg = value_and_grad_from_state(fun)

        @jax.jit
        def two_steps(p, opt=opt, vg=vg):
            state = opt.init(p)
            value0, grad0 = vg(p, state=state)  # inf stored: computed
            updates, state = opt.update(grad0, state, p, value=value0, grad=grad0, value_fn=fun)
            p = apply_updates(p, updates)
            value, grad = vg(p, state=state)  # the search's own evaluation
            return grad0, p, value, grad, state

        grad0, p, value, grad, state = two_steps(jnp.array([1.0, 0.5, -0.25]))
        np.testing.assert_allclose(grad0, 2 * jnp.array([1.0, 0.5, -0.25]))
        np.testing.assert_allclose(float(value), float(jnp.sum(p**2)), rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(grad, 2 * p, rtol=1e-6, atol=1e-12)
        assert float(value) == float(state[-1].value)
    p = jnp.ones(3)
    with pytest.raises(ValueError, match="store_grad=True"):
        opt = chain(sgd(1.0), scale_by_backtracking_linesearch(10))
        value_and_grad_from_state(fun)(p, state=opt.init(p))
    with pytest.raises(ValueError, match="exactly one"):
        value_and_grad_from_state(fun)(p, state=sgd(1.0).init(p))
    with pytest.raises(TypeError, match="value_fn"):
        value_and_grad_from_state(3.0)


def test_failure_modes_match_optax():
    """Not a descent direction, an objective that is inf past a point, too small a maximal step,
    too few iterations: the same step sizes and diagnostics as Optax."""
    fun = lambda p: jnp.where(jnp.sum(p) > 2.5, jnp.inf, jnp.sum((p - 1.0) ** 2) + jnp.sum(p**4))
    p = jnp.array([0.5, -0.25], jnp.float32)
    value, grad = jax.value_and_grad(fun)(p)
    cases = {
        "ascent": (dict(max_linesearch_steps=10), grad),
        "inf": (dict(max_linesearch_steps=10), -10.0 * grad),
        "small_max": (dict(max_linesearch_steps=10, max_learning_rate=1e-3), -grad),
        "few_steps": (dict(max_linesearch_steps=2, curv_rtol=1e-3), -grad),
    }

    def both(kwargs, direction):
        out = []
        for make in (scale_by_zoom_linesearch, optax.scale_by_zoom_linesearch):
            ls = make(**kwargs)
            u, s = ls.update(direction, ls.init(p), p, value=value, grad=grad, value_fn=fun)
            out.append((u, s.learning_rate, s.value, s.info))
        return out

    results = jax.jit(lambda: {k: both(*v) for k, v in cases.items()})()
    for name, (ours, theirs) in results.items():
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
            np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-6, err_msg=name)
    assert float(results["inf"][0][1]) < 0.25  # backed off out of the inf region
    assert np.isfinite(float(results["inf"][0][2]))


def test_backtracking_edge_cases_match_optax():
    fun = lambda p: jnp.where(jnp.sum(p) > 2.5, jnp.nan, jnp.sum(p**2))
    p = jnp.array([1.0, 1.0], jnp.float32)
    value, grad = jax.value_and_grad(fun)(p)

    def both():
        out = []
        for make in (scale_by_backtracking_linesearch, optax.scale_by_backtracking_linesearch):
            for kwargs, direction in [
                ({"max_backtracking_steps": 5}, grad),
                ({"max_backtracking_steps": 0}, -grad),
                ({"max_backtracking_steps": 4, "atol": 0.5, "rtol": 0.1}, -grad),
            ]:
                ls = make(**kwargs)
                u, s = ls.update(direction, ls.init(p), p, value=value, grad=grad, value_fn=fun)
                out.append((u, s.learning_rate, s.value, s.info))
        return out[:3], out[3:]

    ours, theirs = jax.jit(both)()
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-6)
    assert float(ours[0][1]) == 0.0  # every trial point NaN: no step


def test_dtypes_are_stable_and_bfloat16_searches_in_float32():
    fun = lambda p: jnp.sum(p.astype(jnp.float32) ** 2)
    searches = (scale_by_zoom_linesearch(5), scale_by_backtracking_linesearch(5, store_grad=True))

    @jax.jit
    def all_cases():
        out = []
        for dtype in (jnp.bfloat16, jnp.float32):
            p = jnp.array([1.0, -2.0], dtype)
            for ls in searches:
                state = ls.init(p)
                value, grad = jax.value_and_grad(fun)(p)
                u, new = ls.update(-grad, state, p, value=value, grad=grad, value_fn=fun)
                out.append((p, u, state, new))
        return out

    for p, u, state, new in all_cases():
        assert u.dtype == p.dtype
        assert jax.tree.map(lambda x: x.dtype, new) == jax.tree.map(lambda x: x.dtype, state)
        assert state.learning_rate.dtype == jnp.float32
        assert float(fun(apply_updates(p, u))) < 0.5 * float(fun(p))


def test_complex_params_match_optax():
    """Complex params with Optax's convention (grad = conj of jax.grad): the same steps as Optax."""
    fun = lambda z: jnp.sum(jnp.abs(z - (1 + 2j)) ** 2) + jnp.sum(jnp.abs(z) ** 4)
    z = jnp.array([0.5 - 1j, 2 + 0.5j], jnp.complex64)

    def both():
        out = []
        for make, zero in ((scale_by_zoom_linesearch, sgd), (optax.scale_by_zoom_linesearch, optax.sgd)):
            opt = (chain if make is scale_by_zoom_linesearch else optax.chain)(zero(0.5), make(10))
            p, state = z, opt.init(z)
            for _ in range(3):
                value, grad = jax.value_and_grad(fun)(p)
                grad = jnp.conj(grad)
                u, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=fun)
                p = p + u
            out.append((p, state[-1].learning_rate))
        return out

    ours, theirs = jax.jit(both)()
    assert ours[0].dtype == jnp.complex64
    assert rel(np.abs(ours[0] - theirs[0]) + np.abs(theirs[0]), np.abs(theirs[0])) <= 1e-6
    assert float(fun(ours[0])) < float(fun(z))


def test_value_fn_arguments_are_checked():
    ls = scale_by_zoom_linesearch(5)
    p = jnp.ones(3)
    value, grad = jax.value_and_grad(loss)(p, XS[0], YS[0])
    with pytest.raises(TypeError, match=r"\['z'\]"):
        ls.update(-grad, ls.init(p), p, value=value, grad=grad, value_fn=loss, x=XS[0], y=YS[0], z=1.0)
    with pytest.raises(TypeError, match="value_fn"):
        ls.update(-grad, ls.init(p), p, value=value, grad=grad)
    # A value_fn taking **kwargs receives them all.
    bt = scale_by_backtracking_linesearch(3)
    u, _ = bt.update(-grad, bt.init(p), p, value=value, grad=grad, value_fn=lambda q, **kw: loss(q, **kw),
                     x=XS[0], y=YS[0])  # fmt: skip
    assert u.shape == (3,)


def test_verbose_reports_a_failure(capfd):
    ls = scale_by_zoom_linesearch(3, verbose=True)
    p = jnp.array([1.0])
    fun = lambda q: jnp.sum(q**2)
    ls.update(jnp.array([1.0]), ls.init(p), p, value=fun(p), grad=2 * p, value_fn=fun)  # ascent direction
    jax.effects_barrier()
    assert "no step satisfying both Wolfe conditions" in capfd.readouterr().out


def test_hyperparams_are_data_and_bad_arguments_name_the_argument():
    p = jnp.ones(2)
    state = scale_by_backtracking_linesearch(7, decrease_factor=0.5).init(p)
    assert float(get_hyperparams(state)["decrease_factor"]) == 0.5
    assert float(get_hyperparams(state)["max_backtracking_steps"]) == 7
    for make, kwargs, name in [
        (scale_by_zoom_linesearch, {"max_linesearch_steps": -1}, "max_linesearch_steps"),
        (scale_by_zoom_linesearch, {"max_linesearch_steps": 2.5}, "max_linesearch_steps"),
        (
            scale_by_zoom_linesearch,
            {"max_linesearch_steps": 5, "initial_guess_strategy": "two"},
            "initial_guess_strategy",
        ),
        (scale_by_zoom_linesearch, {"max_linesearch_steps": 5, "slope_rtol": 1.5}, "slope_rtol"),
        (scale_by_zoom_linesearch, {"max_linesearch_steps": 5, "max_learning_rate": 0.0}, "max_learning_rate"),
        (scale_by_backtracking_linesearch, {"max_backtracking_steps": 5, "decrease_factor": 1.2}, "decrease_factor"),
        (scale_by_backtracking_linesearch, {"max_backtracking_steps": 5, "increase_factor": -1.0}, "increase_factor"),
        (scale_by_backtracking_linesearch, {"max_backtracking_steps": 5, "atol": -1.0}, "atol"),
    ]:
        with pytest.raises((ValueError, TypeError), match=name):
            make(**kwargs)
