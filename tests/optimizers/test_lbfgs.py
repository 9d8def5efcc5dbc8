"""lbfgs against Optax step by step (Rosenbrock, a quadratic), NumPy, torch.optim.LBFGS, edge values.

torch mapping (checked in ``test_matches_torch_without_linesearch``)::

    torch.optim.LBFGS(params, lr=1, max_iter=1, history_size=m, line_search_fn=None,
                      tolerance_grad=0, tolerance_change=0), one ``step(closure)`` per update
    == lbfgs(learning_rate=None, memory_size=m, linesearch=None)

as long as ``|g_0|_1 <= 1`` (torch scales the first step by ``min(1, 1/|g_0|_1)``, optcompose and
Optax by ``min(1, 1/|g_0|_2)``; both are 1 then) and every pair has ``<y, s> > 1e-10`` (torch drops
flatter pairs, optcompose only exactly flat ones). torch's ``line_search_fn='strong_wolfe'`` is its
own port of the Moré–Thuente-style search from minFunc (different interpolation and stopping
rules), so lbfgs with the zoom search is compared with Optax only, and with torch's strong-Wolfe
L-BFGS on where both converge.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference_wrappers as refw
import torch

from optcompose._base import apply_updates
from optcompose._hyperparams import get_hyperparams, set_hyperparams
from optcompose.optimizers._lbfgs import lbfgs
from optcompose.transforms._linesearch import (
    scale_by_backtracking_linesearch,
    scale_by_zoom_linesearch,
    value_and_grad_from_state,
)

STEPS = 20


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


A = np.array([[3.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 1.0]])
B = np.array([1.0, -0.5, 0.25])


def quadratic(p):
    x = p["x"]
    return 0.5 * x @ jnp.asarray(A, x.dtype) @ x - jnp.asarray(B, x.dtype) @ x + 0.5 * jnp.sum(p["y"] ** 2)


def _scan(opt, fun, steps, apply, vg):
    value_and_grad = vg(fun)

    def step(carry, _):
        x, state = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        x = apply(x, updates)
        return (x, state), x

    def scan(x0):
        (_, state), xs = jax.lax.scan(step, (x0, opt.init(x0)), None, length=steps)
        return xs, state

    return scan, step


_COMPILED: dict = {}


def run(opt, fun, x0, steps=STEPS, apply=apply_updates, vg=value_and_grad_from_state, jit=True, key=None):
    """``steps`` updates of ``opt`` on ``fun`` (one lax.scan); the params after each step and the state.

    ``key`` names the (opt, fun, steps) combination so that tests sharing it share one compilation.
    """
    scan, step = _scan(opt, fun, steps, apply, vg)
    if not jit:  # nothing compiled as a whole: every loop a Python loop, every op dispatched on its own
        with jax.disable_jit():
            carry, xs = (x0, opt.init(x0)), []
            for _ in range(steps):
                carry, x = step(carry, None)
                xs.append(x)
            return jax.tree.map(lambda *a: jnp.stack(a), *xs), carry[1]
    if key is None:
        return jax.jit(scan)(x0)
    if key not in _COMPILED:
        _COMPILED[key] = jax.jit(scan)
    return _COMPILED[key](x0)


def max_rel(a, b):
    a = np.concatenate([np.ravel(np.asarray(x, np.complex128)) for x in jax.tree.leaves(a)])
    b = np.concatenate([np.ravel(np.asarray(x, np.complex128)) for x in jax.tree.leaves(b)])
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


def test_signature_matches_optax():
    ours, theirs = inspect.signature(lbfgs), inspect.signature(optax.lbfgs)
    assert list(ours.parameters) == list(theirs.parameters)
    for name, p in ours.parameters.items():
        q = theirs.parameters[name]
        assert p.kind == q.kind, name
        if name != "linesearch":  # a transform instance on both sides
            assert p.default == q.default, name
    default = ours.parameters["linesearch"].default
    assert type(default).__name__ == "ZoomLinesearch"
    assert int(default.spec.constants["max_linesearch_steps"]) == 20 and default.initial_guess_strategy == "one"


def optax_run(opt, fun, x0, steps=STEPS, key=None, vg=optax.value_and_grad_from_state):
    return run(opt, fun, x0, steps, apply=optax.apply_updates, vg=vg, key=key and ("optax", *key))


ROSENBROCK_X0 = jnp.array([-1.2, 1.0], jnp.float32)


def test_matches_optax_on_rosenbrock():
    """Default lbfgs (zoom search), 20 steps from (-1.2, 1): every iterate equal to Optax's (float32)."""
    xs, state = run(lbfgs(), rosenbrock, ROSENBROCK_X0, key=("default", "rosenbrock"))
    ys, their_state = optax_run(optax.lbfgs(), rosenbrock, ROSENBROCK_X0, key=("default", "rosenbrock"))
    assert max_rel(xs, ys) <= 1e-6
    assert max_rel(state[-1].value, their_state[-1].value) <= 1e-6
    assert int(state[-1].info.num_linesearch_steps) == int(their_state[-1].info.num_linesearch_steps)
    assert float(rosenbrock(xs[-1])) < 0.05 * float(rosenbrock(ROSENBROCK_X0))


