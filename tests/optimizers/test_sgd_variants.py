"""The SGD variants (optcompose/optimizers/_sgd_variants.py): noisy SGD, Fromage, Polyak SGD, optimistic GD, ASGD.

Rows of tests/rows/sign.py against their NumPy references and Optax 0.2.8 (20 steps, float32
rtol 1e-6; float64 rtol 1e-12). torch.optim has none of Optax's methods here; ASGD (not in Optax)
is checked against ``torch.optim.ASGD``, its parameters and averaged parameters ``ax`` at every step.
"""

from __future__ import annotations

import warnings

import adaptive_checks as ac
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import trajectory as tr

from optcompose._hyperparams import get_hyperparams
from optcompose.optimizers import _sgd_variants as sv
from optcompose.transforms._asgd import asgd_averaged_params
from optcompose.transforms._partition import partition

TABLE = ac.rows(
    "noisy_sgd", "fromage", "fromage_schedule", "polyak_sgd", "polyak_sgd_plus_schedule", "optimistic_gradient_descent",
    "asgd_schedule_weight_decay",
)  # fmt: skip


test_matches_reference, test_matches_optax = ac.module_tests(TABLE)


def test_asgd_averaged_params_match_the_reference():
    """The row's averaged parameters after 20 steps (averaging from step t0 + 2 = 7) against the
    reference's, which keeps ``ax`` as its leaf state."""
    case = ac.ALL_ROWS["asgd_schedule_weight_decay"]
    _, state = ac.run_table(TABLE)[case.name]
    params, noise = ac.small_problem()
    reference, w = case.reference(), tr.flatten(params)
    flat_noise, ref_state = tr.flatten(noise), None
    ref_state = reference.init(w)
    for t in range(tr.STEPS):
        g = {k: tr.ref_gradient(w[k], flat_noise[k][t]) for k in w}
        u, ref_state = reference.update(g, ref_state, w)
        w = {k: (np.asarray(w[k], np.float64) + np.asarray(u[k], np.float64)).astype(w[k].dtype) for k in w}
    ours = tr.flatten(asgd_averaged_params(state))
    assert set(ours) == set(ref_state[1])
    for k, expected in ref_state[1].items():
        np.testing.assert_allclose(ours[k], expected, rtol=1e-6, atol=1e-7, err_msg=k)
        assert np.max(np.abs(ours[k] - w[k])) > 1e-3, f"{k}: averaging did not start"


X64 = ac.rows("fromage", "polyak_sgd")


@pytest.mark.parametrize("case", X64, ids=[row.name for row in X64])
def test_float64_matches_optax(case):
    ac.check_x64(X64, case)


def test_complex_matches_optax():
    """Fromage's norms and Polyak's squared norm are of |g| (the same as Optax's arithmetic)."""
    for case in X64:
        ac.check_complex_optax(X64, case)


# ----------------------------------------------------------------------------------------------
# torch.optim.ASGD


def _torch():
    import torch

    return torch


TORCH = {
    "ASGD defaults": (lambda p: _torch().optim.ASGD(p), lambda: sv.asgd()),
    "ASGD lambd alpha t0 weight_decay": (
        lambda p: _torch().optim.ASGD(p, lr=0.05, lambd=0.5, alpha=0.75, t0=5, weight_decay=0.1),
        lambda: sv.asgd(0.05, lambd=0.5, alpha=0.75, t0=5, weight_decay=0.1),
    ),
}
"""Measured max |ours - torch| over the 20 steps, parameters and ``ax`` alike: 2.4e-7 for both."""


@pytest.mark.parametrize("name", list(TORCH))
def test_asgd_matches_torch(name):
    pytest.importorskip("torch")
    make_torch, make_ours = TORCH[name]
    ours, theirs, ours_ax, theirs_ax = ac.torch_stepwise(
        make_torch, make_ours, torch_state="ax", ours_state=asgd_averaged_params
    )
    ac.assert_torch_close(ours, theirs, label=name)
    ac.assert_torch_close(ours_ax, theirs_ax, label=f"{name} ax")
    start = ac.torch_problem()[0]
    assert max(float(np.max(np.abs(theirs[k][-1] - np.asarray(start[k])))) for k in theirs) > 1e-2
    gap = ac.max_abs_difference(theirs_ax, theirs)  # averaging on (t0 = 5) or not yet (t0 = 1e6)
    assert gap > 1e-2 if "t0" in name else gap == 0.0, gap


