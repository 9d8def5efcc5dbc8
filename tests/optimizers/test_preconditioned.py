"""Shampoo and SOAP (optcompose/optimizers/_preconditioned.py): references, behaviour, sharding, dtypes.

* the table rows (tests/rows/preconditioned.py) against the NumPy references, jit (eager: slow), and
  on a tree of our own (a 4-D leaf, blocks that pad, merged dimensions, SOAP's factored 1-D leaf
  of length 2, a dimension above the limit), 24 steps that include stale roots, the start of
  preconditioning, grafting and several eigenbasis refreshes;
* zero gradients, rank-deficient factors (rank-1 gradients for many steps): finite, no NaN;
* behaviour: on an ill-conditioned least-squares problem ``W A ~ B`` (cond(A) = 100) Shampoo and
  SOAP reach the target loss in fewer steps than AdamW at its best learning rate of the same grid
  (the grid runs as data: one compiled program per optimizer, vmapped over learning rates);
* sharding: the state placed with ``NamedSharding`` on the 8-device CPU mesh (factors sharded along
  their block axis) gives the numbers of the unsharded run;
* hyperparameters as data, schedules, bfloat16 parameters (float32 factors), argument checks.
"""

from __future__ import annotations

import cases
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference_preconditioned as rp
import trajectory as tr
from helpers import assert_finite, assert_trees_close
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from optcompose._base import apply_updates
from optcompose._hyperparams import get_hyperparams, set_hyperparams
from optcompose.optimizers._classic import adamw
from optcompose.optimizers._preconditioned import scale_by_shampoo, scale_by_soap, shampoo, soap

ROWS = [c for c in cases.CASES if cases.FAMILIES[c.name] == "preconditioned"]
IDS = [c.name for c in ROWS]
STEPS = 24


def test_the_rows_are_there():
    assert len(ROWS) == 6


# ----------------------------------------------------------------------------------------------
# A tree of our own: 4-D leaf, padded blocks, merged dimensions, a 1-D leaf of length 2.


def _own_problem():
    rng = np.random.default_rng(7)
    params = {
        "conv4d": jnp.asarray(rng.uniform(-1, 1, (2, 3, 2, 2)), jnp.float32),
        "wide": jnp.asarray(rng.uniform(-1, 1, (3, 5)), jnp.float32),
        "merge": jnp.asarray(rng.uniform(-1, 1, (2, 2, 5)), jnp.float32),
        "pair": jnp.asarray(rng.uniform(-1, 1, (2,)), jnp.float32),
        "scalar": jnp.asarray(0.3, jnp.float32),
    }
    return params, tr.make_noise(params, steps=STEPS, seed=11)


SHAMPOO_OWN = {"block_size": 2, "beta1": 0.875, "beta2": 0.96875, "matrix_epsilon": 1e-3, "weight_decay": 0.0625,
               "start_preconditioning_step": 3, "preconditioning_compute_steps": 4, "graft_type": "adam",
               "max_preconditioner_dim": 4, "merge_small_dims": True, "precondition_1d": True}  # fmt: skip
SOAP_OWN = {"b1": 0.875, "b2": 0.9375, "eps": 1e-3, "weight_decay": 0.0625, "precondition_frequency": 3,
            "max_precond_dim": 4, "merge_dims": True, "precondition_1d": True}  # fmt: skip
SOAP_4D = {**SOAP_OWN, "merge_dims": False, "precondition_frequency": 2, "b2": 0.96875}
OWN = {
    "shampoo": (lambda: shampoo(0.05, **SHAMPOO_OWN), lambda: rp.ref_shampoo(0.05, **SHAMPOO_OWN)),
    "shampoo_no_graft": (
        lambda: shampoo(0.01, block_size=3, graft_type="none", start_preconditioning_step=0, matrix_epsilon=1e-2),
        lambda: rp.ref_shampoo(
            0.01, block_size=3, graft_type="none", start_preconditioning_step=0, matrix_epsilon=1e-2
        ),
    ),  # fmt: skip
    "shampoo_adagrad_graft": (
        lambda: shampoo(0.05, block_size=None, graft_type="adagrad", start_preconditioning_step=1, exponent_override=2),
        lambda: rp.ref_shampoo(
            0.05, block_size=None, graft_type="adagrad", start_preconditioning_step=1, exponent_override=2
        ),
    ),  # fmt: skip
    "soap": (lambda: soap(0.05, **SOAP_OWN), lambda: rp.ref_soap(0.05, **SOAP_OWN)),
    "soap_4d": (lambda: soap(0.05, **SOAP_4D), lambda: rp.ref_soap(0.05, **SOAP_4D)),
}


