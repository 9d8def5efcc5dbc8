"""Every row as the ``tx`` of a Flax linen ``TrainState`` and of an ``nnx.Optimizer``.

The gradients are the harness's (``noise_t + 0.125 w``, each leaf's dtype), given to
``apply_gradients`` / ``Optimizer.update`` as Flax code gives its ``jax.grad`` / ``nnx.grad``, so each
run must follow the row's own jitted trajectory (the optimizer driven by hand: ``init``, ``update``,
``apply_updates``): a wrapper that dropped the state, passed the wrong parameters or applied an update
twice shows up as a difference. (``jax.grad`` of a loss would give the same numbers, but XLA may then
keep excess precision in a bfloat16 gradient, which a global norm carries to float32 leaves.) All rows run in one jitted
program per integration. Rows with ``extra_args`` skip linen (``apply_gradients`` passes none);
``problem_only`` rows skip nnx (their masks are shaped like the shared tree, not like a module's).
"""

from __future__ import annotations

import jax
import pytest
import trajectory as tr
from cases import CASES, params
from flax import nnx
from flax.training import train_state

from optcompose._hyperparams import get_hyperparams

STEPS = 3
TOLERANCE = {"float32": (2e-6, 2e-6)}
"""A few steps of two jitted programs (a scan and an unrolled loop): float32 round-off only."""
LINEN = [case for case in CASES if case.extra_args is None]
NNX = [case for case in CASES if not case.problem_only]


def _by_hand(case):
    """The row's first STEPS parameters from the shared jitted run (update + apply_updates)."""
    trajectory, _ = tr.result(CASES, case, "jit")
    return jax.tree.map(lambda x: x[:STEPS], trajectory)


# ----------------------------------------------------------------------------------------------
# linen: flax.training.train_state.TrainState


def _linen(case):
    tx = case.make()
    params, noise = tr.problem(case.low_precision)

    def run(params, noise):
        state = train_state.TrainState.create(apply_fn=None, params=params, tx=tx)

        def body(state, noise_t):
            state = state.apply_gradients(grads=tr.gradients(state.params, noise_t))
            return state, state.params

        state, trajectory = jax.lax.scan(body, state, noise)
        return trajectory, state.opt_state, state.step

    return run, (params, jax.tree.map(lambda n: n[:STEPS], noise))


@pytest.mark.parametrize("case", params(LINEN))
def test_linen_train_state_steps_as_the_optimizer_by_hand(case):
    trajectory, _, step = tr.table_result("flax_linen", LINEN, case, _linen)
    assert int(step) == STEPS
    params, _ = tr.problem(case.low_precision)
    assert jax.tree.structure(tr.first_replica(trajectory)) == jax.tree.structure(params)
    tr.assert_trajectories_close(trajectory, _by_hand(case), label=f"{case.name} linen ", **TOLERANCE)


# ----------------------------------------------------------------------------------------------
# nnx: nnx.Optimizer on a module holding the shared tree's leaves as Params.


def _name(path) -> str:
    return jax.tree_util.keystr(path).strip("[]'").replace("']['", "_")


class Problem(nnx.Module):
    """One ``nnx.Param`` per leaf of the shared tree (``['dense']['kernel']`` -> ``dense_kernel``)."""

    def __init__(self, params):
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
            setattr(self, _name(path), nnx.Param(leaf))


def _nnx(case):
    tx = case.make()
    params, noise = tr.problem(case.low_precision)
    model = Problem(params)
    model_def, model_state = nnx.split(model)
    optimizer_def, optimizer_state = nnx.split(nnx.Optimizer(model, tx, wrt=nnx.Param))
    flat_noise = {_name(path): n[:STEPS] for path, n in jax.tree_util.tree_flatten_with_path(noise)[0]}
    dynamic, static = tr._extras_per_step(case.extra_args, STEPS)

    def run(model_state, optimizer_state, flat_noise, dynamic):
        def body(carry, inputs):
            model, optimizer = nnx.merge(model_def, carry[0]), nnx.merge(optimizer_def, carry[1])
            noise_t, dynamic_t = inputs
            grads = nnx.state(model, nnx.Param)
            nnx.replace_by_pure_dict(grads, tr.gradients(nnx.to_pure_dict(grads), noise_t))
            optimizer.update(model, grads, **tr._merge_extras(dynamic_t, static))
            return (nnx.state(model), nnx.state(optimizer)), nnx.to_pure_dict(nnx.state(model, nnx.Param))

        (_, final), trajectory = jax.lax.scan(body, (model_state, optimizer_state), (flat_noise, dynamic))
        optimizer = nnx.merge(optimizer_def, final)
        return trajectory, nnx.pure(optimizer.opt_state), optimizer.step[...]

    return run, (model_state, optimizer_state, flat_noise, dynamic)


@pytest.mark.parametrize("case", params(NNX))
def test_nnx_optimizer_steps_as_the_optimizer_by_hand(case):
    trajectory, opt_state, step = tr.table_result("flax_nnx", NNX, case, _nnx)
    assert int(step) == STEPS
    by_hand = _by_hand(case)
    expected = {_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(by_hand)[0]}
    tr.assert_trajectories_close(trajectory, expected, label=f"{case.name} nnx ", **TOLERANCE)
    # The optimizer state keeps optcompose's structure: its hyperparameters read as the plain state's.
    tx = case.make()
    plain = tx.init(tr.problem(case.low_precision)[0])
    assert set(get_hyperparams(opt_state)) == set(get_hyperparams(plain))
