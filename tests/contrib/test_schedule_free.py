"""Schedule-Free (SGD, AdamW, any base) against Optax (float32, float64) and NumPy; eval params."""

from __future__ import annotations

import contrib_harness as h
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import trajectory as tr

from optcompose import contrib
from optcompose._hyperparams import get_hyperparams, set_hyperparams
from optcompose.optimizers._classic import sgd

ROWS = h.rows(["schedule_free_sgd", "schedule_free_sgd_warmup", "schedule_free_adamw", "schedule_free"])


def test_rows_match_numpy_and_optax():
    h.check_parity(ROWS)


@pytest.mark.slow
def test_rows_match_optax_in_float64():
    # The warm-up schedule is float32 data in optcompose (Optax: float64 under x64): 1e-6 apart there.
    h.check_parity(ROWS, {"default": 1e-12, "schedule_free_sgd_warmup": 1e-6}, x64=True)


@pytest.mark.slow
def test_eager_equals_jit():
    h.eager_matches_jit(ROWS[2], steps=2)


def test_eval_params_match_optax_and_invert_the_interpolation():
    params, noise = tr.problem(False)
    ours, theirs = h.run([ROWS[2].make(), ROWS[2].optax()], [(params, noise)] * 2)
    last = lambda run: jax.tree.map(lambda x: x[-1], run[0])
    x_ours = contrib.schedule_free_eval_params(ours[1], last(ours))
    x_theirs = optax.contrib.schedule_free_eval_params(theirs[1], last(theirs))
    tr.assert_trajectories_close(jax.tree.map(lambda x: x[None], x_ours), jax.tree.map(lambda x: x[None], x_theirs))
    # y = b1 x + (1 - b1) z, so x is recovered exactly from y and z.
    b1 = float(ours[1].b1)
    back = jax.tree.map(lambda x, z: b1 * x + (1 - b1) * z, x_ours, ours[1].z)
    for got, want in zip(jax.tree.leaves(back), jax.tree.leaves(last(ours)), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_low_precision_keeps_dtypes_and_scheduled_learning_rate_is_reported_for_the_next_step():
    params, noise = tr.problem(True)
    tx = contrib.schedule_free_sgd(0.1, warmup_steps=4)
    trajectory, state = h.run([tx], [(params, noise)])[0]
    assert h.leaf_dtypes(jax.tree.map(lambda x: x[-1], trajectory)) == h.leaf_dtypes(params)
    assert h.leaf_dtypes(state.z) == h.leaf_dtypes(params)
    assert all(np.all(np.isfinite(np.asarray(x, np.float32))) for x in jax.tree.leaves(trajectory))
    hyper = get_hyperparams(tx.init(params))
    assert float(hyper[".hyperparams['learning_rate']"]) == pytest.approx(0.025)  # schedule(step_count=1)
    state = set_hyperparams(tx.init(params), weight_lr_power=1.0)
    assert float(get_hyperparams(state)["weight_lr_power"]) == 1.0


def test_complex_parameters():
    params, noise = tr.problem("complex")
    trajectory, _ = h.run([contrib.schedule_free_adamw(0.05)], [(params, noise)])[0]
    assert all(x.dtype == jnp.complex64 and np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(trajectory))


def test_bad_arguments():
    with pytest.raises(ValueError, match="b1"):
        contrib.schedule_free(sgd(0.1), 0.1, b1=0.0)
    with pytest.raises(ValueError, match="learning_rate"):
        contrib.schedule_free_sgd(-1.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        contrib.schedule_free_adamw(warmup_steps=-2)
    with pytest.raises(TypeError, match="base_optimizer"):
        contrib.schedule_free(object(), 0.1)
    with pytest.raises(ValueError, match="ScheduleFreeState"):
        contrib.schedule_free_eval_params((), {"w": jnp.ones(2)})
    tx = contrib.schedule_free_sgd()
    with pytest.raises(ValueError, match="params"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))
