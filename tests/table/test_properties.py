"""Property tests (hypothesis, slow) over random values and hyperparameters, for every row of the table.

* pure: the same inputs give the same outputs, bit for bit;
* jit equals eager;
* the state's tree structure, shapes and dtypes never change across steps, so a step runs as the
  body of ``lax.scan`` and as a branch of ``lax.cond`` (checked by doing exactly that);
* ``chain(a, chain(b, c))`` equals ``chain(a, b, c)``.

Values are drawn on the shared tree's structure (float32, or its mixed bfloat16 / float16 / float32
version), so every row applies, explicit masks included. Hyperparameters are drawn and written into
the state with ``set_hyperparams`` (they are data), so each row is built and jitted once and the
compiled step is reused across examples with the same shapes.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trajectory as tr
from cases import CASES_BY_NAME, SAMPLE
from helpers import assert_trees_close, assert_trees_equal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optcompose._base import chain
from optcompose._hyperparams import get_hyperparams, set_hyperparams

# Deterministic examples in CI; OPTCOMPOSE_PROPERTY_EXAMPLES=500 (say) explores further, at random.
EXAMPLES = int(os.environ.get("OPTCOMPOSE_PROPERTY_EXAMPLES", "0"))
SETTINGS = settings(
    max_examples=EXAMPLES or 25, derandomize=not EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
CHAIN_SETTINGS = settings(SETTINGS, max_examples=EXAMPLES or 15)
# The table's sample in CI (each drawn row is compiled: the whole table takes about 7 minutes);
# OPTCOMPOSE_PROPERTY_ROWS=all draws from every row.
ROWS = CASES_BY_NAME if os.environ.get("OPTCOMPOSE_PROPERTY_ROWS") == "all" else {n: CASES_BY_NAME[n] for n in SAMPLE}
NAMES = sorted(ROWS)
CHAINABLE = sorted(name for name, case in ROWS.items() if case.extra_args is None)
STEPS = 3
pytestmark = pytest.mark.slow
# Ranges for drawn hyperparameters, by short name; names not listed keep their built value.
RANGES = {
    "learning_rate": (0.0, 1.0),
    "b1": (0.0, 0.99),
    "b2": (0.5, 0.9999),
    # Not near 0: centered RMSprop's variance nu - mu**2 is then a cancellation of equal numbers,
    # whose rounding differs between eager and jit (XLA fuses multiply-adds), by design of floats.
    "decay": (0.5, 0.99),
    "eps": (1e-8, 1e-2),
    "eps_root": (0.0, 1e-3),
    "weight_decay": (0.0, 0.1),
    "max_norm": (0.1, 10.0),
    "max_delta": (0.1, 10.0),
    "step_size": (-2.0, 2.0),
    "trust_coefficient": (1e-3, 1.0),
    "min_norm": (0.0, 0.1),
}


@functools.cache
def transform(name):
    return CASES_BY_NAME[name].make()


def extra(name, t):
    case = CASES_BY_NAME.get(name)
    return case.extra_args(t) if case is not None and case.extra_args else {}


@functools.cache
def jitted_update(name):
    return jax.jit(transform(name).update)


@functools.cache
def scan_with_cond(name):
    """``STEPS`` steps in one ``lax.scan``; each a ``lax.cond`` between the step and a no-op."""
    tx = transform(name)

    def body(state, inputs):
        grads, params, take = inputs

        def skip():
            return jax.tree.map(jnp.zeros_like, grads), state

        updates, state = jax.lax.cond(take, lambda: tx.update(grads, state, params, **extra(name, 0)), skip)
        return state, updates

    return jax.jit(lambda state, xs: jax.lax.scan(body, state, xs))


@st.composite
def problems(draw):
    """(params, [grads] * STEPS) shaped like the shared tree (float32 or mixed precision)."""
    low_precision = draw(st.sampled_from([False, False, True]))
    magnitude = draw(st.sampled_from([1e-3, 1.0, 100.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    like, _ = tr.problem(low_precision)

    def sample():
        return jax.tree.map(lambda x: jnp.asarray(rng.normal(size=np.shape(x)) * magnitude, x.dtype), like)

    return sample(), [sample() for _ in range(STEPS)]


def with_random_hyperparams(data, state):
    drawn = {}
    for key in get_hyperparams(state):
        short = key.rsplit("'", 2)[-2] if "'" in key else key
        if short in RANGES:
            low, high = RANGES[short]
            drawn[key] = data.draw(st.floats(low, high, allow_nan=False), label=key)
    for key, value in drawn.items():
        try:
            state = set_hyperparams(state, {key: value})
        except ValueError as err:  # a scheduled hyperparameter cannot be set
            assert "schedule" in str(err)
    return state


def run(update, state, params, grads_list, name):
    outputs = []
    for t, grads in enumerate(grads_list):
        updates, state = update(grads, state, params, **extra(name, t))
        outputs.append(updates)
    return outputs, state


leaves_equal = assert_trees_equal


DIFFERENCE_OF_PARAMETERS = {"scale_by_madgrad", "madgrad", "schedule_free_adamw", "schedule_free_sgd"}
"""Rows whose updates are ``new_params - params`` (dual averaging, schedule-free): with parameters of
magnitude 100 the difference carries an absolute rounding of ~100 ulp(1), 1e-5 in float32."""


def leaves_close(a, b, name=None):
    """jit against eager: XLA fuses multiply-adds, so an ulp or so apart (of the parameters, for rows
    whose updates are differences of parameters)."""
    atol = 2e-5 if name in DIFFERENCE_OF_PARAMETERS else 1e-6
    assert_trees_close(a, b, float32=(1e-5, atol), bfloat16=(2e-2, atol))


def signature(tree):
    """Structure plus (shape, dtype, weak_type) of every leaf: what jit, scan and cond key on."""
    return jax.tree.structure(tree), [
        (jnp.shape(x), jnp.result_type(x), getattr(x, "weak_type", False)) for x in jax.tree.leaves(tree)
    ]


@SETTINGS
@given(name=st.sampled_from(NAMES), problem=problems(), data=st.data())
def test_pure_and_jit_equals_eager(name, problem, data):
    params, grads_list = problem
    tx = transform(name)
    state = with_random_hyperparams(data, tx.init(params))
    leaves_equal(tx.init(params), tx.init(params))
    eager = run(tx.update, state, params, grads_list, name)
    again = run(tx.update, state, params, grads_list, name)
    leaves_equal(eager, again)
    compiled = run(jitted_update(name), state, params, grads_list, name)
    leaves_close(eager, compiled, name)


@SETTINGS
@given(name=st.sampled_from(NAMES), problem=problems(), data=st.data())
def test_state_signature_is_stable_and_step_runs_in_scan_and_cond(name, problem, data):
    params, grads_list = problem
    state0 = with_random_hyperparams(data, transform(name).init(params))
    step = jitted_update(name)
    state = state0
    for t, grads in enumerate(grads_list):
        updates, state = step(grads, state, params, **extra(name, t))
        assert signature(state) == signature(state0)
        assert signature(updates) == signature(grads)
    take = jnp.asarray([True, False, True])
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *grads_list)
    stacked_params = jax.tree.map(lambda x: jnp.stack([x] * STEPS), params)
    final, scanned = scan_with_cond(name)(state0, (stacked, stacked_params, take))
    expected_state = state0
    for grads, flag in zip(grads_list, [True, False, True], strict=True):
        if flag:
            _, expected_state = step(grads, expected_state, params, **extra(name, 0))
    leaves_close(final, expected_state)
    assert signature(final) == signature(state0)


@functools.cache
def nested_and_flat(a, b, c):
    nested = chain(transform(a), chain(transform(b), transform(c)))
    flat = chain(transform(a), transform(b), transform(c))
    return nested, flat


@CHAIN_SETTINGS
@given(names=st.tuples(*[st.sampled_from(CHAINABLE)] * 3), problem=problems(), data=st.data())
def test_chain_is_associative(names, problem, data):
    params, grads_list = problem
    nested, flat = nested_and_flat(*names)
    nested_state = with_random_hyperparams(data, nested.init(params))
    # Same drawn values in the flat chain: its leaves are the nested state's leaves, in order.
    flat_state = jax.tree.unflatten(jax.tree.structure(flat.init(params)), jax.tree.leaves(nested_state))
    nested_out, nested_state = run(nested.update, nested_state, params, grads_list, None)
    flat_out, flat_state = run(flat.update, flat_state, params, grads_list, None)
    leaves_equal(nested_out, flat_out)
    leaves_equal(jax.tree.leaves(nested_state), jax.tree.leaves(flat_state))
