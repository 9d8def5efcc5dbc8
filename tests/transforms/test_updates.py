"""incremental_update and periodic_update against Optax, NumPy and torch.

torch mapping (``test_incremental_update_matches_torch_ema``): ``incremental_update(new, avg, s)``
is the EMA of ``torch.optim.swa_utils.get_ema_multi_avg_fn(decay=1 - s)`` used by ``AveragedModel``
(``avg.lerp_(new, 1 - decay)``), up to the rounding of ``lerp``'s different formula.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from optcompose.transforms._updates import incremental_update, periodic_update

RNG = np.random.default_rng(0)


def test_signatures_match_optax():
    for ours, theirs in ((incremental_update, optax.incremental_update), (periodic_update, optax.periodic_update)):
        assert inspect.signature(ours).parameters.keys() == inspect.signature(theirs).parameters.keys()


def test_incremental_update_matches_optax_for_20_steps_and_float64():
    for dtype, rtol in ((jnp.float32, 1e-6), (jnp.float64, 1e-15)):  # jit may fuse a multiply-add
        with jax.enable_x64(dtype == jnp.float64):
            news = jnp.asarray(RNG.normal(size=(20, 3)), dtype)
            ours = theirs = {"w": jnp.zeros(3, dtype), "n": None}
            for new in news:
                ours = jax.jit(incremental_update)({"w": new, "n": None}, ours, 0.1)
                theirs = optax.incremental_update({"w": new, "n": None}, theirs, 0.1)
            assert ours["n"] is None and ours["w"].dtype == dtype
            np.testing.assert_allclose(ours["w"], theirs["w"], rtol=rtol)
    want = np.zeros(3)
    for new in np.asarray(news):
        want = 0.1 * new + 0.9 * want
    np.testing.assert_allclose(np.asarray(ours["w"]), want, rtol=1e-12)


def test_incremental_update_matches_torch_ema():
    decay = 0.9
    avg_fn = torch.optim.swa_utils.get_ema_multi_avg_fn(decay)
    model = [torch.zeros(3, dtype=torch.float64)]
    ours = jnp.zeros(3)
    with jax.enable_x64(True):
        ours = jnp.zeros(3, jnp.float64)
        for t, new in enumerate(RNG.normal(size=(20, 3))):
            avg_fn(model, [torch.tensor(new)], torch.tensor(t + 1))
            ours = incremental_update(jnp.asarray(new), ours, 1 - decay)
    np.testing.assert_allclose(np.asarray(ours), model[0].numpy(), rtol=1e-12)


def test_incremental_update_dtypes_and_bad_step_size():
    avg = jnp.ones(2, jnp.bfloat16)
    assert incremental_update(jnp.zeros(2, jnp.float32), avg, 0.5).dtype == jnp.bfloat16
    z = incremental_update(jnp.full(2, 1j, jnp.complex64), jnp.zeros(2, jnp.complex64), 0.5)
    np.testing.assert_allclose(z, [0.5j, 0.5j])
    jax.jit(incremental_update)(jnp.ones(2), jnp.zeros(2), jnp.float32(0.3))  # a traced step size
    with pytest.raises(ValueError, match="step_size"):
        incremental_update(jnp.ones(2), jnp.zeros(2), 1.5)


def test_periodic_update_matches_optax():
    new, old = {"w": jnp.ones(2)}, {"w": jnp.zeros(2)}
    step = jax.jit(periodic_update)
    for t in range(7):
        got = step(new, old, jnp.int32(t), 3)
        want = optax.periodic_update(new, old, jnp.int32(t), 3)
        np.testing.assert_array_equal(got["w"], want["w"])
        np.testing.assert_array_equal(got["w"], 1.0 if t % 3 == 0 else 0.0)
    with pytest.raises(ValueError, match="update_period"):
        periodic_update(new, old, 0, 0)
