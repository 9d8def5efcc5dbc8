"""split_real_and_imaginary against Optax on complex parameters (float32, float64) and NumPy."""

from __future__ import annotations

import contrib_harness as h
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import trajectory as tr

from optcompose import contrib
from optcompose.optimizers._classic import adam

ROWS = h.rows(["split_real_and_imaginary"])


def test_rows_match_numpy_and_optax():
    h.check_parity(ROWS)


@pytest.mark.slow
def test_rows_match_optax_in_float64():
    h.check_parity(ROWS, x64=True)


def test_complex_parameters_match_optax_and_split_adam():
    params, noise = tr.problem("complex")
    ours = contrib.split_real_and_imaginary(adam(0.05, b2=0.99))
    theirs = optax.contrib.split_real_and_imaginary(optax.adam(0.05, b2=0.99))
    (got, state), (want, _) = h.run([ours, theirs], [(params, noise)] * 2)
    assert h.displacement_error(got, want, params) < 2e-5
    # The inner state holds real and imaginary parts as two real leaves.
    kernel = state.inner_state[0].mu["dense"]["kernel"]
    assert kernel.real.dtype == jnp.float32 and kernel.imaginary.shape == (3, 4)
    assert all(np.iscomplexobj(np.asarray(x)) for x in jax.tree.leaves(got))


@pytest.mark.slow
def test_complex_parameters_match_optax_in_float64():
    params, noise = tr.problem("complex")
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.complex128), params)
        noise64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.complex128), noise)
        (got, _), (want, _) = h.run([contrib.split_real_and_imaginary(adam(0.05, b2=0.99)),
                                     optax.contrib.split_real_and_imaginary(optax.adam(0.05, b2=0.99))],
                                    [(params64, noise64)] * 2)  # fmt: skip
        assert h.displacement_error(got, want, params64) < 1e-12
