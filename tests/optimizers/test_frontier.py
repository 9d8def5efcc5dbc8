"""The frontier rows (tests/rows/frontier.py) against their NumPy references and Optax twins, 20 steps.

MARS, LaProp, cautious and the low-precision wrapper are not in Optax; each row's ``optax`` twin is
built from Optax's pieces (``adamw``, ``lion``, ``scale_by_rms`` + ``ema``) plus the few jnp lines
of the paper that Optax lacks. Also: MARS against ``torch.optim.AdamW``, float64 parity under x64,
eager mode, hyperparameters as data.

torch mapping (``test_mars_matches_torch_adamw_on_corrected_gradients``)::

    mars(lr, b1, b2, eps, weight_decay, gamma)
    == torch.optim.AdamW(params, lr, betas=(b1, b2), eps=eps, weight_decay=weight_decay) stepped with
       p.grad = Clip(g_t + gamma * b1 / (1 - b1) * (g_t - g_{t-1}), 1)   (per tensor, g_0 = 0)

which is the authors' MARS-AdamW (AGI-Arena/MARS) for tensors of any rank with ``optimize_1d=True``.
torch has no LaProp and no cautious optimizer.
"""

from __future__ import annotations

import cases
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import trajectory as tr
from rows.frontier import optax_laprop, optax_mars_correction

from optcompose._base import apply_updates
from optcompose._hyperparams import get_hyperparams, set_hyperparams
from optcompose.optimizers._frontier import laprop, mars

ROWS = [c for c in cases.CASES if c.name.startswith(("mars", "laprop", "cautious", "kahan"))]
QUICK = ("mars_wd_mask_gamma", "laprop", "cautious_adamw", "kahan_adamw_low_precision")
FAST = [c for c in ROWS if c.name in QUICK]
WITH_OPTAX = [c for c in ROWS if c.optax is not None]
FAST_OPTAX = [c for c in FAST if c.optax is not None]
SLOW = pytest.mark.slow


def _split(rows, fast):
    """Every row, the ones outside ``fast`` marked slow (the cross-cutting table tests run them all)."""
    return [pytest.param(c, id=c.name, marks=() if c in fast else SLOW) for c in rows]


def test_the_rows_are_there():
    assert len(ROWS) == 13


@pytest.mark.parametrize("case", _split(ROWS, FAST))
def test_matches_reference_jit(case):
    tr.check_case(case, "jit", FAST if case in FAST else [case])


@pytest.mark.parametrize("case", _split(WITH_OPTAX, FAST_OPTAX))
def test_matches_optax_twin_step_by_step(case):
    table = FAST_OPTAX if case in FAST_OPTAX else [case]
    ours, _ = tr.result(table, case, "jit")
    twin, _ = tr.result(table, case, "jit", side="optax")
    tr.assert_trajectories_close(ours, twin, label=f"{case.name} vs optax ")


@pytest.mark.slow
def test_matches_optax_twin_on_complex_parameters_all_rows():
    complex_rows = [c for c in WITH_OPTAX if c.complex_ok and not c.low_precision]
    ours = tr.run_cases(complex_rows, "jit", kind="complex")
    twin = tr.run_cases(complex_rows, "jit", side="optax", kind="complex")
    for case in complex_rows:
        tr.assert_trajectories_close(ours[case.name][0], twin[case.name][0], label=f"{case.name} complex ")


@pytest.mark.slow
def test_eager_matches_reference():
    picked = [cases.CASES_BY_NAME[n] for n in ("mars",)]
    for case in picked:
        eager, _ = tr.run_trajectory(case.make(), *tr.problem(False), mode="eager")
        tr.assert_trajectory_close(eager, tr.reference_of(case), label=f"{case.name} eager ")


def _run(tx, params, grad_fn, steps=20):
    def step(carry, _):
        p, s = carry
        u, s = tx.update(grad_fn(p), s, p)
        p = apply_updates(p, u)
        return (p, s), p

    return jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), None, length=steps)[1])(params)


def _x64_problem():
    rng = np.random.default_rng(0)
    params = {"a": jnp.asarray(rng.normal(size=(3, 4))), "b": jnp.asarray(rng.normal(size=(5,)))}
    target = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), params)
    return params, lambda p: jax.tree.map(lambda w, c: 3.0 * (w - c) * jnp.sin(w), p, target)


@pytest.mark.parametrize("name", ["mars", "laprop"])
def test_float64_matches_optax_to_1e12(name):
    with jax.enable_x64(True):
        params, grad_fn = _x64_problem()
        assert params["a"].dtype == jnp.float64
        if name == "mars":
            ours = mars(0.01, 0.9, 0.99, 1e-8, weight_decay=0.1, gamma=0.3)
            twin = optax.chain(optax_mars_correction(0.9, 0.3), optax.adamw(0.01, 0.9, 0.99, 1e-8, weight_decay=0.1))
        else:
            ours = laprop(0.01, 0.8, 0.99, 1e-8, weight_decay=0.1)
            twin = optax_laprop(0.01, 0.8, 0.99, 1e-8, 0.1)
        got, want = _run(ours, params, grad_fn), _run(twin, params, grad_fn)
        for k in params:
            np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), rtol=1e-12, atol=1e-14)


