"""Edge values for every row: finite updates (or a clear error) on awkward inputs.

On the shared test pytree (float32), three steps of each scenario, all rows in one jitted program
(the scenarios vmapped, so each row's update is traced once):

* zero gradients; zero gradients at zero parameters (the update is then exactly zero); zero
  parameters; every value times 1e30 and times 1e-30 (norms rescale instead of overflowing);
* a state whose int32 counts are at the int32 maximum (they saturate, never wrap);

and, eagerly, trees of other shapes: an empty pytree, a bare array (the same numbers as a one-leaf
dict), Python floats as gradients, and an integer leaf (a ``NotFloatingError`` naming its path).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trajectory as tr
from cases import CASES, params
from helpers import assert_finite, assert_trees_close

from optcompose._base import apply_updates
from optcompose._tree import INT32_MAX, NotFloatingError

STEPS = 3
SCENARIOS = ["zero_gradients", "zero_gradients_at_zero_params", "zero_params", "huge", "tiny", "int32_max"]
ANY_TREE = [case for case in CASES if not case.problem_only]


def _saturate(state):
    """Every int32 scalar of the state (the counts) set to the int32 maximum."""
    return jax.tree.map(
        lambda x: jnp.asarray(INT32_MAX, jnp.int32) if jnp.result_type(x) == jnp.int32 and jnp.shape(x) == () else x,
        state,
    )


def _scenario_inputs(tx):
    """Stacked (params, grads, state) of the scenarios, in the order of SCENARIOS."""
    params, noise = tr.problem(False)
    grads = tr.gradients(params, jax.tree.map(lambda n: n[0], noise))
    zeros = jax.tree.map(jnp.zeros_like, params)
    scale = lambda tree, factor: jax.tree.map(lambda x: x * factor, tree)  # noqa: E731
    inputs = [
        (params, zeros, tx.init(params)),
        (zeros, zeros, tx.init(zeros)),
        (zeros, grads, tx.init(zeros)),
        (scale(params, 1e30), scale(grads, 1e30), tx.init(scale(params, 1e30))),
        (scale(params, 1e-30), scale(grads, 1e-30), tx.init(scale(params, 1e-30))),
        (params, grads, _saturate(tx.init(params))),
    ]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *inputs)


def _build(case):
    tx = case.make()
    dynamic, static = tr._extras_per_step(case.extra_args, STEPS)

    def one(params, grads, state, dynamic):
        def body(carry, dynamic_t):
            params, state, _ = carry
            updates, state = tx.update(grads, state, params, **tr._merge_extras(dynamic_t, static))
            return (apply_updates(params, updates), state, updates), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        (params, state, updates), _ = jax.lax.scan(body, (params, state, zeros), dynamic, length=STEPS)
        return updates, state, params

    return jax.vmap(one, in_axes=(0, 0, 0, None)), (*_scenario_inputs(tx), dynamic)


def _outcome(case, scenario):
    updates, state, params = tr.table_result("edge_values", CASES, case, _build)
    index = SCENARIOS.index(scenario)
    return jax.tree.map(lambda x: x[index], (updates, state, params))


@pytest.mark.parametrize("scenario", SCENARIOS[:5])
@pytest.mark.parametrize("case", params(CASES))
def test_updates_and_params_stay_finite(case, scenario):
    updates, state, params = _outcome(case, scenario)
    assert_finite((updates, params), f"{case.name} {scenario}: ")
    if scenario not in ("huge", "tiny"):  # squares of 1e30 overflow the state by design (inf moments)
        assert_finite(state, f"{case.name} {scenario} state: ")


@pytest.mark.parametrize("case", params(CASES))
def test_zero_gradients_at_zero_params_give_zero_updates(case):
    updates, _, params = _outcome(case, "zero_gradients_at_zero_params")
    assert_trees_close(updates, jax.tree.map(jnp.zeros_like, updates), exact=True, label=f"{case.name} updates")
    assert_trees_close(params, jax.tree.map(jnp.zeros_like, params), exact=True, label=f"{case.name} params")


@pytest.mark.parametrize("case", params(CASES))
def test_state_at_int32_max_keeps_working(case):
    updates, state, params = _outcome(case, "int32_max")
    assert_finite((updates, state, params), f"{case.name} at INT32_MAX: ")
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        if jnp.result_type(leaf) == jnp.int32 and jnp.shape(leaf) == ():
            assert int(leaf) >= 0, f"{case.name}: {jax.tree_util.keystr(path)} wrapped to {int(leaf)}"


# ----------------------------------------------------------------------------------------------
# Trees of other shapes (eager): empty, a bare array, Python floats, an integer leaf.

VECTOR = np.asarray([1.0, -2.0, 0.5], np.float32)


def _extra(case, t=0):
    return case.extra_args(t) if case.extra_args else {}


@pytest.mark.parametrize("case", params(ANY_TREE))
def test_empty_pytree(case):
    tx = case.make()
    updates, _ = tx.update({}, tx.init({}), {}, **_extra(case))
    assert updates == {}


@pytest.mark.parametrize("case", params(ANY_TREE))
def test_bare_array_equals_one_leaf_dict_and_python_float_gradients_work(case):
    tx = case.make()
    params, grads = jnp.asarray(VECTOR), jnp.asarray(-2.0 * VECTOR)
    state, boxed_state = tx.init(params), tx.init({"w": params})
    for t in range(2):
        updates, state = tx.update(grads, state, params, **_extra(case, t))
        boxed, boxed_state = tx.update({"w": grads}, boxed_state, {"w": params}, **_extra(case, t))
        assert_trees_close(updates, boxed["w"], label=f"{case.name} step {t}")
    assert_finite(updates)
    # 0-d parameters with Python floats as gradients.
    scalars = {"a": jnp.asarray(2.0, jnp.float32), "b": jnp.asarray(-3.0, jnp.float32)}
    state = tx.init(scalars)
    for t in range(2):
        updates, state = tx.update({"a": 0.5, "b": -0.25}, state, scalars, **_extra(case, t))
    assert_finite((updates, state))
    assert all(jnp.shape(u) == () for u in jax.tree.leaves(updates))


NOT_A_FIT = {"stateless": "its user function (g - 0.5 w) turns the integer leaf into a float before any piece sees it"}


@pytest.mark.parametrize("case", [c for c in params(CASES) if c.values[0].name not in NOT_A_FIT])
def test_integer_leaf_raises_naming_the_path(case):
    # The shared tree with its scalar leaf as an int32: the same structure, so every row applies.
    params, _ = tr.problem(False)
    params = {**params, "scale": jnp.asarray(3, jnp.int32)}
    grads = {**jax.tree.map(jnp.ones_like, params), "scale": jnp.asarray(1, jnp.int32)}
    tx = case.make()
    with pytest.raises(NotFloatingError, match=r"\['scale'\] has dtype int32") as info:
        tx.update(grads, tx.init(params), params, **_extra(case))
    assert "floating-point" in str(info.value) and "partition" in str(info.value)
    assert isinstance(info.value, TypeError)
