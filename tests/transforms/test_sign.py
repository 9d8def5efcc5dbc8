"""The sign pieces (optcompose/transforms/_sign.py): scale_by_sign, scale_by_lion, scale_by_rprop.

Rows of tests/rows/sign.py against their NumPy references and Optax's pieces (20 steps, float32
rtol 1e-6; float64 1e-12). Optax 0.2.8's ``scale_by_rprop`` returns the update of the previous
step; the exact relation to ours is checked on a fixed gradient sequence.
"""

from __future__ import annotations

import adaptive_checks as ac
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optcompose._base import EmptyState
from optcompose.transforms import _sign as st

TABLE = ac.rows("scale_by_sign", "scale_by_lion_smooth", "scale_by_lion_refined", "scale_by_rprop")
TWINS = ac.with_optax(TABLE)


FAST = ["scale_by_lion_smooth", "scale_by_lion_refined", "scale_by_rprop"]  # scale_by_sign: sign_sgd's row


def _table(case):
    """The rows compiled together with ``case``: the fast ones, or (in slow runs) the others."""
    return [row for row in TABLE if (row.name in FAST) == (case.name in FAST)]


@pytest.mark.parametrize("case", ac.mark_slow(TABLE, FAST))
def test_matches_reference(case):
    ac.check_reference(_table(case), case)


@pytest.mark.parametrize("case", ac.mark_slow(TWINS, FAST))
def test_matches_optax(case):
    ac.check_optax(_table(case), case)


def test_float64_matches_optax():
    table = ac.rows("scale_by_lion_smooth", "scale_by_lion_refined")
    for case in table:
        ac.check_x64(table, case)


@pytest.mark.parametrize("name", ["scale_by_sign", "scale_by_lion", "scale_by_rprop"])
def test_signature_is_optax(name):
    ac.assert_same_signature(getattr(st, name), getattr(optax, name))


def test_state_records_are_optax():
    ac.assert_same_fields(st.ScaleByLionState, optax.ScaleByLionState)
    ac.assert_same_fields(st.ScaleByRpropState, optax.ScaleByRpropState)
    assert st.scale_by_sign().init({"w": jnp.ones(2)}) == EmptyState()


GRADIENTS = [1.0, 1.0, 1.0, -1.0, 1.0, 2.0, -0.5, -0.5, 0.0, 3.0]


def test_rprop_is_optax_without_its_one_step_lag():
    """Optax's update at step t+1 is ours at step t, zeroed where the sign flips at t+1; the step
    sizes and ``prev_updates`` of the two states are identical. The example of optax PR #1725:
    gradients 1, 1, 1, -1, 1 give ours 0.1, 0.12, 0.144, 0, 0.072 (torch's), Optax 0, 0.1, 0.12, 0, 0."""
    rng = np.random.default_rng(0)
    gradients = [jnp.asarray(g * rng.uniform(0.5, 1.5, 3), jnp.float32) for g in GRADIENTS]
    params = jnp.zeros(3)
    ours, theirs = st.scale_by_rprop(0.1), optax.scale_by_rprop(0.1)
    mine, state = ours.init(params), theirs.init(params)
    previous = jnp.zeros(3)
    for t, g in enumerate(gradients):
        agreement = g * state.prev_updates
        u, mine = ours.update(g, mine)
        v, state = theirs.update(g, state)
        np.testing.assert_array_equal(mine.step_sizes, state.step_sizes)
        np.testing.assert_array_equal(mine.prev_updates, state.prev_updates)
        np.testing.assert_array_equal(v, jnp.where(agreement < 0, 0.0, previous))
        if t == 0:
            assert np.all(np.asarray(v) == 0)
        previous = u
    scalar = st.scale_by_rprop(0.1)
    state = scalar.init(jnp.zeros(()))
    steps = []
    for g in (1.0, 1.0, 1.0, -1.0, 1.0):
        u, state = scalar.update(jnp.asarray(g), state)
        steps.append(float(u))
    np.testing.assert_allclose(steps, [0.1, 0.12, 0.144, 0.0, 0.072], rtol=1e-6)


def test_lion_modes():
    g, mu = jnp.array([3.0, -0.5, 0.0]), jnp.zeros(3)
    for mode, expected in (
        ("hard", np.sign([0.3, -0.05, 0.0])),
        ("smooth", np.tanh(2.0 * np.array([0.3, -0.05, 0.0]))),
        ("refined", np.array([0.3, -0.05, 0.0])),
    ):
        tx = st.scale_by_lion(b1=0.9, mode=mode, smooth_beta=2.0)
        state = tx.init(mu)
        u, state = tx.update(g, state)
        np.testing.assert_allclose(np.asarray(u), expected, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(state.mu), 0.01 * np.asarray(g), rtol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        st.scale_by_lion(mode="soft")


def test_lion_mu_dtype():
    tx = st.scale_by_lion(mu_dtype=jnp.bfloat16)
    params = {"w": jnp.ones((2, 2), jnp.float32)}
    state = tx.init(params)
    u, state = jax.jit(tx.update)(params, state)
    assert state.mu["w"].dtype == jnp.bfloat16 and u["w"].dtype == jnp.float32


EDGE = {"sign": st.scale_by_sign, "lion": st.scale_by_lion, "rprop": lambda: st.scale_by_rprop(0.1)}


@pytest.mark.parametrize("scale", ac.EDGE_SCALES, ids=["zero", "huge", "tiny"])
def test_edge_gradients_give_finite_updates(scale):
    for name, updates in ac.edge_updates(EDGE)[scale].items():
        ac.assert_finite(updates, label=f"{name} ")


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: st.scale_by_lion(b1=1.0), "b1"),
        (lambda: st.scale_by_lion(smooth_beta=float("inf")), "smooth_beta"),
        (lambda: st.scale_by_rprop(0.1, eta_minus=-0.5), "eta_minus"),
        (lambda: st.scale_by_rprop(0.1, max_step_size=-1.0), "max_step_size"),
        (lambda: st.scale_by_rprop(lambda count: 0.1), "learning_rate"),
    ],
)
def test_bad_arguments_are_named(build, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        build()
