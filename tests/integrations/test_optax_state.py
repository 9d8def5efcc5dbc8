"""Resuming an Optax run: an Optax state converts into ours and the run continues with Optax's numbers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optcompose as oc

optax = pytest.importorskip("optax")

PARAMS = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.full((3,), 0.5)}


def _grads(params):
    return jax.tree.map(lambda p: jnp.cos(3.0 * p) + 0.1, params)


PAIRS = {
    "sgd": (lambda: optax.sgd(0.1), lambda: oc.sgd(0.1)),
    "sgd_momentum": (lambda: optax.sgd(0.1, 0.9, nesterov=True), lambda: oc.sgd(0.1, 0.9, nesterov=True)),
    "adam": (lambda: optax.adam(0.05), lambda: oc.adam(0.05)),
    "adamw": (lambda: optax.adamw(0.05, weight_decay=0.1), lambda: oc.adamw(0.05, weight_decay=0.1)),
    "adamw_schedule": (
        lambda: optax.adamw(optax.linear_schedule(0.1, 0.0, 20)),
        lambda: oc.adamw(oc.linear_schedule(0.1, 0.0, 20)),
    ),
    "rmsprop": (lambda: optax.rmsprop(0.01, momentum=0.9), lambda: oc.rmsprop(0.01, momentum=0.9)),
    "adagrad": (lambda: optax.adagrad(0.1), lambda: oc.adagrad(0.1)),
    "lamb": (lambda: optax.lamb(0.01, weight_decay=0.01), lambda: oc.lamb(0.01, weight_decay=0.01)),
    "clip_then_adam": (
        lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.05)),
        lambda: oc.chain(oc.clip_by_global_norm(1.0), oc.adam(0.05)),
    ),
}


def _table_pairs():
    try:
        from cases import CASES
    except ImportError:  # pragma: no cover
        return {}
    # Rows made for the table's own test pytree (problem_only) are run there, not here; Optax's
    # inject_hyperparams keeps per-schedule states ours has no counterpart for (not converted).
    return {
        f"table_{c.name}": (c.optax, c.make)
        for c in CASES
        if c.optax is not None and c.extra_args is None and not getattr(c, "problem_only", False)
        and not c.name.startswith("inject")
        # rows whose twin is an Optax optimizer (elsewhere twins may be Optax pieces plus jnp lines)
        and getattr(c.make, "__module__", "") in ("rows.classic", "rows.adaptive")
    }


ALL_PAIRS = {**PAIRS, **_table_pairs()}


def _run(update, apply, state, params, steps):
    trajectory = []
    for _ in range(steps):
        updates, state = update(_grads(params), state, params)
        params = apply(params, updates)
        trajectory.append(params)
    return trajectory, state


@pytest.mark.parametrize("name", sorted(ALL_PAIRS))
def test_an_optax_run_resumes_in_optcompose_with_optax_numbers(name):
    make_optax, make_ours = ALL_PAIRS[name]
    theirs, ours = make_optax(), make_ours()
    half, state = _run(jax.jit(theirs.update), optax.apply_updates, theirs.init(PARAMS), PARAMS, 10)
    params = half[-1]
    expected, _ = _run(jax.jit(theirs.update), optax.apply_updates, state, params, 10)
    converted = oc.from_optax(state, ours.init(PARAMS))
    assert jax.tree.structure(converted) == jax.tree.structure(ours.init(PARAMS))
    got, _ = _run(jax.jit(ours.update), oc.apply_updates, converted, params, 10)
    # bfloat16 state: Optax rounds its arithmetic to bfloat16, ours computes in float32 and stores
    low = any(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(converted))
    for a, b in zip(jax.tree.leaves(got[-1]), jax.tree.leaves(expected[-1]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-2 if low else 2e-5, atol=2e-3 if low else 2e-6)


def test_states_that_do_not_correspond_are_refused_naming_the_path():
    with pytest.raises(ValueError, match=r"at \[0\] Optax's state has ScaleByAdamState but ours has TraceState"):
        oc.from_optax(optax.adam(0.1).init(PARAMS), oc.sgd(0.1, 0.9).init(PARAMS))
    with pytest.raises(ValueError, match="shape"):
        oc.from_optax(optax.adam(0.1).init({"w": jnp.ones((3, 2)), "b": jnp.ones(3)}), oc.adam(0.1).init(PARAMS))
    with pytest.raises(ValueError, match="parts"):
        oc.from_optax(optax.adamw(0.1).init(PARAMS), oc.adam(0.1).init(PARAMS))


def test_the_code_keeps_its_configuration_and_the_step_count_is_carried():
    theirs = optax.adamw(0.1)
    _, state = _run(theirs.update, optax.apply_updates, theirs.init(PARAMS), PARAMS, 3)
    converted = oc.from_optax(state, oc.adamw(0.01).init(PARAMS))
    assert float(oc.get_hyperparams(converted)["learning_rate"]) == pytest.approx(0.01)
    assert [int(s.count) for s in converted] == [3, 3, 3]
    assert int(oc.from_optax(optax.sgd(0.1).init(PARAMS), oc.sgd(0.1).init(PARAMS), step=7)[1].count) == 7
