"""The SGD variants (optcompose/optimizers/_sgd_variants.py): noisy SGD, Fromage, Polyak SGD, optimistic GD.

Rows of tests/rows/sign.py against their NumPy references and Optax 0.2.8 (20 steps, float32
rtol 1e-6; float64 rtol 1e-12). torch.optim has none of these methods.
"""

from __future__ import annotations

import warnings

import adaptive_checks as ac
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optcompose._hyperparams import get_hyperparams
from optcompose.optimizers import _sgd_variants as sv

TABLE = ac.rows(
    "noisy_sgd", "fromage", "fromage_schedule", "polyak_sgd", "polyak_sgd_plus_schedule", "optimistic_gradient_descent"
)
TWINS = ac.with_optax(TABLE)


@pytest.mark.parametrize("case", TABLE, ids=[row.name for row in TABLE])
def test_matches_reference(case):
    ac.check_reference(TABLE, case)


@pytest.mark.parametrize("case", TWINS, ids=[row.name for row in TWINS])
def test_matches_optax(case):
    ac.check_optax(TABLE, case)


@pytest.mark.slow
@pytest.mark.parametrize("case", TABLE, ids=[row.name for row in TABLE])
def test_rows_on_the_shared_problem(case):
    """The nested problem of trajectory.py (FrozenDict, nnx.State, None, bfloat16 / float16 leaves)."""
    ac.check_shared(TABLE, case)


X64 = ac.rows("fromage", "polyak_sgd")


@pytest.mark.parametrize("case", X64, ids=[row.name for row in X64])
def test_float64_matches_optax(case):
    ac.check_x64(X64, case)


def test_complex_matches_optax():
    """Fromage's norms and Polyak's squared norm are of |g| (the same as Optax's arithmetic)."""
    for case in X64:
        ac.check_complex_optax(X64, case)


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
    ],
)
def test_bad_arguments_are_named(build, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        build()