def test_asgd_averaged_params_need_exactly_one_asgd_state():
    tx = sv.asgd(0.1)
    state = tx.init(PARAMS)
    assert jax.tree.structure(asgd_averaged_params(state)) == jax.tree.structure(PARAMS)
    assert asgd_averaged_params(state[1]) is state[1].ax
    with pytest.raises(ValueError, match="found 0"):
        asgd_averaged_params(sv.fromage(0.1).init(PARAMS))
    two = partition({"a": sv.asgd(0.1), "b": sv.asgd(0.2)}, {"w": "a", "b": "b"})
    with pytest.raises(ValueError, match="found 2"):
        asgd_averaged_params(two.init(PARAMS))
    with pytest.raises(ValueError, match="needs params"):
        tx.update(PARAMS, state)


@pytest.mark.parametrize("name", ["noisy_sgd", "fromage", "polyak_sgd", "optimistic_gradient_descent"])
def test_signature_is_optax(name):
    ac.assert_same_signature(getattr(sv, name), getattr(optax, name))


PARAMS = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.5, -0.25, 1.0])}


def test_hyperparams_are_named_as_the_arguments():
    found = get_hyperparams(sv.polyak_sgd(max_learning_rate=0.5, scaling=0.25, f_min=0.1, eps=1e-3).init(PARAMS))
    assert {k: round(float(v), 6) for k, v in found.items()} == {
        "scaling": 0.25, "f_min": 0.1, "max_learning_rate": 0.5, "eps": 0.001,
    }  # fmt: skip
    found = get_hyperparams(sv.fromage(0.01).init(PARAMS))
    assert float(found["learning_rate"]) == pytest.approx(0.01) and float(found["min_norm"]) == pytest.approx(1e-6)
    found = get_hyperparams(sv.noisy_sgd(0.1, eta=0.5, gamma=0.25, key=0).init(PARAMS))
    assert float(found["eta"]) == 0.5 and float(found["gamma"]) == 0.25
    found = get_hyperparams(sv.optimistic_gradient_descent(0.1, alpha=0.5, beta=0.25).init(PARAMS))
    assert float(found["alpha"]) == 0.5 and float(found["beta"]) == 0.25
    found = get_hyperparams(sv.asgd(0.25, lambd=0.5, alpha=0.75, t0=3, weight_decay=0.125).init(PARAMS))
    assert {k: float(v) for k, v in found.items()} == {
        "learning_rate": 0.25, "lambd": 0.5, "alpha": 0.75, "t0": 3.0, "weight_decay": 0.125,
    }  # fmt: skip


def test_fromage_shrink_is_exact_for_small_rates():
    """``1 / sqrt(1 + lr^2) - 1`` is ~-lr^2 / 2. For lr = 1e-4 it is -5e-9, below float32's resolution
    of 1: for a schedule computed with jnp (as Optax's schedules are) Optax evaluates it in float32
    and gets 0 (no shrink at all). Ours keeps it: the update matches the float64 formula to 1e-6
    relative, Optax's misses the -5e-9 w term."""
    params = {"w": jnp.full((4,), 1.0), "b": jnp.full((3,), 2.0)}
    grads = {"w": jnp.zeros(4), "b": jnp.zeros(3)}  # zero gradients: the update is the shrink alone
    ours = sv.fromage(lambda count: jnp.asarray(1e-4, jnp.float32))
    updates, _ = jax.jit(ours.update)(grads, ours.init(params), params)
    expected = (1 / np.sqrt(1 + 1e-8) - 1) * np.asarray(params["w"], np.float64)
    np.testing.assert_allclose(np.asarray(updates["w"], np.float64), expected, rtol=1e-6)
    theirs = optax.fromage(lambda count: jnp.asarray(1e-4, jnp.float32))
    optax_updates, _ = jax.jit(theirs.update)(grads, theirs.init(params), params)
    assert np.all(np.asarray(optax_updates["w"]) == 0)


