"""``optcompose.step`` for every row: the numbers of ``update`` + ``apply_updates``, kernel or not.

``step`` runs a one-pass kernel where the row's chain ends in one (sgd with momentum, adam, adamw,
lamb; see optcompose/speed/_plans.py) and ``update`` + ``apply_updates`` otherwise. Rows with a
kernel plan, stepped by ``step`` in one jitted program, must follow their own ``update`` trajectory
and their NumPy reference (eager and pmap runs too, slow). Rows without one take the general road:
two eager steps of ``step`` equal ``update`` + ``apply_updates`` bit for bit.
"""

from __future__ import annotations

import jax
import pytest
import trajectory as tr
from cases import CASES, params
from helpers import assert_trees_equal

from optcompose._base import apply_updates
from optcompose.speed._plans import plan_for
from optcompose.speed._step import step

PLANNED = [case for case in CASES if plan_for(case.make()) is not None]
GENERAL = [case for case in CASES if case not in PLANNED]
PLANNED_WITH_REFERENCE = [case for case in PLANNED if case.reference is not None]


@pytest.mark.parametrize("case", params(PLANNED, core=True))
def test_kernel_rows_follow_update_and_apply_updates(case):
    stepped, stepped_state = tr.result(PLANNED, case, "jit", one_pass=True)
    updated, updated_state = tr.result(PLANNED, case, "jit")  # the kernel rows only: a small program
    tr.assert_trajectories_close(stepped, updated, label=f"{case.name} step vs update ")
    assert jax.tree.structure(stepped_state) == jax.tree.structure(updated_state)


@pytest.mark.parametrize("case", params(GENERAL))
def test_other_rows_take_the_general_road_bit_for_bit(case):
    tx = case.make()
    params_, noise = tr.problem(case.low_precision)
    stepped = updated = (params_, tx.init(params_))
    for t in range(2):
        extra = case.extra_args(t) if case.extra_args else {}
        grads = tr.gradients(stepped[0], jax.tree.map(lambda n, t=t: n[t], noise))
        stepped = step(tx, grads, stepped[1], stepped[0], **extra)
        updates, state = tx.update(grads, updated[1], updated[0], **extra)
        updated = (apply_updates(updated[0], updates), state)
    assert_trees_equal(stepped, updated, label=f"{case.name} step vs update")


@pytest.mark.parametrize("case", params(PLANNED_WITH_REFERENCE, core=True))
def test_kernel_rows_match_reference(case):
    tr.check_case(case, "jit", PLANNED, one_pass=True)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["eager", "pmap"])
@pytest.mark.parametrize("case", params(PLANNED_WITH_REFERENCE))
def test_kernel_rows_match_reference_eager_and_pmap(case, mode):
    tr.check_case(case, mode, PLANNED_WITH_REFERENCE, one_pass=True)
