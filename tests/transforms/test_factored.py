"""Factored and per-axis second moments and per-block scalings (optcompose/transforms/_factored.py).

Rows of tests/rows/adaptive.py against their NumPy references (Shazeer & Stern 2018, Anil et al.
2019) and Optax's pieces; Optax's state shapes (``FactoredState``'s placeholders, SM3's per-axis
vectors); Optax's SM3 on a problem without scalar leaves (its SM3 fails on scalars, ours keeps
one accumulator); custom decay schedules; overflow-safe block norms.
"""

from __future__ import annotations

import adaptive_checks as ac
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optcompose._hyperparams import get_hyperparams
from optcompose.transforms import _factored as fa

TABLE = ac.rows(
    "scale_by_factored_rms", "scale_by_sm3", "scale_by_param_block_norm", "scale_by_param_block_rms",
    "clip_by_block_rms",
)  # fmt: skip


test_matches_reference, test_matches_optax = ac.module_tests(TABLE)


def test_float64_matches_optax():
    """Block scalings agree to 1e-12; the factored rms to ~1e-6 (measured 8e-7), as Optax computes its
    decay ``1 - t**-0.8`` in float32 whatever the parameters' dtype."""
    table = ac.rows("scale_by_param_block_norm", "scale_by_param_block_rms", "clip_by_block_rms")
    for case in table:
        ac.check_x64(table, case)
    factored = ac.rows("scale_by_factored_rms")
    ac.check_x64(factored, factored[0], float64=(2e-6, 1e-12))


def test_complex_matches_optax():
    table = ac.rows("scale_by_factored_rms", "scale_by_param_block_norm", "clip_by_block_rms")
    for case in table:
        ac.check_complex_optax(table, case)


@pytest.mark.parametrize(
    "name", ["scale_by_factored_rms", "scale_by_sm3", "scale_by_param_block_norm", "scale_by_param_block_rms"]
)
def test_signature_is_optax(name):
    ac.assert_same_signature(getattr(fa, name), getattr(optax, name))


def test_clip_by_block_rms_signature_is_optax():
    ac.assert_same_signature(fa.clip_by_block_rms, optax.clip_by_block_rms)


def test_state_records_are_optax():
    ac.assert_same_fields(fa.FactoredState, optax.FactoredState)
    ac.assert_same_fields(fa.ScaleBySM3State, optax.ScaleBySM3State)


SHAPES = {"wide": (128, 130), "tall": (131, 128), "cube": (2, 128, 129), "small": (3, 4), "vector": (5,), "s": ()}


def test_factored_state_shapes_are_optax():
    """Placeholders of shape (1,) where a field is unused; v_row / v_col without the factored axes."""
    params = {k: jnp.ones(shape) for k, shape in SHAPES.items()}
    ours, theirs = fa.scale_by_factored_rms().init(params), optax.scale_by_factored_rms().init(params)
    for field in ("v_row", "v_col", "v"):
        got = jax.tree.map(jnp.shape, getattr(ours, field))
        assert got == jax.tree.map(jnp.shape, getattr(theirs, field)), field


def test_factored_updates_match_optax_on_large_matrices():
    rng = np.random.default_rng(0)
    params = {k: jnp.asarray(rng.normal(size=shape), jnp.float32) for k, shape in SHAPES.items()}
    ours, theirs = fa.scale_by_factored_rms(decay_rate=0.75), optax.scale_by_factored_rms(decay_rate=0.75)
    mine, state = ours.init(params), theirs.init(params)
    our_update, optax_update = jax.jit(ours.update), jax.jit(theirs.update)
    for t in range(3):
        grads = jax.tree.map(lambda p, t=t: jnp.cos(p * (t + 1)), params)
        got, mine = our_update(grads, mine, params)
        expected, state = optax_update(grads, state, params)
        ac.assert_close(got, expected, float32=(2e-6, 1e-7))
    ac.assert_close(tuple(mine)[:-1], tuple(state), float32=(2e-6, 1e-7))


def _capped(step, decay_rate):
    """Zhai et al. 2021's capped schedule: min(1 - (t + 1)**-decay_rate, 0.99)."""
    return jnp.minimum(1.0 - (jnp.asarray(step, jnp.float32) + 1.0) ** (-decay_rate), 0.99)


def test_custom_decay_rate_fn_and_step_offset_match_optax():
    rng = np.random.default_rng(1)
    params = {"w": jnp.asarray(rng.normal(size=(4, 6)), jnp.float32), "b": jnp.asarray(rng.normal(size=(6,)))}
    kwargs = {"min_dim_size_to_factor": 2, "decay_rate_fn": _capped, "step_offset": 0}
    ours, theirs = fa.scale_by_factored_rms(**kwargs), optax.scale_by_factored_rms(**kwargs)
    mine, state = ours.init(params), theirs.init(params)
    our_update, optax_update = jax.jit(ours.update), jax.jit(theirs.update)
    for t in range(30):
        grads = jax.tree.map(lambda p, t=t: jnp.sin(p + t), params)
        got, mine = our_update(grads, mine, params)
        expected, state = optax_update(grads, state, params)
    ac.assert_close(got, expected, float32=(2e-6, 1e-7))
    assert float(get_hyperparams(mine)["decay_rate"]) == pytest.approx(0.8)