def _relative_error(trajectory, reference) -> float:
    """max over steps and leaves of ||w - w_ref||_inf / max(||w_ref||_inf, 1e-3)."""
    got = tr.flatten(trajectory)
    worst = 0.0
    for t, want in enumerate(reference):
        for key, expected in want.items():
            difference = np.max(np.abs(np.asarray(got[key][t], np.float64) - expected))
            worst = max(worst, float(difference / max(np.max(np.abs(expected)), 1e-3)))
    return worst


def _own_params():
    """Every configuration in jit; eager (a Python loop of un-jitted updates, slow on CPU) for the
    main Shampoo and SOAP configurations, the others marked slow."""
    for name in sorted(OWN):
        for mode in ("jit", "eager"):
            slow = mode == "eager" and name not in ("shampoo", "soap")
            yield pytest.param(name, mode, id=f"{name}-{mode}", marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("name, mode", list(_own_params()))
def test_own_tree_matches_reference(name, mode):
    make, reference = OWN[name]
    params, noise = _own_problem()
    trajectory, state = tr.run_trajectory(make(), params, noise, mode)
    expected = tr.reference_trajectory(reference(), params, noise)
    tr.assert_trajectory_close(trajectory, expected, label=f"{name} {mode} ", float32=(1e-4, 1e-5))
    assert _relative_error(trajectory, expected) < 1e-4
    assert_finite(state)


def test_own_tree_layouts_are_the_intended_ones():
    params, _ = _own_problem()
    # leaves in jax.tree.leaves order: conv4d, merge, pair, scalar, wide
    merged = shampoo(0.05, **SHAMPOO_OWN).init(params)[0]
    assert [[s.shape for s in leaf] for leaf in merged.statistics] == [
        [(4, 2, 2)] * 3,  # (2, 3, 2, 2) merged to (2, 3, 4), blocks of 2 (the 3 padded to 4)
        [(2, 2, 2)],  # (2, 2, 5) merged to (4, 5); 5 > max_preconditioner_dim: no factor
        [(1, 2, 2)],  # a 1-D leaf with precondition_1d
        [],  # a scalar
        [(2, 2, 2)],  # (3, 5): 3 in two blocks, 5 above the limit
    ]
    four_d = shampoo(0.01, block_size=3).init(params)[0]
    assert [s.shape for s in four_d.statistics[0]] == [(1, 2, 2), (1, 3, 3), (1, 2, 2), (1, 2, 2)]
    bases = soap(0.05, **SOAP_OWN).init(params)[0].bases
    assert [[q.shape for q in leaf] for leaf in bases] == [
        [(1, 2, 2), (1, 3, 3), (1, 4, 4)], [(1, 4, 4)], [(1, 2, 2)], [], [(1, 3, 3)]
    ]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Zero gradients, rank-deficient factors.

MAKERS = {
    "shampoo": lambda: shampoo(0.1, block_size=2, start_preconditioning_step=0),
    "shampoo_sgd_stale": lambda: shampoo(0.1, graft_type="sgd", preconditioning_compute_steps=3),
    "soap": lambda: soap(0.1, precondition_frequency=2, weight_decay=0.0),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_zero_gradients_give_zero_finite_updates(name):
    tx = MAKERS[name]()
    params = {"w": jnp.ones((3, 4)), "v": jnp.ones((4,)), "t": jnp.ones((2, 2, 3))}
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(4):
        updates, state = update(jax.tree.map(jnp.zeros_like, params), state, params)
        assert_finite((updates, state), f"{name}: ")
    if name != "soap":  # no weight decay in these: zero gradients move nothing
        assert all(float(jnp.max(jnp.abs(u))) == 0.0 for u in jax.tree.leaves(updates))


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_rank_deficient_factors_stay_finite(name):
    """Rank-1 gradients ``a b^T`` for 12 steps: every factor is rank 1 (a large null space)."""
    tx = MAKERS[name]()
    rng = np.random.default_rng(3)
    params = {"w": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    a, b = rng.normal(size=(6, 1)), rng.normal(size=(1, 5))
    for t in range(12):
        grads = {"w": jnp.asarray((1.0 + 0.1 * t) * a @ b, jnp.float32)}
        updates, state = update(grads, state, params)
        params = apply_updates(params, updates)
        assert_finite((updates, state, params), f"{name} step {t}: ")


def test_non_finite_statistics_keep_the_previous_root_and_basis():
    params = {"w": jnp.ones((3, 4))}
    grads = {"w": jnp.full((3, 4), 1e30)}  # G G^T overflows float32: the statistics are inf
    tx = scale_by_shampoo(block_size=None, start_preconditioning_step=0)
    updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
    assert_finite(updates)
    assert_trees_close(state.preconditioners, tx.init(params).preconditioners, exact=True)
    sx = scale_by_soap()
    _, s = jax.jit(sx.update)(grads, sx.init(params), params)
    assert_trees_close(s.bases, sx.init(params).bases, exact=True)


# ----------------------------------------------------------------------------------------------
# Behaviour: an ill-conditioned least-squares problem.

N = 8


def _least_squares():
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(N, N)))
    v, _ = np.linalg.qr(rng.normal(size=(N, N)))
    a = (u * np.logspace(0, -2, N)) @ v.T  # condition number 100
    b = rng.normal(size=(N, N)) @ a
    return jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)


