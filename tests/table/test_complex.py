"""Complex parameters for every row with ``complex_ok``: dtypes kept, finite, phase-equivariant, Optax's.

The shared tree as complex64 leaves ``w + i w'`` with complex gradients ``noise_t + 0.125 w``, 20 steps
in one jitted program per problem. A transform defined for complex parameters (moments of
``|g|^2``, norms of ``|w|``) commutes with a global phase: multiplying the parameters and the
gradients by ``e^{i theta}`` multiplies every update by it (``g * g`` instead of ``g * conj(g)``
would rotate by ``2 theta``). Rows with an ``optax`` twin follow Optax's complex trajectory too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trajectory as tr
from cases import CASES, params
from helpers import assert_finite

COMPLEX = [case for case in CASES if case.complex_ok and not case.low_precision]
OPTAX_KNOWN = {
    "multi_steps_adam": "Optax's MultiSteps accumulates complex gradients in float32 (accumulator_dtype), dropping "
    "their imaginary parts; ours keeps complex64 and is phase-equivariant (an Optax bug, not ours)",
}
"""row -> why its complex trajectory differs from Optax's."""
WITH_OPTAX = [case for case in COMPLEX if case.optax is not None]


def _runs(case, side="make", table=None):
    """(the complex run, the rotated run): one compiled program for both problems."""
    return tr.result(table or COMPLEX, case, "jit", side=side, kind=("complex", "complex_rotated"))


@pytest.mark.parametrize("case", params(COMPLEX))
def test_complex_parameters_keep_their_dtype_and_stay_finite(case):
    (trajectory, state), _ = _runs(case)
    params, _ = tr.problem("complex")
    assert jax.tree.structure(tr.first_replica(trajectory)) == jax.tree.structure(params)
    assert {jnp.dtype(leaf.dtype) for leaf in jax.tree.leaves(trajectory)} == {jnp.dtype(jnp.complex64)}
    assert_finite((trajectory, state), f"{case.name} complex: ")
    # Where the parameters move, their imaginary parts move too.
    final = tr.flatten(jax.tree.map(lambda x: x[-1], trajectory))
    start = tr.flatten(params)
    moved = any(np.any(final[k] != start[k]) for k in final)
    assert not moved or any(np.any(final[k].imag != start[k].imag) for k in final), f"{case.name}: imaginary frozen"


@pytest.mark.parametrize("case", params(COMPLEX))
def test_a_global_phase_rotates_every_step(case):
    (trajectory, _), (rotated, _) = _runs(case)
    expected = jax.tree.map(lambda x: jnp.asarray(tr.PHASE * np.asarray(x), jnp.complex64), trajectory)
    tr.assert_trajectories_close(rotated, expected, label=f"{case.name} rotated by the phase ")


@pytest.mark.slow
@pytest.mark.parametrize("case", params(WITH_OPTAX, OPTAX_KNOWN))
def test_complex_trajectory_matches_optax(case):
    (ours, _), _ = _runs(case)
    (theirs, _), _ = _runs(case, side="optax", table=WITH_OPTAX)
    tr.assert_trajectories_close(ours, theirs, label=f"{case.name} complex vs optax ")
