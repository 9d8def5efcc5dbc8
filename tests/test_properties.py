"""Property tests (hypothesis) over random pytrees and hyperparameters, for every transform.

* pure: the same inputs give the same outputs, bit for bit;
* jit equals eager;
* the state's tree structure, shapes and dtypes never change across steps, so a step runs as the
  body of ``lax.scan`` and as a branch of ``lax.cond`` (checked by doing exactly that);
* ``chain(a, chain(b, c))`` equals ``chain(a, b, c)``.

Hyperparameters are drawn and written into the state with ``set_hyperparams`` (they are data), so
each transform is built and jitted once and the compiled step is reused across examples with the
same shapes.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_edge_values import ALL

from optcompose._base import chain
from optcompose._hyperparams import get_hyperparams, set_hyperparams

# Deterministic examples in CI; OPTCOMPOSE_PROPERTY_EXAMPLES=500 (say) explores further, at random.
EXAMPLES = int(os.environ.get("OPTCOMPOSE_PROPERTY_EXAMPLES", "0"))
SETTINGS = settings(
    max_examples=EXAMPLES or 25, derandomize=not EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
CHAIN_SETTINGS = settings(SETTINGS, max_examples=EXAMPLES or 15)
NAMES = sorted(ALL)
STEPS = 3
LEAF_SHAPES = [(), (3,), (2, 2)]
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
    return ALL[name]()


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

        updates, state = jax.lax.cond(take, lambda: tx.update(grads, state, params), skip)
        return state, updates

    return jax.jit(lambda state, xs: jax.lax.scan(body, state, xs))


def _leaf_shapes():
    return st.sampled_from(LEAF_SHAPES)


@st.composite
def problems(draw):
    """(params, [grads] * STEPS): a dict with keys "a" and "b" (the zoo's masks expect them)."""
    a = draw(st.one_of(_leaf_shapes(), st.dictionaries(st.sampled_from("xy"), _leaf_shapes(), min_size=1, max_size=2)))
    b = draw(st.one_of(_leaf_shapes(), st.tuples(_leaf_shapes(), _leaf_shapes())))
    dtype = draw(st.sampled_from([jnp.float32, jnp.float32, jnp.bfloat16]))
    magnitude = draw(st.sampled_from([1e-3, 1.0, 100.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    shapes = {"a": a, "b": b}
    is_shape = lambda x: isinstance(x, tuple) and all(isinstance(d, int) for d in x)  # noqa: E731

    def sample():
        return jax.tree.map(
            lambda s: jnp.asarray(rng.normal(size=s) * magnitude, dtype), shapes, is_leaf=is_shape
        )

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


def run(update, state, params, grads_list):
    outputs = []
    for grads in grads_list:
        updates, state = update(grads, state, params)
        outputs.append(updates)
    return outputs, state


def leaves_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x, np.float64), np.asarray(y, np.float64))


def leaves_close(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        rtol = 2e-2 if x.dtype == jnp.bfloat16 else 1e-5
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol, atol=1e-6)


def signature(tree):
    """Structure plus (shape, dtype, weak_type) of every leaf: what jit, scan and cond key on."""
    return jax.tree.structure(tree), [(jnp.shape(x), jnp.result_type(x), getattr(x, "weak_type", False))
                                      for x in jax.tree.leaves(tree)]


@SETTINGS
@given(name=st.sampled_from(NAMES), problem=problems(), data=st.data())
def test_pure_and_jit_equals_eager(name, problem, data):
    params, grads_list = problem
    tx = transform(name)
    state = with_random_hyperparams(data, tx.init(params))
    leaves_equal(tx.init(params), tx.init(params))
    eager = run(tx.update, state, params, grads_list)
    again = run(tx.update, state, params, grads_list)
    leaves_equal(eager, again)
    compiled = run(jitted_update(name), state, params, grads_list)
    leaves_close(eager, compiled)


@SETTINGS
@given(name=st.sampled_from(NAMES), problem=problems(), data=st.data())
def test_state_signature_is_stable_and_step_runs_in_scan_and_cond(name, problem, data):
    params, grads_list = problem
    state0 = with_random_hyperparams(data, transform(name).init(params))
    step = jitted_update(name)
    state = state0
    for grads in grads_list:
        updates, state = step(grads, state, params)
        assert signature(state) == signature(state0)
        assert signature(updates) == signature(grads)
    take = jnp.asarray([True, False, True])
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *grads_list)
    stacked_params = jax.tree.map(lambda x: jnp.stack([x] * STEPS), params)
    final, scanned = scan_with_cond(name)(state0, (stacked, stacked_params, take))
    expected_state = state0
    for grads, flag in zip(grads_list, [True, False, True], strict=True):
        if flag:
            _, expected_state = step(grads, expected_state, params)
    leaves_close(final, expected_state)
    assert signature(final) == signature(state0)


@functools.cache
def nested_and_flat(a, b, c):
    nested = chain(transform(a), chain(transform(b), transform(c)))
    flat = chain(transform(a), transform(b), transform(c))
    return nested, flat


@CHAIN_SETTINGS
@given(names=st.tuples(*[st.sampled_from(NAMES)] * 3), problem=problems(), data=st.data())
def test_chain_is_associative(names, problem, data):
    params, grads_list = problem
    nested, flat = nested_and_flat(*names)
    nested_state = with_random_hyperparams(data, nested.init(params))
    # Same drawn values in the flat chain: its leaves are the nested state's leaves, in order.
    flat_state = jax.tree.unflatten(jax.tree.structure(flat.init(params)), jax.tree.leaves(nested_state))
    nested_out, nested_state = run(nested.update, nested_state, params, grads_list)
    flat_out, flat_state = run(flat.update, flat_state, params, grads_list)
    leaves_equal(nested_out, flat_out)
    leaves_equal(jax.tree.leaves(nested_state), jax.tree.leaves(flat_state))