GRID = [0.01, 0.03, 0.1, 0.3, 1.0]
MAX_STEPS = 400


def _steps_to_target(tx, target_fraction=1e-3):
    """Steps to reach ``target_fraction`` of the initial loss, per learning rate of GRID (None: never)."""
    a, b = _least_squares()
    loss = lambda w: 0.5 * jnp.sum((w["w"] @ a - b) ** 2)  # noqa: E731
    w0 = {"w": jnp.zeros((N, N), jnp.float32)}

    def run(lr):
        state = set_hyperparams(tx.init(w0), learning_rate=lr)

        def body(carry, _):
            w, state = carry
            updates, state = tx.update(jax.grad(loss)(w), state, w)
            w = apply_updates(w, updates)
            return (w, state), loss(w)

        return jax.lax.scan(body, (w0, state), None, length=MAX_STEPS)[1]

    losses = np.asarray(jax.jit(jax.vmap(run))(jnp.asarray(GRID, jnp.float32)))
    target = target_fraction * float(loss(w0))
    steps = []
    for row in losses:
        hit = np.nonzero(row <= target)[0]
        steps.append(int(hit[0]) + 1 if hit.size else None)
    return steps


def _best(steps):
    found = [s for s in steps if s is not None]
    return min(found) if found else MAX_STEPS + 1


def test_shampoo_and_soap_beat_tuned_adamw_on_ill_conditioned_least_squares():
    adam_steps = _steps_to_target(adamw(0.1, weight_decay=0.0))
    shampoo_steps = _steps_to_target(shampoo(0.1, start_preconditioning_step=1, beta2=0.99))
    soap_steps = _steps_to_target(soap(0.1, b1=0.9, b2=0.99, precondition_frequency=2, weight_decay=0.0))
    best_adam, best_shampoo, best_soap = _best(adam_steps), _best(shampoo_steps), _best(soap_steps)
    message = f"steps to 1e-3 of the initial loss per lr {GRID}: adamw {adam_steps}, shampoo {shampoo_steps}, "
    message += f"soap {soap_steps}"
    assert best_adam <= MAX_STEPS, message  # the grid is fair: AdamW gets there
    assert best_shampoo < 0.75 * best_adam, message
    assert best_soap < 0.75 * best_adam, message