def test_backtracking_matches_optax_on_a_quadratic_pytree():
    """lbfgs with a backtracking search (store_grad) on a quadratic over a dict of leaves."""
    ours = lbfgs(memory_size=4, linesearch=scale_by_backtracking_linesearch(20, store_grad=True))
    theirs = optax.lbfgs(memory_size=4, linesearch=optax.scale_by_backtracking_linesearch(20, store_grad=True))
    x0 = {"x": jnp.array([1.0, -2.0, 0.5], jnp.float32), "y": jnp.array([[0.3, -0.1]], jnp.float32)}
    xs, _ = run(ours, quadratic, x0)
    ys, _ = optax_run(theirs, quadratic, x0)
    assert max_rel(xs, ys) <= 1e-6
    # float32 resolves the value only to ~1e-8 of f: the iterate stalls within ~1e-5 of the minimiser.
    np.testing.assert_allclose(np.asarray(xs["x"][-1]), np.linalg.solve(A, B), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["zoom_quadratic", "zoom_keep_rosenbrock", "backtracking_rosenbrock"])
def test_more_linesearches_match_optax(variant):
    if variant == "zoom_quadratic":
        pair, fun = (lbfgs(memory_size=4), optax.lbfgs(memory_size=4)), quadratic
        x0 = {"x": jnp.array([1.0, -2.0, 0.5], jnp.float32), "y": jnp.array([[0.3, -0.1]], jnp.float32)}
    elif variant == "zoom_keep_rosenbrock":
        kwargs = {"initial_guess_strategy": "keep", "max_learning_rate": 2.0}
        pair = (lbfgs(linesearch=scale_by_zoom_linesearch(15, **kwargs)),
                optax.lbfgs(linesearch=optax.scale_by_zoom_linesearch(15, **kwargs)))  # fmt: skip
        fun, x0 = rosenbrock, ROSENBROCK_X0
    else:
        pair = (lbfgs(linesearch=scale_by_backtracking_linesearch(20, store_grad=True)),
                optax.lbfgs(linesearch=optax.scale_by_backtracking_linesearch(20, store_grad=True)))  # fmt: skip
        fun, x0 = rosenbrock, ROSENBROCK_X0
    xs, _ = run(pair[0], fun, x0)
    ys, _ = optax_run(pair[1], fun, x0)
    assert max_rel(xs, ys) <= 1e-6


def test_float64_matches_optax_to_1e12_and_torch_strong_wolfe():
    """float64: 40 steps equal to Optax's to 1e-12; the end point is torch.optim.LBFGS's (strong Wolfe
    search, run to its tolerances) to 1e-4 and (1, 1) to 1e-9."""
    w = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = 100 * (w[1] - w[0] ** 2) ** 2 + (1 - w[0]) ** 2
        loss.backward()
        return loss

    opt.step(closure)
    with jax.enable_x64(True):
        x0 = jnp.array([-1.2, 1.0], jnp.float64)
        xs, state = run(lbfgs(memory_size=5), rosenbrock, x0, steps=40)
        ys, _ = optax_run(optax.lbfgs(memory_size=5), rosenbrock, x0, steps=40)
        assert xs.dtype == jnp.float64 and state[-1].learning_rate.dtype == jnp.float64
        assert max_rel(xs, ys) <= 1e-12
    np.testing.assert_allclose(np.asarray(xs[-1]), w.detach().numpy(), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(xs[-1]), [1.0, 1.0], rtol=1e-9)


