"""The toolkit's extensions for states not shaped like the parameters (optcompose/transforms/_shaped.py)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optcompose._base import chain
from optcompose._hyperparams import Hyperparams, get_hyperparams, set_hyperparams
from optcompose._leafwise import leafwise
from optcompose.transforms._shaped import StateView, shaped


class NormState(NamedTuple):
    count: jax.Array
    norm: Any
    hyperparams: Hyperparams


def _running_norm(g, norm, *, hp, t, count):
    norm = hp.decay * norm + (1.0 - hp.decay) * jnp.sqrt(jnp.sum(g * g))
    return g / (norm + hp.eps) * t / (count + 1), norm


def _norm_transform(decay=0.5, eps=1e-3):
    return shaped(
        _running_norm, NormState, lambda p: (jnp.zeros((), p.dtype),), hyperparams={"decay": decay, "eps": eps}
    )


PARAMS = {"w": jnp.ones((2, 3)), "b": jnp.ones((3,), jnp.bfloat16), "none": None}


def test_slots_of_any_shape_with_storage_dtypes():
    tx = _norm_transform()
    state = tx.init(PARAMS)
    assert state.norm["w"].shape == () and state.norm["b"].dtype == jnp.bfloat16 and state.norm["none"] is None
    updates, state = jax.jit(tx.update)(PARAMS, state)
    assert updates["b"].dtype == jnp.bfloat16 and updates["none"] is None
    np.testing.assert_allclose(float(state.norm["w"]), 0.5 * np.sqrt(6.0), rtol=1e-6)
    assert int(state.count) == 1
    assert "decay=0.5" in repr(tx)


def test_schedules_follow_the_count_and_constants_are_settable():
    tx = _norm_transform(decay=lambda count: 0.5 / (1.0 + count))
    state = tx.init(PARAMS)
    assert float(get_hyperparams(state)["decay"]) == pytest.approx(0.5)
    _, state = tx.update(PARAMS, state)
    assert float(get_hyperparams(state)["decay"]) == pytest.approx(0.25)
    state = set_hyperparams(state, eps=0.5)
    assert float(get_hyperparams(state)["eps"]) == 0.5
    with pytest.raises(ValueError, match="schedule"):
        set_hyperparams(state, decay=0.1)


def test_errors_name_the_leaf():
    tx = _norm_transform()
    with pytest.raises(TypeError, match=r"\['k'\]"):
        tx.update({"k": jnp.ones(2, jnp.int32)}, tx.init({"k": jnp.ones(2)}))
    with pytest.raises(ValueError, match="structure"):
        tx.update({"x": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))


class Outer(NamedTuple):
    trace: Any
    steps: jax.Array
    hyperparams: Hyperparams


class Inner(NamedTuple):
    count: jax.Array
    trace: Any
    hyperparams: Hyperparams


def _trace(g, v, *, hp):
    v = hp.decay * v + g
    return v, v


def test_state_view_renames_fields_and_checks_the_record():
    inner = leafwise(_trace, Inner, hyperparams={"decay": 0.5})
    tx = StateView(
        inner, Outer, lambda s: Inner(s.steps, s.trace, s.hyperparams), lambda s: Outer(s.trace, s.count, s.hyperparams)
    )
    state = tx.init(PARAMS)
    assert isinstance(state, Outer) and int(state.steps) == 0
    updates, state = chain(tx).update(PARAMS, (state,))
    assert int(state[0].steps) == 1 and float(get_hyperparams(state)["decay"]) == 0.5
    np.testing.assert_array_equal(np.asarray(updates["w"]), 1.0)
    with pytest.raises(ValueError, match="Outer"):
        tx.update(PARAMS, inner.init(PARAMS))
    assert repr(tx) == repr(inner)