# ----------------------------------------------------------------------------------------------
# Sharding: the state on an 8-device mesh, sharded along the factors' block axis.


def _sharded_like(tree, mesh):
    """Arrays whose leading axis divides by 8 sharded along it, the rest replicated."""

    def place(x):
        spec = P("data") if jnp.ndim(x) >= 1 and jnp.shape(x)[0] % 8 == 0 else P()
        return jax.device_put(x, NamedSharding(mesh, spec))

    return jax.tree.map(place, tree)


@pytest.mark.parametrize("name", ["shampoo", "soap"])
def test_sharded_state_gives_the_unsharded_numbers(name):
    assert jax.device_count() >= 8, "conftest gives 8 host devices"
    mesh = Mesh(np.asarray(jax.devices()[:8]), ("data",))
    rng = np.random.default_rng(5)
    params = {"w": jnp.asarray(rng.normal(size=(16, 6)), jnp.float32), "b": jnp.zeros((8,), jnp.float32)}
    if name == "shampoo":  # (16, 6) in blocks of 2 x 2: two factors of shape (24 blocks, 2, 2)
        tx = shampoo(0.05, block_size=2, start_preconditioning_step=1, preconditioning_compute_steps=2)
    else:
        tx = soap(0.05, precondition_frequency=2)
    grads = [jax.tree.map(lambda x, i=i: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params) for i in range(5)]
    step = jax.jit(lambda g, s, p: tx.update(g, s, p))

    def run(params, state, place):
        for g in grads:
            updates, state = step(place(g), state, params)
            params = apply_updates(params, updates)
        return params, state

    plain = run(params, tx.init(params), lambda x: x)
    sharded_params = _sharded_like(params, mesh)
    sharded_state = _sharded_like(tx.init(params), mesh)
    if name == "shampoo":
        factor = sharded_state[0].statistics[1][0]  # leaves: b, w; w's first factor
        assert factor.shape == (24, 2, 2) and factor.sharding.spec == P("data")  # 8 x 3 blocks
    sharded = run(sharded_params, sharded_state, lambda t: _sharded_like(t, mesh))
    assert_trees_close(sharded, plain, float32=(1e-5, 1e-6), label=f"{name} sharded vs plain")


# ----------------------------------------------------------------------------------------------
# Hyperparameters as data, schedules, dtypes, argument checks.


def test_hyperparameters_are_data_and_set_without_recompiling():
    params = {"w": jnp.ones((3, 4))}
    for tx, names in [
        (shampoo(0.1), {"learning_rate", "beta1", "beta2", "diagonal_epsilon", "matrix_epsilon", "weight_decay"}),
        (soap(), {"learning_rate", "b1", "b2", "eps", "shampoo_beta", "weight_decay"}),
    ]:
        state = tx.init(params)
        assert set(get_hyperparams(state)) == names
        changed = set_hyperparams(state, learning_rate=0.0)
        step = jax.jit(tx.update)
        grads = {"w": jnp.full((3, 4), 0.5)}
        for _ in range(2):
            updates, changed = step(grads, changed, params)
        assert float(jnp.max(jnp.abs(updates["w"]))) == 0.0
        assert float(get_hyperparams(changed)["learning_rate"]) == 0.0
        assert step._cache_size() == 1
    assert float(get_hyperparams(soap().init(params))["learning_rate"]) == pytest.approx(3e-3)


def test_learning_rate_schedule():
    schedule = lambda count: 0.1 / (1.0 + count)  # noqa: E731
    params = {"w": jnp.ones((3, 4))}
    for tx, flat in [(shampoo(schedule), shampoo(0.1)), (soap(schedule), soap(0.1))]:
        state = tx.init(params)
        grads = {"w": jnp.arange(12.0).reshape(3, 4) / 12}
        updates, state = tx.update(grads, state, params)
        flat_updates, _ = flat.update(grads, flat.init(params), params)
        assert_trees_close(updates, flat_updates)  # the first update uses schedule(0) = 0.1
        assert float(get_hyperparams(state)["learning_rate"]) == pytest.approx(0.05)