def test_sm3_matches_optax_without_scalar_leaves():
    rng = np.random.default_rng(2)
    params = {"w": jnp.asarray(rng.normal(size=(3, 4))), "b": jnp.asarray(rng.normal(size=(5,))),
              "c": jnp.asarray(rng.normal(size=(2, 3, 2)))}  # fmt: skip
    ours, theirs = fa.scale_by_sm3(0.875, 0.9921875, 1e-3), optax.scale_by_sm3(0.875, 0.9921875, 1e-3)
    mine, state = ours.init(params), theirs.init(params)
    our_update, optax_update = jax.jit(ours.update), jax.jit(theirs.update)
    for t in range(6):
        grads = jax.tree.map(lambda p, t=t: jnp.cos(2 * p + t), params)
        got, mine = our_update(grads, mine, params)
        expected, state = optax_update(grads, state, params)
        ac.assert_close(got, expected, float32=(2e-6, 1e-7))
    ac.assert_close((mine.mu, mine.nu), (state.mu, state.nu), float32=(2e-6, 1e-7))


def test_sm3_scalar_leaf_keeps_one_accumulator():
    """Optax's SM3 gives a scalar leaf an empty list of accumulators and fails in update; ours keeps
    one accumulator of shape (), so a scalar behaves as a vector of one entry."""
    tx = fa.scale_by_sm3(b1=0.0)
    scalar, vector = {"s": jnp.asarray(2.0)}, {"s": jnp.asarray([2.0])}
    s_state, v_state = tx.init(scalar), tx.init(vector)
    assert [m.shape for m in s_state.mu["s"]] == [()]
    for g in (1.0, -3.0, 0.5):
        s_update, s_state = tx.update({"s": jnp.asarray(g)}, s_state)
        v_update, v_state = tx.update({"s": jnp.asarray([g])}, v_state)
        np.testing.assert_allclose(np.asarray(s_update["s"]).reshape(1), np.asarray(v_update["s"]), rtol=1e-7)
    with pytest.raises(IndexError):
        optax.scale_by_sm3().update(scalar, optax.scale_by_sm3().init(scalar))


def test_block_scalings_are_overflow_safe():
    """||w|| of entries 1e30 overflows float32 in Optax (inf * u); ours is the true norm."""
    params = {"w": jnp.full((4,), 1e30, jnp.float32)}
    updates = {"w": jnp.full((4,), 1e-20, jnp.float32)}
    for tx, factor in ((fa.scale_by_param_block_norm(), 2e30), (fa.scale_by_param_block_rms(), 1e30)):
        got, _ = tx.update(updates, tx.init(params), params)
        np.testing.assert_allclose(np.asarray(got["w"]), factor * 1e-20, rtol=1e-6)
    got, _ = optax.scale_by_param_block_norm().update(updates, optax.EmptyState(), params)
    assert not np.all(np.isfinite(np.asarray(got["w"])))
    clipped, _ = fa.clip_by_block_rms(1.0).update({"w": jnp.full((4,), 1e30)}, fa.clip_by_block_rms(1.0).init(params))
    np.testing.assert_allclose(np.asarray(clipped["w"]), 1.0, rtol=1e-6)


EDGE = {
    "factored_eps0": lambda: fa.scale_by_factored_rms(min_dim_size_to_factor=2, epsilon=0.0),
    "unfactored_eps0": lambda: fa.scale_by_factored_rms(factored=False, epsilon=0.0),
    "sm3": lambda: fa.scale_by_sm3(),
    "block_norm": lambda: fa.scale_by_param_block_norm(),
    "clip": lambda: fa.clip_by_block_rms(1.0),
}


@pytest.mark.parametrize("scale", ac.EDGE_SCALES, ids=["zero", "huge", "tiny"])
def test_edge_gradients_give_finite_updates(scale):
    """Zero statistics (epsilon = 0, zero gradients) give 0, not 0 * inf = NaN as in Optax."""
    for name, updates in ac.edge_updates(EDGE)[scale].items():
        ac.assert_finite(updates, label=f"{name} ")
        if scale == 0.0:
            assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates)), name


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: fa.scale_by_factored_rms(decay_rate=-1.0), "decay_rate"),
        (lambda: fa.scale_by_factored_rms(epsilon=-1.0), "epsilon"),
        (lambda: fa.scale_by_factored_rms(min_dim_size_to_factor=2.5), "min_dim_size_to_factor"),
        (lambda: fa.scale_by_factored_rms(step_offset=float("nan")), "step_offset"),
        (lambda: fa.scale_by_factored_rms(decay_rate_fn=0.8), "decay_rate_fn"),
        (lambda: fa.scale_by_sm3(b1=1.0), "b1"),
        (lambda: fa.scale_by_sm3(b2=1.5), "b2"),
        (lambda: fa.scale_by_param_block_norm(-1.0), "min_scale"),
        (lambda: fa.scale_by_param_block_rms(float("nan")), "min_scale"),
        (lambda: fa.clip_by_block_rms(0.0), "threshold"),
    ],
)
def test_bad_arguments_are_named(build, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        build()


def test_block_scalings_need_params():
    tx = fa.scale_by_param_block_rms()
    with pytest.raises(ValueError, match="needs params"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))
