"""Whole-update rules (optcompose/transforms/_step_rules.py): Polyak's step, normalisation by the
update norm, optimistic gradients, gradient noise, Fromage's step.

Rows of tests/rows/sign.py against their NumPy references and Optax's pieces (20 steps, float32
rtol 1e-6; float64 1e-12), Optax's states, the noise bit for bit with Optax's for the same key,
and the edge values where ours is finite and Optax's is not.
"""

from __future__ import annotations

import adaptive_checks as ac
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax._src.transform import ScaleByOptimisticGradientState as OptaxOptimisticState

from optcompose._hyperparams import get_hyperparams, set_hyperparams
from optcompose.transforms import _step_rules as sr

TABLE = ac.rows(
    "add_noise_low_precision", "normalize_by_update_norm", "scale_by_polyak", "scale_by_optimistic_gradient"
)


test_matches_reference, test_matches_optax = ac.module_tests(TABLE)


def test_float64_matches_optax():
    table = ac.rows("normalize_by_update_norm", "scale_by_polyak", "scale_by_optimistic_gradient")
    for case in table:
        ac.check_x64(table, case)


def test_complex_matches_optax():
    table = ac.rows("normalize_by_update_norm", "scale_by_optimistic_gradient")
    for case in table:
        ac.check_complex_optax(table, case)


@pytest.mark.parametrize(
    "name", ["add_noise", "normalize_by_update_norm", "scale_by_polyak", "scale_by_optimistic_gradient"]
)
def test_signature_is_optax(name):
    ac.assert_same_signature(getattr(sr, name), getattr(optax, name))


def test_state_records_are_optax():
    ac.assert_same_fields(sr.AddNoiseState, optax.AddNoiseState)
    ac.assert_same_fields(sr.ScaleByOptimisticGradientState, OptaxOptimisticState)
    state = sr.scale_by_optimistic_gradient().init({"w": jnp.ones(2)})
    assert state.is_initial_step.dtype == jnp.bool_ and bool(state.is_initial_step)
    _, state = sr.scale_by_optimistic_gradient().update({"w": jnp.ones(2)}, state)
    assert not bool(state.is_initial_step)


PARAMS = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.5, -0.25, 1.0]), "s": jnp.asarray(2.0)}


def test_optax_optimistic_state_converts():
    ours, theirs = sr.scale_by_optimistic_gradient(0.5, 0.25), optax.scale_by_optimistic_gradient(0.5, 0.25)
    state = theirs.init(PARAMS)
    _, state = theirs.update(PARAMS, state)
    mine = sr.ScaleByOptimisticGradientState(*state, hyperparams=ours.init(PARAMS).hyperparams)
    grads = jax.tree.map(lambda x: 2 * x + 1, PARAMS)
    ac.assert_close(ours.update(grads, mine)[0], theirs.update(grads, state)[0], exact=True)


def test_noise_is_optax_bit_for_bit_and_keeps_dtypes():
    """The same keys and draws as Optax; a bfloat16 update stays bfloat16 (the sum computed in float32,
    where Optax adds in bfloat16: the two agree to bfloat16's resolution)."""
    params = {"w": jnp.ones((3, 4)), "h": jnp.ones((5,), jnp.bfloat16), "s": jnp.asarray(1.0)}
    ours, theirs = sr.add_noise(0.3, 0.55, key=jax.random.key(11)), optax.add_noise(0.3, 0.55, key=11)
    mine, state = ours.init(params), theirs.init(params)
    for _ in range(3):
        got, mine = ours.update(params, mine)
        expected, state = theirs.update(params, state)
        ac.assert_close({k: got[k] for k in ("w", "s")}, {k: expected[k] for k in ("w", "s")}, exact=True)
        assert got["h"].dtype == expected["h"].dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(got["h"], np.float32), np.asarray(expected["h"], np.float32), rtol=1e-2)
    np.testing.assert_array_equal(jax.random.key_data(mine.rng_key), jax.random.key_data(state.rng_key))
    assert int(mine.count) == int(state.count) == 3


def test_noise_variance_anneals():
    """sigma_t^2 = eta / t^gamma: the sample variance over many coordinates follows it."""
    tx = sr.add_noise(4.0, 1.0, key=0)
    zeros = {"w": jnp.zeros((200_000,))}
    state = tx.init(zeros)
    for t in (1, 2, 3):
        noise, state = tx.update(zeros, state)
        assert float(jnp.var(noise["w"])) == pytest.approx(4.0 / t, rel=0.02)


