"""Every transform and optimizer case under ``jax.pmap`` on 8 devices.

Parameters, state and gradients are replicated, so every replica must follow the reference
trajectory exactly as the jitted run does. All cases compile together as one pmapped program.
"""

from __future__ import annotations

import jax
import pytest
import test_optimizers
import test_transforms
import trajectory as tr

DEVICES = 8
CASES = test_transforms.CASES + test_optimizers.CASES

pytestmark = pytest.mark.skipif(jax.device_count() < DEVICES, reason=f"needs {DEVICES} devices")


def test_case_names_are_unique():
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_replica_matches_reference(case):
    tr.check_case(case, "pmap", CASES)
