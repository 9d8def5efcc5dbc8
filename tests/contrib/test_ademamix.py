"""AdEMAMix and simplified AdEMAMix against Optax (float32, float64) and NumPy; state layout."""

from __future__ import annotations

import contrib_harness as h
import jax
import jax.numpy as jnp
import pytest
import trajectory as tr

from optcompose import contrib
from optcompose._hyperparams import get_hyperparams

ROWS = h.rows(["ademamix", "ademamix_schedules", "scale_by_ademamix", "simplified_ademamix",
               "scale_by_simplified_ademamix"])  # fmt: skip


def test_rows_match_numpy_and_optax():
    h.check_parity(ROWS)


@pytest.mark.slow
def test_rows_match_optax_in_float64():
    h.check_parity(ROWS, x64=True)


@pytest.mark.slow
def test_eager_equals_jit():
    h.eager_matches_jit(ROWS[1], steps=2)


def test_states_have_optax_fields_and_the_counts_advance_together():
    params, noise = tr.problem(False)
    (_, full), (_, simple) = h.run([ROWS[1].make(), ROWS[3].make()], [(params, noise)] * 2)
    assert int(full[0].count) == int(full[0].count_m2) == 20
    assert int(simple[0].t) == 20
    # The schedules' next values are reported (b3 = 0.9 + 0.004 * 20, alpha = 0.25 * 20).
    hyper = get_hyperparams(full)
    assert float(hyper["b3"]) == pytest.approx(0.98) and float(hyper["alpha"]) == pytest.approx(5.0)


def test_low_precision_and_mu_dtype():
    params, noise = tr.problem(True)
    tx = contrib.ademamix(0.01, mu_dtype=jnp.bfloat16)
    trajectory, state = h.run([tx], [(params, noise)])[0]
    assert h.leaf_dtypes(jax.tree.map(lambda x: x[-1], trajectory)) == h.leaf_dtypes(params)
    assert set(h.leaf_dtypes(state[0].nu)) == {jnp.dtype(jnp.bfloat16)}  # nu follows mu_dtype, as Optax


def test_simplified_ademamix_on_complex_parameters_is_phase_equivariant():
    # Optax's simplified AdEMAMix squares complex gradients (g * g, not |g|^2): not its numbers.
    h.check_phase_equivariance(h.rows(["simplified_ademamix"]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="b3"):
        contrib.ademamix(0.1, b3=1.5)
    with pytest.raises(TypeError, match="b1"):
        contrib.scale_by_ademamix(b1=lambda count: 0.9)
    with pytest.raises(ValueError, match="alpha"):
        contrib.simplified_ademamix(0.1, alpha=float("inf"))
    with pytest.raises(ValueError, match="eps_root"):
        contrib.scale_by_simplified_ademamix(eps_root=-1.0)