def test_mars_matches_torch_adamw_on_corrected_gradients():
    lr, b1, b2, eps, wd, gamma = 0.01, 0.9, 0.99, 1e-8, 0.1, 0.3
    params, grad_fn = _x64_problem()
    params = jax.tree.map(lambda x: x.astype(jnp.float32), params)
    got = _run(mars(lr, b1, b2, eps, wd, gamma), params, grad_fn)
    tensors = {k: torch.tensor(np.asarray(v), requires_grad=True) for k, v in params.items()}
    opt = torch.optim.AdamW(list(tensors.values()), lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    last = {k: torch.zeros_like(v) for k, v in tensors.items()}
    worst = 0.0
    for t in range(20):
        grads = grad_fn({k: jnp.asarray(v.detach().numpy()) for k, v in tensors.items()})
        for k, p in tensors.items():
            g = torch.tensor(np.asarray(grads[k]))
            c = g + gamma * b1 / (1 - b1) * (g - last[k])
            norm = torch.linalg.vector_norm(c)
            p.grad = c / norm if norm > 1 else c
            last[k] = g
        opt.step()
        for k, p in tensors.items():
            want, mine = p.detach().numpy(), np.asarray(got[k][t])
            np.testing.assert_allclose(mine, want, rtol=2e-5, atol=2e-6, err_msg=f"{k} at step {t + 1}")
            worst = max(worst, float(np.max(np.abs(mine - want) / np.maximum(np.abs(want), 1e-3))))
    assert worst < 2e-5


def test_hyperparameters_are_data():
    params = {"w": jnp.ones((3,))}
    state = mars(0.1).init(params)
    found = get_hyperparams(state)
    assert float(found["gamma"]) == pytest.approx(0.025) and float(found["learning_rate"]) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="shared by several parts"):
        set_hyperparams(state, b1=0.5)
    state = set_hyperparams(state, gamma=0.0, learning_rate=0.5)
    assert float(get_hyperparams(state)["gamma"]) == 0.0
    assert float(get_hyperparams(laprop(0.1).init(params))["eps"]) == pytest.approx(1e-15)


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: mars(-1.0), "learning_rate"),
        (lambda: mars(0.1, b1=1.0), "b1"),
        (lambda: mars(0.1, b2=1.5), "b2"),
        (lambda: mars(0.1, gamma=-0.1), "gamma"),
        (lambda: mars(0.1, max_norm=0.0), "max_norm"),
        (lambda: mars(0.1, eps=float("nan")), "eps"),
        (lambda: laprop(-0.1), "learning_rate"),
        (lambda: laprop(0.1, b1=-0.1), "b1"),
        (lambda: laprop(0.1, eps=-1.0), "eps"),
        (lambda: laprop(0.1, weight_decay=-1.0), "weight_decay"),
    ],
)
def test_bad_arguments_name_the_argument(build, name):
    with pytest.raises((ValueError, TypeError), match=name):
        build()


def test_complex_parameters_match_optax_twins():
    from rows.frontier import optax_cautious

    from optcompose.optimizers._classic import adamw
    from optcompose.transforms._cautious import cautious

    rng = np.random.default_rng(3)
    params = {"a": jnp.asarray(rng.normal(size=(3, 4)) + 1j * rng.normal(size=(3, 4)), jnp.complex64)}
    target = jnp.asarray(rng.normal(size=(3, 4)) + 1j * rng.normal(size=(3, 4)), jnp.complex64)

    def grad_fn(p):
        return {"a": (p["a"] - target) * (1.5 + jnp.cos(jnp.abs(p["a"])))}

    pairs = [
        (mars(0.05, 0.9, 0.99, 1e-3, gamma=0.3),
         optax.chain(optax_mars_correction(0.9, 0.3), optax.adamw(0.05, 0.9, 0.99, 1e-3, weight_decay=0.0))),
        (laprop(0.05, 0.875, 0.9921875, 1e-3), optax_laprop(0.05, 0.875, 0.9921875, 1e-3)),
        (cautious(adamw(0.05, 0.875, 0.9921875, 1e-3)), optax_cautious(optax.adamw(0.05, 0.875, 0.9921875, 1e-3))),
    ]  # fmt: skip
    for ours, twin in pairs:
        got, want = _run(ours, params, grad_fn), _run(twin, params, grad_fn)
        assert got["a"].dtype == jnp.complex64
        np.testing.assert_allclose(np.asarray(got["a"]), np.asarray(want["a"]), rtol=2e-5, atol=2e-6)
