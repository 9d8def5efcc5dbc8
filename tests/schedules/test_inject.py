"""``inject_hyperparams``: Optax's behaviour, values that take effect, no recompilation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close

from optcompose import optimizers
from optcompose._hyperparams import get_hyperparams, set_hyperparams
from optcompose.schedules._inject import InjectHyperparamsState, inject_hyperparams

PARAMS = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.25, -0.5])}
GRADS = [jax.tree.map(lambda p, k=k: jnp.cos(p * (k + 1)) + 0.1 * k, PARAMS) for k in range(4)]


def halving(count):
    return 0.1 * 0.5 ** jnp.asarray(count, jnp.float32)


@pytest.mark.parametrize(
    "factory, kwargs",
    [
        (optimizers.sgd, dict(learning_rate=0.1, momentum=0.9, nesterov=True)),
        (optimizers.adam, dict(learning_rate=0.01, b1=0.8)),
        (optimizers.adamw, dict(learning_rate=0.01, weight_decay=0.1)),
        (optimizers.rmsprop, dict(learning_rate=0.01, decay=0.9, momentum=0.5)),
        (optimizers.adagrad, dict(learning_rate=0.1)),
        (optimizers.lamb, dict(learning_rate=0.01, weight_decay=0.01)),
        (optimizers.lars, dict(learning_rate=0.1, weight_decay=0.01)),
    ],
)
def test_same_updates_as_the_plain_optimizer(factory, kwargs):
    plain, injected = factory(**kwargs), inject_hyperparams(factory)(**kwargs)

    def run(tx):
        def body(state, grads):
            updates, state = tx.update(grads, state, PARAMS)
            return state, updates

        return jax.lax.scan(body, tx.init(PARAMS), jax.tree.map(lambda *g: jnp.stack(g), *GRADS))[1]

    expected, got = jax.jit(lambda: run(plain))(), jax.jit(lambda: run(injected))()
    assert_trees_close(got, expected, rtol=1e-6, atol=1e-7)


def test_matches_optax_updates_and_hyperparams_timing():
    optax = pytest.importorskip("optax")
    ours = inject_hyperparams(optimizers.adam)(learning_rate=halving, b1=0.8)
    ref = optax.inject_hyperparams(optax.adam)(learning_rate=halving, b1=0.8)
    state, ref_state = ours.init(PARAMS), ref.init(PARAMS)
    step, ref_step = jax.jit(ours.update), jax.jit(ref.update)
    for grads in GRADS:
        updates, state = step(grads, state, PARAMS)
        ref_updates, ref_state = ref_step(grads, ref_state, PARAMS)
        assert_trees_close(updates, ref_updates, rtol=1e-6, atol=0)
        # Optax's convention: the dict holds the values the last update used.
        for name in ("learning_rate", "b1", "b2"):
            assert float(state.hyperparams[name]) == pytest.approx(float(ref_state.hyperparams[name]))
    assert isinstance(state, InjectHyperparamsState)
    assert int(state.count) == len(GRADS)


def test_get_hyperparams_reports_the_next_value_and_no_inner_duplicates():
    tx = inject_hyperparams(optimizers.sgd)(learning_rate=halving, momentum=0.9)
    state = tx.init(PARAMS)
    step = jax.jit(tx.update)
    for _ in range(3):
        _, state = step(GRADS[0], state, PARAMS)
    found = get_hyperparams(state)
    # sgd's trace keeps its momentum under 'decay'; only the factory's names are reported.
    assert set(found) == {"learning_rate", "momentum"}
    assert float(found["learning_rate"]) == pytest.approx(0.1 * 0.5**3)  # next update: count 3
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.1 * 0.5**2)  # last update
    with pytest.raises(ValueError, match="follows a schedule"):
        set_hyperparams(state, learning_rate=1.0)


def test_assignment_and_set_hyperparams_take_effect_next_update():
    tx = inject_hyperparams(optimizers.sgd)(learning_rate=0.1, momentum=0.9)
    traces = []

    @jax.jit
    def step(state, grads):
        traces.append(None)
        return tx.update(grads, state, PARAMS)

    g = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    state = tx.init(PARAMS)
    updates, state = step(state, g)  # v = 1
    np.testing.assert_allclose(updates["b"], -0.1 * np.ones(2))
    state = set_hyperparams(state, learning_rate=0.01, momentum=0.5)
    updates, state = step(state, g)  # v = 0.5 * 1 + 1
    np.testing.assert_allclose(updates["b"], -0.01 * 1.5 * np.ones(2), rtol=1e-6)
    assert len(traces) == 1 and step._cache_size() == 1
    # Optax's idiom: assign into the dict (a float32 array keeps the compiled step).
    state.hyperparams["learning_rate"] = jnp.float32(0.2)
    updates, state = step(state, g)  # v = 0.5 * 1.5 + 1
    np.testing.assert_allclose(updates["b"], -0.2 * 1.75 * np.ones(2), rtol=1e-6)
    assert len(traces) == 1
    # A Python float works too (one retrace for its weak type, as in Optax).
    state.hyperparams["momentum"] = 0.0
    updates, state = step(state, g)
    np.testing.assert_allclose(updates["b"], -0.2 * np.ones(2), rtol=1e-6)
    assert state.hyperparams["momentum"].dtype == jnp.float32


def test_state_is_scan_friendly_and_dtype_is_configurable():
    tx = inject_hyperparams(optimizers.adam, hyperparam_dtype=jnp.float16)(learning_rate=halving)
    state = tx.init(PARAMS)
    assert state.hyperparams["b1"].dtype == jnp.float16
    assert state.hyperparams["learning_rate"].dtype == jnp.float16

    def body(state, _):
        return tx.update(GRADS[0], state, PARAMS)[1], None

    final, _ = jax.jit(lambda s: jax.lax.scan(body, s, None, length=4))(state)
    assert int(final.count) == 4
    assert float(get_hyperparams(final)["learning_rate"]) == pytest.approx(0.1 / 16, rel=1e-2)


def test_static_args():
    mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)  # noqa: E731
    injected = inject_hyperparams(optimizers.adamw, static_args="mask")(0.01, weight_decay=0.5, mask=mask)
    plain = optimizers.adamw(0.01, weight_decay=0.5, mask=mask)
    a, _ = injected.update(GRADS[0], injected.init(PARAMS), PARAMS)
    b, _ = plain.update(GRADS[0], plain.init(PARAMS), PARAMS)
    assert_trees_close(a, b, rtol=1e-6, atol=0)
    assert "mask" not in injected.init(PARAMS).hyperparams
    with pytest.raises(ValueError, match="not parameters"):
        inject_hyperparams(optimizers.adam, static_args=("learning_rat",))


def test_argument_kinds():
    tx = inject_hyperparams(optimizers.sgd)(0.1, momentum=0.9, nesterov=True, accumulator_dtype=None)
    state = tx.init(PARAMS)
    assert dict(state.hyperparams).keys() == {"learning_rate", "momentum"}
    assert state.hyperparams.scheduled == frozenset()
    with pytest.raises(TypeError):
        inject_hyperparams(optimizers.sgd)(0.1, unknown=1)


def test_injected_parts_of_a_partition_are_path_qualified_and_settable():
    from optcompose.transforms._partition import partition

    labels = {"w": "slow", "b": "fast"}
    tx = partition(
        {"slow": inject_hyperparams(optimizers.sgd)(0.01), "fast": inject_hyperparams(optimizers.sgd)(0.1)}, labels
    )
    state = tx.init(PARAMS)
    slow = ".inner_states['slow'].inner_state.hyperparams['learning_rate']"
    fast = ".inner_states['fast'].inner_state.hyperparams['learning_rate']"
    assert {k: float(v) for k, v in get_hyperparams(state).items()} == pytest.approx({slow: 0.01, fast: 0.1})
    state = set_hyperparams(state, {fast: 0.5})
    g = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    updates, _ = jax.jit(tx.update)(g, state, PARAMS)
    np.testing.assert_allclose(updates["b"], -0.5 * np.ones(2))
    np.testing.assert_allclose(updates["w"], -0.01 * np.ones((2, 2)), rtol=1e-6)
