"""cautious (Liang et al. 2024): the mask, its rescaling, and the property that it never steps uphill.

Trajectories of ``cautious(adamw)``, the authors' C-AdamW (decay outside the mask) and
``cautious(lion)`` against NumPy and Optax twins are in tests/optimizers/test_frontier.py.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from optcompose._base import GradientTransformation, Stateless, chain
from optcompose._hyperparams import get_hyperparams
from optcompose.optimizers._classic import adamw, sgd
from optcompose.transforms._cautious import CautiousState, cautious


def fixed_updates(u):
    """A stateless 'optimizer' that returns ``u`` whatever the gradient."""
    return Stateless(lambda updates, params: {"w": jnp.asarray(u, jnp.float32)})


# XLA flushes float32 subnormals to zero (a subnormal gradient counts as 0 and is masked), so the
# strategy draws normal numbers and zeros only.
finite = st.floats(-10, 10, allow_nan=False, allow_subnormal=False, width=32)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (7,), elements=finite), arrays(np.float32, (7,), elements=finite))
def test_never_steps_against_the_gradient_and_rescales(u, g):
    tx = cautious(fixed_updates(u))
    out, _ = tx.update({"w": jnp.asarray(g)}, tx.init({"w": jnp.zeros(7)}))
    out = np.asarray(out["w"], np.float64)
    assert np.all(out * g <= 0), "a kept coordinate steps uphill"
    keep = u.astype(np.float64) * g < 0
    # XLA flushes float32 subnormals to zero, hence the atol of the smallest normal number.
    want = np.where(keep, u * (7 / (keep.sum() + 1)), 0.0)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=float(np.finfo(np.float32).tiny))


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, (5,), elements=finite), arrays(np.float32, (5,), elements=finite))
def test_direction_mode_keeps_directions_that_agree_with_the_gradient(u, g):
    tx = cautious(fixed_updates(u), updates="direction")
    out, _ = tx.update({"w": jnp.asarray(g)}, tx.init({"w": jnp.zeros(5)}))
    assert np.all(np.asarray(out["w"], np.float64) * g >= 0)


def test_sgd_is_never_masked_and_gets_the_authors_factor():
    g = {"w": jnp.asarray([1.0, -2.0, 3.0, 0.5])}
    tx = cautious(sgd(0.1))
    u, state = tx.update(g, tx.init(g), g)
    np.testing.assert_allclose(u["w"], -0.1 * np.asarray(g["w"]) * 4 / 5, rtol=1e-6)
    assert isinstance(state, CautiousState)


def test_zero_and_extreme_gradients_give_finite_updates():
    for magnitude in (0.0, 1e-30, 1e30):
        g = {"w": jnp.full((3,), magnitude), "b": jnp.asarray(magnitude)}
        tx = cautious(adamw(0.1, weight_decay=0.0))
        u, _ = tx.update(g, tx.init(g), g)
        assert all(np.all(np.isfinite(x)) for x in u.values())
        if magnitude == 0.0:
            assert all(np.all(x == 0) for x in u.values())


def test_bf16_dtype_kept_hyperparams_visible_and_chains():
    g = {"w": jnp.asarray([1.0, -1.0], jnp.bfloat16)}
    tx = cautious(adamw(0.1))
    u, state = tx.update(g, tx.init(g), g)
    assert u["w"].dtype == jnp.bfloat16
    assert float(get_hyperparams(state)["learning_rate"]) == pytest.approx(0.1)
    chained = chain(cautious(sgd(0.1)))
    chained.update(g, chained.init(g), g)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="updates"):
        cautious(sgd(0.1), updates="ascent")
    with pytest.raises(TypeError, match="inner"):
        cautious(0.1)
    assert isinstance(cautious(sgd(0.1)), GradientTransformation)