def test_normalize_edge_values():
    """A zero update with eps = 0 stays 0 (Optax: 0 / 0 = NaN); entries of 1e30 give the unit
    vector (Optax's norm overflows to inf and its update to 0)."""
    zero = {"w": jnp.zeros(3)}
    tx = sr.normalize_by_update_norm(eps=0.0)
    assert np.all(np.asarray(tx.update(zero, tx.init(zero))[0]["w"]) == 0)
    assert np.all(np.isnan(np.asarray(optax.normalize_by_update_norm(eps=0.0).update(zero, None)[0]["w"])))
    huge = {"w": jnp.full((4,), 1e30)}
    doubled = sr.normalize_by_update_norm(2.0)
    got, _ = doubled.update(huge, doubled.init(huge))
    np.testing.assert_allclose(np.asarray(got["w"]), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(optax.normalize_by_update_norm(2.0).update(huge, None)[0]["w"]), 0.0)


def test_polyak_step():
    """step = min(gap / (||u||^2 + eps), max_lr); 0 when ||u||^2 + eps is below float64's epsilon."""
    tx = sr.scale_by_polyak(f_min=0.5, max_learning_rate=10.0)
    state = tx.init(PARAMS)
    squared = sum(float(jnp.sum(x * x)) for x in jax.tree.leaves(PARAMS))
    got, _ = tx.update(PARAMS, state, value=jnp.asarray(2.0))
    ac.assert_close(got, jax.tree.map(lambda u: 1.5 / squared * u, PARAMS), float32=(1e-6, 1e-8))
    low = sr.scale_by_polyak(max_learning_rate=0.1)
    capped, _ = low.update(PARAMS, low.init(PARAMS), value=100.0)
    ac.assert_close(capped, jax.tree.map(lambda u: 0.1 * u, PARAMS), float32=(1e-6, 1e-8))
    zero = jax.tree.map(jnp.zeros_like, PARAMS)
    ac.assert_close(tx.update(zero, state, value=2.0)[0], zero, exact=True)
    plus = sr.scale_by_polyak(variant="sps+")
    negative, _ = plus.update(PARAMS, plus.init(PARAMS), value=-1.0)
    ac.assert_close(negative, zero, exact=True)
    assert sorted(get_hyperparams(state)) == ["eps", "f_min", "max_learning_rate"]
    changed = set_hyperparams(state, f_min=1.0)
    ac.assert_close(tx.update(PARAMS, changed, value=2.0)[0], jax.tree.map(lambda u: 1 / squared * u, PARAMS),
                    float32=(1e-6, 1e-8))  # fmt: skip


def test_fromage_step():
    w = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5])}
    u = {"w": jnp.array([0.25, 0.5]), "b": jnp.array([-1.0])}
    tx = sr.fromage_step(0.3)
    got, _ = tx.update(u, tx.init(w), w)
    root = np.sqrt(1 + 0.09)
    expected = jax.tree.map(lambda ui, wi: (np.asarray(wi) - 0.3 * np.asarray(ui)) / root - np.asarray(wi), u, w)
    ac.assert_close(got, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), expected), float32=(1e-6, 1e-7))


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: sr.add_noise(-1.0, 0.5, key=0), "eta"),
        (lambda: sr.add_noise(1.0, float("nan"), key=0), "gamma"),
        (lambda: sr.normalize_by_update_norm(float("inf")), "scale_factor"),
        (lambda: sr.normalize_by_update_norm(eps=-1.0), "eps"),
        (lambda: sr.normalize_by_update_norm(lambda count: 1.0), "schedules"),
        (lambda: sr.scale_by_polyak(eps=-1.0), "eps"),
        (lambda: sr.scale_by_polyak(variant="sps++"), "variant"),
        (lambda: sr.scale_by_optimistic_gradient(alpha=lambda count: 1.0), "alpha"),
        (lambda: sr.fromage_step(-0.1), "learning_rate"),
    ],
)
def test_bad_arguments_are_named(build, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        build()


def test_integer_leaves_are_named():
    tx = sr.normalize_by_update_norm()
    with pytest.raises(TypeError, match=r"\['n'\]"):
        tx.update({"n": jnp.ones(2, jnp.int32)}, tx.init({"n": jnp.ones(2)}))
