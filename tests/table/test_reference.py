"""Every row against its oracles, 20 steps: its NumPy reference (written from the paper) under jit,
eager and pmap, and Optax's same optimizer where it has one.

All rows compile together: one jitted program (``trajectory.run_many``) for the table, one pmapped
program on 8 devices (parameters, state and gradients replicated: every replica must follow the
reference), and a Python loop per row for eager mode. Under jit every row runs in CI; eager and
pmap run the table's sample, and every row with ``--exhaustive`` (tests/cases.py).

Optax parity: both sides run through the same harness (the same gradients, ``apply_updates`` and
extra arguments), each table in one jitted program (ours is the program the reference check
compiled: one module, so one xdist worker); leaves agree to each dtype's trajectory tolerance.
``import optcompose as optax`` is meant to run Optax code unchanged: these rows hold us to it.
"""

from __future__ import annotations

import jax
import pytest
import trajectory as tr
from cases import CASES, params

DEVICES = 8
WITH_REFERENCE = [case for case in CASES if case.reference is not None]
WITH_OPTAX = [case for case in CASES if case.optax is not None]


def test_case_names_are_unique_and_the_table_is_not_empty():
    assert len({case.name for case in CASES}) == len(CASES) > 0
    assert WITH_REFERENCE


@pytest.mark.parametrize("case", params(WITH_REFERENCE, core=True))
def test_matches_reference_jit(case):
    tr.check_case(case, "jit", CASES)


@pytest.mark.parametrize("case", params(WITH_REFERENCE))
def test_matches_reference_eager(case):
    tr.check_case(case, "eager")


@pytest.mark.parametrize("case", params(WITH_REFERENCE))
def test_every_pmap_replica_matches_reference(case):
    assert jax.device_count() >= DEVICES, "conftest gives 8 host devices"
    tr.check_case(case, "pmap", WITH_REFERENCE)


@pytest.mark.parametrize("case", params(WITH_OPTAX, core=True))
def test_trajectory_matches_optax(case):
    ours, _ = tr.result(CASES, case, "jit")
    theirs, _ = tr.result(WITH_OPTAX, case, "jit", side="optax")
    tr.assert_trajectories_close(ours, theirs, label=f"{case.name} vs optax ")