def _value_and_grad_only(f):
    return lambda x, state: jax.value_and_grad(f)(x)


def test_learning_rate_and_no_linesearch_match_optax():
    x0 = {"x": jnp.array([0.2, -0.1, 0.05], jnp.float32), "y": jnp.array([[0.1, 0.2]], jnp.float32)}
    for kwargs in ({"learning_rate": 0.5, "linesearch": None},):  # scale_init_precond=False: row scale_by_lbfgs_*
        xs, _ = run(lbfgs(**kwargs), quadratic, x0, vg=_value_and_grad_only)
        ys, _ = optax_run(optax.lbfgs(**kwargs), quadratic, x0, vg=_value_and_grad_only)
        assert max_rel(xs, ys) <= 1e-6, kwargs


def test_matches_numpy_reference_without_linesearch():
    """x_{k+1} = x_k - H_k g_k, H_k from the two-loop recursion in float64 NumPy."""
    x0 = np.array([0.2, -0.1, 0.05])
    grad = lambda x: A @ x - B
    expected = refw.ref_lbfgs_no_linesearch(grad, x0, STEPS, memory_size=3)
    with jax.enable_x64(True):
        fun = lambda x: 0.5 * x @ jnp.asarray(A) @ x - jnp.asarray(B) @ x
        xs, _ = run(lbfgs(memory_size=3, linesearch=None), fun, jnp.asarray(x0),
                    vg=_value_and_grad_only)  # fmt: skip
        np.testing.assert_allclose(np.asarray(xs), np.stack(expected), rtol=1e-10, atol=1e-13)


def test_matches_torch_without_linesearch():
    """torch.optim.LBFGS(lr=1, max_iter=1, history_size=3, line_search_fn=None), float64 (see module doc)."""
    x0 = np.array([0.3, -0.3, 0.3])  # |g_0|_1 = 0.43 <= 1
    w = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=1, history_size=3, tolerance_grad=0.0, tolerance_change=0.0)
    a, b = torch.tensor(A), torch.tensor(B)

    def closure():
        opt.zero_grad()
        loss = 0.5 * w @ a @ w - b @ w
        loss.backward()
        return loss

    expected = []
    for _ in range(8):  # past ~8 steps <y, s> falls below torch's 1e-10 and it drops pairs
        opt.step(closure)
        expected.append(w.detach().numpy().copy())
    with jax.enable_x64(True):
        fun = lambda x: 0.5 * x @ jnp.asarray(A) @ x - jnp.asarray(B) @ x
        xs, _ = run(lbfgs(memory_size=3, linesearch=None), fun, jnp.asarray(x0), steps=8,
                    vg=_value_and_grad_only)  # fmt: skip
    assert max_rel(xs, np.stack(expected)) <= 1e-10


@pytest.mark.slow
def test_complex_params_match_optax_and_the_real_problem():
    """Complex params with grad = conj(jax.grad(f)) (Optax's convention) match Optax step by step."""
    mat = jnp.array([[1, -2], [3, 4], [-4 + 2j, 5 - 3j], [-2 - 2j, 6]], jnp.complex64)
    fun = lambda z: jnp.sum(jnp.abs(mat @ z) ** 1.5)
    conj_vg = lambda vg_from_state: lambda f: (
        lambda x, state: jax.tree.map(jnp.conj, vg_from_state(f)(x, state=state)))  # fmt: skip
    z0 = jnp.array([1 - 1j, 0 + 1j], jnp.complex64)
    xs, _ = run(lbfgs(), fun, z0, vg=conj_vg(value_and_grad_from_state))
    ys, _ = run(optax.lbfgs(), fun, z0, apply=optax.apply_updates, vg=conj_vg(optax.value_and_grad_from_state))
    assert xs.dtype == jnp.complex64
    assert max_rel(xs, ys) <= 1e-5
    assert float(fun(xs[-1])) < 1e-3 * float(fun(z0))