def test_polyak_needs_the_loss_value():
    tx = sv.polyak_sgd()
    with pytest.raises(TypeError, match="value"):
        tx.update(PARAMS, tx.init(PARAMS), PARAMS)
    updates, _ = tx.update(PARAMS, tx.init(PARAMS), PARAMS, value=jnp.asarray(1.0))
    squared = sum(float(jnp.sum(x * x)) for x in jax.tree.leaves(PARAMS))
    step = min(1.0 / squared, 1.0)
    ac.assert_close(updates, jax.tree.map(lambda g: -step * g, PARAMS), float32=(1e-6, 1e-8))


def test_noisy_sgd_keys():
    """An integer seed, a typed key and a raw PRNGKey give Optax's noise; no key warns (key 0)."""
    grads = jax.tree.map(jnp.zeros_like, PARAMS)
    reference = optax.noisy_sgd(1.0, eta=1.0, key=5)
    expected, _ = reference.update(grads, reference.init(PARAMS), PARAMS)
    for key in (5, jax.random.key(5), jax.random.PRNGKey(5), np.int64(5)):
        tx = sv.noisy_sgd(1.0, eta=1.0, key=key)
        ac.assert_close(tx.update(grads, tx.init(PARAMS), PARAMS)[0], expected, exact=True)
    with pytest.warns(UserWarning, match="key"):
        sv.noisy_sgd(0.1)
    with pytest.warns(DeprecationWarning, match="seed"):
        sv.noisy_sgd(0.1, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError, match="key and seed"):
            sv.noisy_sgd(0.1, key=1, seed=5)
    with pytest.raises(TypeError, match="key"):
        sv.noisy_sgd(0.1, key="five")


EDGE = {
    "fromage": lambda: sv.fromage(0.1),
    "optimistic_gradient_descent": lambda: sv.optimistic_gradient_descent(0.1),
    "noisy_sgd_no_noise": lambda: sv.noisy_sgd(0.1, eta=0.0, key=0),
    "polyak_eps0": lambda: sv.polyak_sgd(eps=0.0),
    "asgd": lambda: sv.asgd(0.1, lambd=0.5, t0=0, weight_decay=0.1),
}


@pytest.mark.parametrize("scale", ac.EDGE_SCALES, ids=["zero", "huge", "tiny"])
def test_edge_gradients_give_finite_updates(scale):
    """Zero gradients give 0 (Polyak: 0 when ||u||^2 + eps is below float64's epsilon; Fromage: the
    shrink of zero weights); 1e30 and 1e-30 give finite updates."""
    for name, updates in ac.edge_updates(EDGE, value=jnp.asarray(1.0))[scale].items():
        ac.assert_finite(updates, label=f"{name} ")
        if scale == 0.0:
            assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates)), name


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: sv.noisy_sgd(-0.1, key=0), "learning_rate"),
        (lambda: sv.noisy_sgd(0.1, eta=-1.0, key=0), "eta"),
        (lambda: sv.noisy_sgd(0.1, gamma=float("nan"), key=0), "gamma"),
        (lambda: sv.fromage(-0.1), "learning_rate"),
        (lambda: sv.fromage(0.1, min_norm=-1.0), "min_norm"),
        (lambda: sv.polyak_sgd(max_learning_rate=-1.0), "max_learning_rate"),
        (lambda: sv.polyak_sgd(scaling=-1.0), "scaling"),
        (lambda: sv.polyak_sgd(f_min=float("inf")), "f_min"),
        (lambda: sv.polyak_sgd(variant="sps-"), "variant"),
        (lambda: sv.optimistic_gradient_descent(0.1, alpha=lambda count: 1.0), "alpha"),
        (lambda: sv.optimistic_gradient_descent(0.1, beta=float("nan")), "beta"),
        (lambda: sv.asgd(-0.1), "learning_rate"),
        (lambda: sv.asgd(0.1, lambd=-1e-4), "lambd"),
        (lambda: sv.asgd(0.1, alpha=float("nan")), "alpha"),
        (lambda: sv.asgd(0.1, t0=float("inf")), "t0"),
        (lambda: sv.asgd(0.1, weight_decay=-0.1), "weight_decay"),
    ],
)
def test_bad_arguments_are_named(build, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        build()
