"""The sign-based optimizers (optcompose/optimizers/_sign.py): signSGD, Signum, Lion, Rprop.

Rows of tests/rows/sign.py against their NumPy references and Optax 0.2.8 (20 steps, float32
rtol 1e-6; float64 under ``enable_x64``, rtol 1e-12), then torch.optim's Rprop::

    torch.optim.Rprop(lr, etas=(eta_minus, eta_plus), step_sizes=(min_step_size, max_step_size))
        == rprop(lr, eta_minus, eta_plus, min_step_size, max_step_size)

(torch also clips the first step size into the bounds; the two agree whenever ``lr`` lies within
them). Optax's Rprop lags one step behind (tests/transforms/test_sign.py).
"""

from __future__ import annotations

import adaptive_checks as ac
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optcompose._hyperparams import get_hyperparams
from optcompose.optimizers import _sign as so

torch = pytest.importorskip("torch")

TABLE = ac.rows("sign_sgd", "signum_schedule", "signum_low_precision", "lion", "lion_bf16_mu_low_precision", "rprop")


test_matches_reference, test_matches_optax = ac.module_tests(TABLE)


X64 = ac.rows("signum_schedule", "lion")


@pytest.mark.parametrize("case", X64, ids=[row.name for row in X64])
def test_float64_matches_optax(case):
    ac.check_x64(X64, case)


def test_eager_matches_reference():
    ac.check_eager(ac.ALL_ROWS["signum_schedule"])


def test_complex_sign_is_the_unit_phase():
    """For complex parameters sign(g) = g / |g| (jnp.sign), the same as Optax computes (Optax lists
    the sign methods as real-only, but its arithmetic is the same)."""
    for case in X64:
        ac.check_complex_optax(X64, case)


TORCH = {
    "Rprop": (lambda p: torch.optim.Rprop(p, lr=0.01), lambda: so.rprop(0.01)),
    "Rprop etas step_sizes": (
        lambda p: torch.optim.Rprop(p, lr=0.02, etas=(0.25, 1.5), step_sizes=(1e-3, 0.1)),
        lambda: so.rprop(0.02, eta_minus=0.25, eta_plus=1.5, min_step_size=1e-3, max_step_size=0.1),
    ),
}


@pytest.mark.parametrize("name", list(TORCH))
def test_rprop_matches_torch(name):
    ours, theirs = ac.torch_runs(TORCH)[name]
    ac.assert_torch_close(ours, theirs, label=name)


@pytest.mark.parametrize("name", ["sign_sgd", "signum", "lion", "rprop"])
def test_signature_is_optax(name):
    ac.assert_same_signature(getattr(so, name), getattr(optax, name))


PARAMS = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.5, -0.25, 1.0])}


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: so.sign_sgd(0.3), {"learning_rate": 0.3}),
        (lambda: so.signum(0.3, beta=0.8), {"learning_rate": 0.3, "beta": 0.8}),
        (
            lambda: so.lion(1e-4, b1=0.95, weight_decay=0.1),
            {"learning_rate": 1e-4, "b1": 0.95, "b2": 0.99, "weight_decay": 0.1},
        ),  # fmt: skip
        (lambda: so.rprop(0.1, eta_plus=1.5), {"eta_minus": 0.5, "eta_plus": 1.5, "max_step_size": 50.0}),
    ],
    ids=["sign_sgd", "signum", "lion", "rprop"],
)
def test_hyperparams_are_named_as_the_arguments(make, expected):
    found = get_hyperparams(make().init(PARAMS))
    for name, value in expected.items():
        assert float(found[name]) == pytest.approx(value, rel=1e-6), name


def test_rprop_learning_rate_fills_the_step_sizes():
    state = so.rprop(0.125).init(PARAMS)
    assert all(np.all(np.asarray(leaf) == 0.125) for leaf in jax.tree.leaves(state[0].step_sizes))
    with pytest.raises(TypeError, match="learning_rate"):
        so.rprop(lambda count: 0.1)


EDGE = {
    "sign_sgd": lambda: so.sign_sgd(0.1),
    "signum": lambda: so.signum(0.1),
    "lion": lambda: so.lion(0.1),
    "rprop": lambda: so.rprop(0.1),
}


@pytest.mark.parametrize("scale", ac.EDGE_SCALES, ids=["zero", "huge", "tiny"])
def test_edge_gradients_give_finite_updates(scale):
    for name, updates in ac.edge_updates(EDGE)[scale].items():
        ac.assert_finite(updates, label=f"{name} ")
        magnitudes = [np.max(np.abs(np.asarray(u)), initial=0) for u in jax.tree.leaves(updates)]
        if scale == 0.0:
            assert max(magnitudes) == 0, name
        else:  # only the sign counts: 1e30 and 1e-30 give the same steps
            assert max(magnitudes) > 0, name


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: so.sign_sgd(-0.1), "learning_rate"),
        (lambda: so.signum(0.1, beta=1.0), "beta"),
        (lambda: so.lion(0.1, b1=-0.5), "b1"),
        (lambda: so.lion(0.1, b2=2.0), "b2"),
        (lambda: so.lion(0.1, weight_decay=-1.0), "weight_decay"),
        (lambda: so.rprop(-0.1), "learning_rate"),
        (lambda: so.rprop(0.1, eta_minus=0.0), "eta_minus"),
        (lambda: so.rprop(0.1, eta_plus=float("inf")), "eta_plus"),
        (lambda: so.rprop(0.1, min_step_size=-1.0), "min_step_size"),
        (lambda: so.rprop(0.1, min_step_size=1.0, max_step_size=0.5), "min_step_size"),
    ],
)
def test_bad_arguments_are_named(build, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        build()


def test_rprop_refuses_complex_parameters():
    tx = so.rprop(0.1)
    params = {"w": jnp.ones((2,), jnp.complex64)}
    with pytest.raises(TypeError, match="real"):
        tx.update(params, tx.init(params), params)