@pytest.mark.parametrize("make", [lambda: shampoo(0.1, start_preconditioning_step=0), lambda: soap(0.1)])
def test_bfloat16_parameters_keep_their_dtype_with_float32_factors(make):
    tx = make()
    params = {"w": jnp.ones((3, 4), jnp.bfloat16), "b": jnp.ones((4,), jnp.bfloat16)}
    state = tx.init(params)
    for _ in range(3):
        grads = jax.tree.map(lambda x: (x * 0.5 + 0.25).astype(jnp.bfloat16), params)
        updates, state = tx.update(grads, state, params)
        params = apply_updates(params, updates)
    assert {u.dtype for u in jax.tree.leaves(updates)} == {jnp.dtype(jnp.bfloat16)}
    inner = state[0]
    factors = inner.statistics if hasattr(inner, "preconditioners") else inner.bases
    assert {x.dtype for x in jax.tree.leaves(factors)} == {jnp.dtype(jnp.float32)}
    per_element = inner.graft if hasattr(inner, "graft") else inner.mu
    assert {x.dtype for x in jax.tree.leaves(per_element)} == {jnp.dtype(jnp.bfloat16)}
    assert_finite((updates, state, params))


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: shampoo(-0.1), "learning_rate"),
        (lambda: shampoo(0.1, block_size=0), "block_size"),
        (lambda: shampoo(0.1, beta1=1.5), "beta1"),
        (lambda: shampoo(0.1, beta2=-0.1), "beta2"),
        (lambda: shampoo(0.1, matrix_epsilon=-1.0), "matrix_epsilon"),
        (lambda: shampoo(0.1, diagonal_epsilon=-1.0), "diagonal_epsilon"),
        (lambda: shampoo(0.1, weight_decay=-1.0), "weight_decay"),
        (lambda: shampoo(0.1, start_preconditioning_step=-1), "start_preconditioning_step"),
        (lambda: shampoo(0.1, preconditioning_compute_steps=0), "preconditioning_compute_steps"),
        (lambda: shampoo(0.1, graft_type="adamw"), "graft_type"),
        (lambda: shampoo(0.1, max_preconditioner_dim=0), "max_preconditioner_dim"),
        (lambda: soap(-1.0), "learning_rate"),
        (lambda: soap(b1=1.0), "b1"),
        (lambda: soap(b2=2.0), "b2"),
        (lambda: soap(eps=-1.0), "eps"),
        (lambda: soap(shampoo_beta=1.0), "shampoo_beta"),
        (lambda: soap(precondition_frequency=0), "precondition_frequency"),
        (lambda: soap(max_precond_dim=0), "max_precond_dim"),
        (lambda: soap(weight_decay=-0.1), "weight_decay"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(build, argument):
    with pytest.raises(ValueError, match=argument):
        build()


def test_soap_first_update_only_decays():
    """The first update builds the factors and bases; the step is the weight decay alone."""
    params = {"w": jnp.ones((3, 4))}
    tx = soap(0.1, weight_decay=0.5)
    updates, state = tx.update({"w": jnp.full((3, 4), 2.0)}, tx.init(params), params)
    assert_trees_close(updates, {"w": jnp.full((3, 4), -0.05)})
    assert float(jnp.max(jnp.abs(state[0].mu["w"]))) == 0.0


def test_shampoo_roots_are_stale_between_recomputations():
    params = {"w": jnp.ones((3, 4))}
    tx = scale_by_shampoo(block_size=None, preconditioning_compute_steps=3)
    state = tx.init(params)
    rng = np.random.default_rng(0)
    roots = []
    for _ in range(4):
        _, state = tx.update({"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)}, state, params)
        roots.append(state.preconditioners[0][0])
    assert_trees_close(roots[1], roots[0], exact=True)  # updates 1, 2, 3 share the root of update 1
    assert_trees_close(roots[2], roots[0], exact=True)
    assert float(jnp.max(jnp.abs(roots[3] - roots[0]))) > 0  # update 4 recomputes
