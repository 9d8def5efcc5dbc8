"""reduce_on_plateau against Optax (float32, float64) and NumPy, and its schedule of reductions."""

from __future__ import annotations

import contrib_harness as h
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optcompose import contrib

ROWS = h.rows(["reduce_on_plateau"])


def test_rows_match_numpy_and_optax():
    h.check_parity(ROWS)


@pytest.mark.slow
def test_rows_match_optax_in_float64():
    h.check_parity(ROWS, x64=True)


@pytest.mark.slow
def test_eager_equals_jit():
    h.eager_matches_jit(ROWS[0], steps=3)


def test_reductions_patience_cooldown_and_floor_as_optax():
    losses = [1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.49999, 0.5, 0.5, 0.5, 0.5, 0.4, 0.5, 0.5]
    ours = contrib.reduce_on_plateau(factor=0.5, patience=2, cooldown=1, min_scale=0.2)
    theirs = optax.contrib.reduce_on_plateau(factor=0.5, patience=2, cooldown=1, min_scale=0.2)
    w = {"w": jnp.ones(2)}
    a, b = ours.init(w), theirs.init(w)
    step_ours = jax.jit(lambda s, v: ours.update(w, s, w, value=v)[1])
    step_theirs = jax.jit(lambda s, v: theirs.update(w, s, w, value=v)[1])
    scales = []
    for loss in losses:
        a, b = step_ours(a, jnp.float32(loss)), step_theirs(b, jnp.float32(loss))
        assert float(a.scale) == float(b.scale) and int(a.plateau_count) == int(b.plateau_count)
        assert int(a.cooldown_count) == int(b.cooldown_count) and float(a.best_value) == float(b.best_value)
        scales.append(float(a.scale))
    assert scales[3] == 0.5 and min(scales) == pytest.approx(0.2)


def test_bad_arguments_and_missing_loss():
    with pytest.raises(ValueError, match="factor"):
        contrib.reduce_on_plateau(factor=1.0)
    with pytest.raises(ValueError, match="rtol and atol"):
        contrib.reduce_on_plateau(rtol=0.0, atol=0.0)
    with pytest.raises(ValueError, match="rtol"):
        contrib.reduce_on_plateau(rtol=1.5)
    with pytest.raises(ValueError, match="accumulation_size"):
        contrib.reduce_on_plateau(accumulation_size=0)
    with pytest.raises(TypeError, match="patience"):
        contrib.reduce_on_plateau(patience=1.5)
    tx = contrib.reduce_on_plateau()
    w = {"w": np.ones(2, np.float32)}
    with pytest.raises(ValueError, match="value=loss"):
        tx.update(w, tx.init(w))