@pytest.mark.slow
def test_bfloat16_params_keep_their_dtype_and_descend():
    x0 = ROSENBROCK_X0.astype(jnp.bfloat16)
    xs, state = run(lbfgs(), rosenbrock, x0, steps=10)
    assert xs.dtype == jnp.bfloat16
    assert state[0].diff_params_memory.dtype == jnp.bfloat16
    assert state[2].learning_rate.dtype == jnp.float32  # the search runs in float32
    values = [float(rosenbrock(x.astype(jnp.float32))) for x in xs]
    assert np.all(np.isfinite(values)) and values[-1] < 0.2 * float(rosenbrock(ROSENBROCK_X0))


@pytest.mark.slow
def test_eager_equals_jit():
    """Under jax.disable_jit (Python loops, op by op): two steps of the default lbfgs equal the
    jitted scan's first two."""
    jitted, _ = run(lbfgs(), rosenbrock, ROSENBROCK_X0, key=("default", "rosenbrock"))
    eager, _ = run(lbfgs(), rosenbrock, ROSENBROCK_X0, steps=2, jit=False)
    np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted[:2]), rtol=1e-6)


def scaled(p, scale):
    return jnp.sum(jnp.square(p / scale - 1.0))


def test_edge_values():
    """At the minimum (zero gradient): no movement, finite state. Gradients of size 1e30 and 1e-30:
    finite iterates, updates and search results, values not rising (the search's diagnostics may be
    inf when no finite trial point exists)."""
    xs, state = run(lbfgs(), rosenbrock, jnp.ones(2, jnp.float32), key=("default", "rosenbrock"))
    np.testing.assert_array_equal(np.asarray(xs), np.ones((STEPS, 2)))
    assert all(np.all(np.isfinite(np.asarray(leaf, np.float64))) for leaf in jax.tree.leaves(state))
    opt = lbfgs()
    value_and_grad = value_and_grad_from_state(scaled)

    def steps(carry, scale):  # the scale is data (a value_fn argument): one compilation for both sizes
        def step(carry, _):
            x, st = carry
            value, grad = value_and_grad(x, state=st, scale=scale)
            u, st = opt.update(grad, st, x, value=value, grad=grad, value_fn=scaled, scale=scale)
            return (apply_updates(x, u), st), None

        return jax.lax.scan(step, carry, None, length=4)[0]

    run_steps = jax.jit(steps)
    for size in (1e30, 1e-30):
        x0 = jnp.array([0.5 * size, 2 * size], jnp.float32)
        scale = jnp.float32(size)
        x_end, st = run_steps((x0, opt.init(x0)), scale)
        assert np.all(np.isfinite(np.asarray(x_end))), size
        search = st[2]
        assert all(np.all(np.isfinite(np.asarray(x))) for x in (search.learning_rate, search.value, search.grad))
        assert float(scaled(x_end, scale)) <= float(scaled(x0, scale)), size


def test_hyperparams_are_data():
    opt = lbfgs(learning_rate=0.5, linesearch=scale_by_zoom_linesearch(10, max_learning_rate=1.0))
    state = opt.init(jnp.zeros(2))
    found = get_hyperparams(state)
    assert float(found["learning_rate"]) == 0.5 and float(found["max_learning_rate"]) == 1.0
    assert float(found["max_linesearch_steps"]) == 10
    new = set_hyperparams(state, learning_rate=0.25, curv_rtol=0.5)
    assert jax.tree.structure(new) == jax.tree.structure(state)
    assert float(get_hyperparams(new)["curv_rtol"]) == 0.5


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="memory_size"):
        lbfgs(memory_size=0)
    with pytest.raises(ValueError, match="learning_rate"):
        lbfgs(learning_rate=-1.0)
    with pytest.raises(TypeError, match="linesearch"):
        lbfgs(linesearch="zoom")
    opt = lbfgs()
    state = opt.init(jnp.zeros(2))
    with pytest.raises(TypeError, match="value_fn"):  # the line search's arguments are required
        opt.transforms[-1].update(jnp.zeros(2), state[-1], jnp.zeros(2))
    with pytest.raises(ValueError, match="params"):
        opt.update(jnp.zeros(2), state, None, value=0.0, grad=jnp.zeros(2), value_fn=rosenbrock)
