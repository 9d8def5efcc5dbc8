"""Reading and setting hyperparameters through chain, named_chain, partition, masked and wrappers.

Every expected number is written out by hand (the first SGD step is ``-lr * g``; Adam's first step
is ``-lr * g / (|g| + eps)``), so each test can fail independently of the code it checks.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optcompose._base import chain, named_chain
from optcompose._hyperparams import get_hyperparams, set_hyperparams
from optcompose.optimizers._classic import adam, sgd
from optcompose.transforms._clipping import clip_by_global_norm
from optcompose.transforms._partition import masked, partition
from optcompose.transforms._scaling import scale_by_learning_rate

PARAMS = {"backbone": {"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2)}, "head": {"kernel": jnp.ones((2, 1))}}
GRADS = jax.tree.map(lambda p: jnp.full(p.shape, 2.0), PARAMS)
LABELS = {"backbone": {"kernel": "backbone", "bias": "backbone"}, "head": {"kernel": "head"}}


def _as_floats(values):
    return {k: float(v) for k, v in values.items()}


def test_chain_reports_each_name_once():
    tx = chain(clip_by_global_norm(5.0), adam(0.1, b1=0.8))
    found = _as_floats(get_hyperparams(tx.init(PARAMS)))
    assert found == pytest.approx(
        {"max_norm": 5.0, "b1": 0.8, "b2": 0.999, "eps": 1e-8, "eps_root": 0.0, "learning_rate": 0.1}
    )


def test_named_chain_shared_name_is_path_qualified():
    tx = named_chain(("warm", scale_by_learning_rate(0.5, flip_sign=False)), ("sgd", sgd(0.1)))
    found = _as_floats(get_hyperparams(tx.init(PARAMS)))
    assert found == pytest.approx(
        {"['warm'].hyperparams['learning_rate']": 0.5, "['sgd'][1].hyperparams['learning_rate']": 0.1}
    )
    state = set_hyperparams(tx.init(PARAMS), {"['sgd'][1].hyperparams['learning_rate']": 0.25})
    updates, _ = tx.update(GRADS, state, PARAMS)
    # 0.5 * 2 then -0.25 * that.
    np.testing.assert_allclose(updates["head"]["kernel"], np.full((2, 1), -0.25 * 0.5 * 2.0))


def _partitioned():
    return partition({"backbone": sgd(0.01), "head": sgd(0.1)}, LABELS)


def test_partition_reports_path_qualified_learning_rates():
    found = _as_floats(get_hyperparams(_partitioned().init(PARAMS)))
    backbone = ".inner_states['backbone'].inner_state[1].hyperparams['learning_rate']"
    head = ".inner_states['head'].inner_state[1].hyperparams['learning_rate']"
    assert found == pytest.approx({backbone: 0.01, head: 0.1})


def test_partition_ambiguous_name_raises_and_qualified_name_sets():
    tx = _partitioned()
    state = tx.init(PARAMS)
    with pytest.raises(ValueError, match="shared by several parts"):
        set_hyperparams(state, learning_rate=0.5)
    head = ".inner_states['head'].inner_state[1].hyperparams['learning_rate']"
    state = set_hyperparams(state, {head: 0.5})
    updates, _ = tx.update(GRADS, state, PARAMS)
    np.testing.assert_allclose(updates["head"]["kernel"], np.full((2, 1), -0.5 * 2.0))
    np.testing.assert_allclose(updates["backbone"]["kernel"], np.full((2, 2), -0.01 * 2.0))


def test_masked_reads_and_sets_through_the_mask():
    mask = {"backbone": {"kernel": True, "bias": False}, "head": {"kernel": True}}
    tx = masked(sgd(0.1), mask)
    state = tx.init(PARAMS)
    assert _as_floats(get_hyperparams(state)) == pytest.approx({"learning_rate": 0.1})
    state = set_hyperparams(state, learning_rate=0.3)
    updates, state = tx.update(GRADS, state, PARAMS)
    np.testing.assert_allclose(updates["backbone"]["kernel"], np.full((2, 2), -0.3 * 2.0))
    np.testing.assert_allclose(updates["backbone"]["bias"], np.full(2, 2.0))  # passes through
    assert float(get_hyperparams(state)["learning_rate"]) == pytest.approx(0.3)


def test_scheduled_value_is_the_next_steps_and_cannot_be_set():
    schedule = lambda count: 0.1 * 0.5 ** count  # noqa: E731
    tx = adam(schedule)
    state = tx.init(PARAMS)
    step = jax.jit(tx.update)
    for k in range(3):
        assert float(get_hyperparams(state)["learning_rate"]) == pytest.approx(0.1 * 0.5**k)
        _, state = step(GRADS, state, PARAMS)
    assert float(get_hyperparams(state)["learning_rate"]) == pytest.approx(0.1 * 0.5**3)
    with pytest.raises(ValueError, match="follows a schedule"):
        set_hyperparams(state, learning_rate=1e-3)


def test_unknown_name_lists_known_names():
    state = adam(0.1).init(PARAMS)
    with pytest.raises(KeyError, match="learning_rate") as info:
        set_hyperparams(state, lerning_rate=0.1)
    assert "b2" in str(info.value)


def test_invalid_value_is_refused():
    state = adam(0.1).init(PARAMS)
    with pytest.raises(ValueError, match="learning_rate"):
        set_hyperparams(state, learning_rate=-1.0)
    with pytest.raises(ValueError, match="b1"):
        set_hyperparams(state, b1=1.5)


def test_set_takes_effect_next_step_without_recompiling():
    traces = []
    tx = chain(clip_by_global_norm(100.0), sgd(0.1, momentum=0.9))

    @jax.jit
    def step(state, grads):
        traces.append(None)  # runs only while tracing
        return tx.update(grads, state, PARAMS)

    state = tx.init(PARAMS)
    updates, state = step(state, GRADS)
    np.testing.assert_allclose(updates["head"]["kernel"], np.full((2, 1), -0.1 * 2.0))
    state = set_hyperparams(state, learning_rate=0.01, momentum=0.5)
    updates, state = step(state, GRADS)
    # velocity 0.5 * 2 + 2 = 3, times the new learning rate.
    np.testing.assert_allclose(updates["head"]["kernel"], np.full((2, 1), -0.01 * 3.0), rtol=1e-6)
    assert len(traces) == 1
    assert step._cache_size() == 1
    expected = {"max_norm": 100.0, "momentum": 0.5, "learning_rate": 0.01}
    assert _as_floats(get_hyperparams(state)) == pytest.approx(expected)


def test_set_does_not_mutate_the_old_state():
    state = sgd(0.1).init(PARAMS)
    set_hyperparams(state, learning_rate=0.7)
    assert float(get_hyperparams(state)["learning_rate"]) == pytest.approx(0.1)


def test_multisteps_reads_and_sets_the_inner_learning_rate():
    from optcompose.transforms._accumulation import MultiSteps

    tx = MultiSteps(sgd(0.1), 2).gradient_transformation()
    state = tx.init(PARAMS)
    assert _as_floats(get_hyperparams(state)) == pytest.approx({"learning_rate": 0.1})
    state = set_hyperparams(state, learning_rate=0.4)
    step = jax.jit(tx.update)
    updates, state = step(GRADS, state, PARAMS)
    np.testing.assert_allclose(updates["head"]["kernel"], np.zeros((2, 1)))  # still accumulating
    updates, state = step(GRADS, state, PARAMS)
    np.testing.assert_allclose(updates["head"]["kernel"], np.full((2, 1), -0.4 * 2.0), rtol=1e-6)
    assert float(get_hyperparams(state)["learning_rate"]) == pytest.approx(0.4)


def test_apply_if_finite_reads_and_sets_the_inner_learning_rate():
    from optcompose.transforms._guards import apply_if_finite

    tx = apply_if_finite(adam(0.1), 3)
    state = tx.init(PARAMS)
    assert float(get_hyperparams(state)["learning_rate"]) == pytest.approx(0.1)
    state = set_hyperparams(state, learning_rate=0.05)
    updates, state = jax.jit(tx.update)(GRADS, state, PARAMS)
    # Adam's first step is g / (|g| + eps) ~ 1.
    np.testing.assert_allclose(updates["head"]["kernel"], np.full((2, 1), -0.05), rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# One source of truth for scheduled values: schedule(count), in update, in step, in get_hyperparams.


def _old_run(tx, steps=10):
    state = tx.init(PARAMS)
    for _ in range(steps):
        _, state = tx.update(GRADS, state, PARAMS)
    return state


def _ramp(scale):
    return lambda count: scale * (1.0 + count)  # 11 * scale at count 10: easy to read


@pytest.mark.parametrize(
    "build",
    [
        lambda lr: adam(lr),
        lambda lr: chain(clip_by_global_norm(1e3), sgd(lr, momentum=0.5)),
        lambda lr: __import__("optcompose").inject_hyperparams(sgd)(learning_rate=lr),
        lambda lr: __import__("optcompose").contrib.prodigy(lr),
    ],
    ids=["adam", "chain", "inject_hyperparams", "contrib.prodigy"],
)
def test_a_state_restored_into_another_schedule_reports_what_the_next_update_uses(build):
    import optcompose as oc

    state = _old_run(build(_ramp(1.0)))  # stores lr = 11 for the next step
    new = build(_ramp(0.01))  # the code now says 0.11 at count 10
    assert float(get_hyperparams(state)["learning_rate"]) == pytest.approx(11.0)  # stored, documented
    assert float(get_hyperparams(state, new, PARAMS)["learning_rate"]) == pytest.approx(0.11)
    # ... and that is what the update uses: its step is 0.11 / 11 of the old code's step.
    new_updates, _ = new.update(GRADS, state, PARAMS)
    old_updates, _ = build(_ramp(1.0)).update(GRADS, state, PARAMS)
    ratio = jax.tree.map(lambda a, b: np.asarray(a) / np.asarray(b), new_updates, old_updates)
    for leaf in jax.tree.leaves(ratio):
        np.testing.assert_allclose(leaf[np.isfinite(leaf)], 0.01, rtol=1e-5)
    assert oc.get_hyperparams(state, new, jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), PARAMS))


def test_an_edited_count_is_seen_by_update_step_and_get_hyperparams():
    import optcompose as oc

    tx = sgd(_ramp(0.001), momentum=0.9)  # a kernel chain; its first step is -lr * g
    state = tx.init(PARAMS)
    state = jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.asarray(49, x.dtype) if jax.tree_util.keystr(path).endswith(".count") else x, state
    )
    assert float(get_hyperparams(state, tx, PARAMS)["learning_rate"]) == pytest.approx(0.05)
    updated, _ = tx.update(GRADS, state, PARAMS)
    stepped_params, _ = oc.step(tx, GRADS, state, PARAMS)  # the one-pass kernel reads schedule(count) too
    applied = oc.apply_updates(PARAMS, updated)
    for a, b in zip(jax.tree.leaves(stepped_params), jax.tree.leaves(applied), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(updated["head"]["kernel"]), -0.05 * 2.0 * np.ones((2, 1)), rtol=1e-6)


def test_get_hyperparams_with_a_transform_needs_the_params():
    tx = adam(_ramp(0.001))
    with pytest.raises(ValueError, match=r"needs params="):
        get_hyperparams(tx.init(PARAMS), tx)
    with pytest.raises(TypeError, match=r"tx must be the GradientTransformation"):
        get_hyperparams(tx.init(PARAMS), "adam", PARAMS)
