"""``optcompose.step`` (optcompose/speed/_step.py): the kernels give the transforms' numbers, or step aside.

* Every row of the table stepped by ``step`` against its reference, and against ``update`` +
  ``apply_updates``, is tests/table/test_step.py's.
* Here, every row with a kernel plan: the kernel against ``update`` + ``apply_updates``, bit for bit
  where neither side contracts multiply-adds (eager), to an ulp under jit (where XLA fuses into
  FMAs), over leaves big enough to be split between threads; tree and flat state.
* The jitted program really calls the kernel where it should, and does not where it cannot
  (bfloat16 parameters, wrapped optimizers, ``use_kernel=False``, kernels disabled).
* The state stays the chain's: hyperparameters, schedules, ``tx.update`` after ``step``, donation.
"""

from __future__ import annotations

import os
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import CASES
from helpers import BIG_SHAPES, assert_trees_close, assert_trees_equal, random_like, random_params

import optcompose as oc
from optcompose.speed import kernels
from optcompose.speed._flat import FlatState
from optcompose.speed._plans import plan_for
from optcompose.speed._step import kernel_applies, step
from optcompose.speed.kernels import _build as build

# ----------------------------------------------------------------------------------------------
# Kernel against update + apply_updates.


def _params(seed=0, big=False):
    return random_params(BIG_SHAPES if big else None, seed)


def _grads(params, seed):
    return random_like(params, seed)


def _plan(case):
    plan = plan_for(case.make())
    return None if plan is None else plan.kernel


# Every row that ``step`` runs with a kernel (on any tree: the module tests' trees are not the table's).
KERNEL_ROWS = [case for case in CASES if not case.problem_only and case.extra_args is None and _plan(case)]
KERNEL_IDS = [case.name for case in KERNEL_ROWS]


def _general(tx):
    def run(grads, state, params):
        updates, state = tx.update(grads, state, params)
        return oc.apply_updates(params, updates), state

    return run


def _trajectories(tx, params, steps, jit):
    kernel = lambda g, s, p: step(tx, g, s, p)  # noqa: E731
    general = _general(tx)
    if jit:
        kernel, general = jax.jit(kernel), jax.jit(general)
    results = []
    for fn in (kernel, general):
        p, s = params, tx.init(params)
        for t in range(steps):
            p, s = fn(_grads(params, 100 + t), s, p)
        results.append((p, s))
    return results


def _assert_trees(a, b, exact, atol=1e-6):
    """Bit for bit, or an ulp apart: an ulp of float32 (from an FMA) can round a bfloat16 moment to
    its neighbour, hence bfloat16's 2**-7."""
    if exact:
        assert_trees_equal(a, b)
    else:
        assert_trees_close(a, b, float32=(2e-6, atol), float16=(2e-6, atol), bfloat16=(2**-7, atol))


def _make(case, flat):
    tx = case.make()
    return oc.flat_state(tx) if flat and not isinstance(tx, FlatState) else tx  # a flat row is flat already


@pytest.mark.parametrize("flat", [False, True], ids=["tree_state", "flat_state"])
@pytest.mark.parametrize("case", KERNEL_ROWS, ids=KERNEL_IDS)
def test_kernel_matches_general_road_eager_bit_for_bit(case, flat):
    tx = _make(case, flat)
    params = _params()
    (kp, ks), (gp, gs) = _trajectories(tx, params, 3, jit=False)
    # LAMB's norms are summed in float64 by the kernel, in float32 by XLA: an ulp apart.
    _assert_trees((kp, ks), (gp, gs), exact=_plan(case) != "lamb")


@pytest.mark.slow
@pytest.mark.parametrize("flat", [False, True], ids=["tree_state", "flat_state"])
@pytest.mark.parametrize("case", KERNEL_ROWS, ids=KERNEL_IDS)
def test_kernel_matches_general_road_jit_on_threaded_leaves(case, flat):
    tx = _make(case, flat)
    params = _params(big=True)
    (kp, ks), (gp, gs) = _trajectories(tx, params, 3, jit=True)
    # A bfloat16 moment an ulp apart (see _assert_trees) moves the next step by ~lr * 2**-8.
    low = any(jnp.dtype(leaf.dtype) == jnp.bfloat16 for leaf in jax.tree.leaves(gs))
    _assert_trees((kp, ks), (gp, gs), exact=False, atol=1e-4 if low else 1e-6)
    text = jax.jit(lambda g, s, p: step(tx, g, s, p)).lower(params, tx.init(params), params).as_text()
    assert f"optcompose_{_plan(case)}" in text


def test_the_kernel_rows_cover_every_kernel():
    assert {_plan(case) for case in KERNEL_ROWS} >= {"adam", "lamb", "sgd"}


@pytest.mark.slow
def test_threaded_kernel_equals_eager_kernel():
    """Big leaves (split between threads) give the same bits jitted and eager: no race, no reordering."""
    tx = oc.adamw(0.01, weight_decay=0.1)
    params = _params(big=True)
    jitted = _trajectories(tx, params, 2, jit=True)[0]
    eager = _trajectories(tx, params, 2, jit=False)[0]
    _assert_trees(jitted, eager, exact=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda: oc.inject_hyperparams(oc.adamw)(learning_rate=0.01),
        lambda: oc.apply_if_finite(oc.adamw(0.01), 3),
        lambda: oc.rmsprop(0.01),
        lambda: oc.sgd(0.01),
    ],
    ids=["inject_hyperparams", "apply_if_finite", "rmsprop", "sgd_without_momentum"],
)
def test_transforms_without_a_plan_take_the_general_road(make):
    tx = make()
    params = _params()
    text = jax.jit(lambda g, s, p: step(tx, g, s, p)).lower(params, tx.init(params), params).as_text()
    assert "optcompose_" not in text
    (kp, ks), (gp, gs) = _trajectories(tx, params, 2, jit=False)
    _assert_trees((kp, ks), (gp, gs), exact=True)


def test_low_precision_params_and_opt_out_take_the_general_road():
    tx = oc.adamw(0.01)
    params = _params()
    bf16 = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    lower = lambda p, **kw: jax.jit(lambda g, s, q: step(tx, g, s, q, **kw)).lower(p, tx.init(p), p).as_text()  # noqa: E731
    assert "optcompose_adam" in lower(params)
    assert "optcompose_adam" not in lower(bf16)
    assert "optcompose_adam" not in lower(params, use_kernel=False)
    new_params, _ = step(tx, _grads(bf16, 1), tx.init(bf16), bf16)
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(new_params))


def test_traced_mask_takes_the_general_road():
    params = _params()
    tx = oc.adamw(0.01, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda x: jnp.sum(x) > 0, p))
    # masked() needs concrete booleans too: the general road raises its own, located error.
    with pytest.raises(jax.errors.ConcretizationTypeError):
        jax.jit(lambda g, s, p: step(tx, g, s, p))(params, tx.init(params), params)


def test_kernels_disabled_or_missing_compiler_fall_back(monkeypatch):
    tx = oc.adamw(0.01, weight_decay=0.1)
    params = _params()
    expected = _general(tx)(_grads(params, 1), tx.init(params), params)

    monkeypatch.setattr(build, "_state", {})
    monkeypatch.setenv("OPTCOMPOSE_KERNELS", "0")
    assert not kernel_applies(tx)
    assert "OPTCOMPOSE_KERNELS=0" in kernels.unavailable_reason()
    _assert_trees(step(tx, _grads(params, 1), tx.init(params), params), expected, exact=True)

    monkeypatch.setattr(build, "_state", {})
    monkeypatch.setenv("OPTCOMPOSE_KERNELS", "1")
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    monkeypatch.setenv("OPTCOMPOSE_CACHE_DIR", "/nonexistent-cache")
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        assert not kernels.available()
    _assert_trees(step(tx, _grads(params, 1), tx.init(params), params), expected, exact=True)


# ----------------------------------------------------------------------------------------------
# The state stays the chain's.


def test_state_after_step_works_with_update_and_hyperparams():
    tx = oc.adamw(0.01, weight_decay=0.1)
    params = _params()
    jitted = jax.jit(lambda g, s, p: step(tx, g, s, p))
    p, s = jitted(_grads(params, 1), tx.init(params), params)
    assert oc.get_hyperparams(s)["learning_rate"] == pytest.approx(0.01)
    s = oc.set_hyperparams(s, learning_rate=0.5, weight_decay=0.0)
    g = _grads(params, 2)
    via_kernel, state_kernel = jitted(g, s, p)
    updates, state_general = tx.update(g, s, p)
    _assert_trees((via_kernel, state_kernel), (oc.apply_updates(p, updates), state_general), exact=False)
    assert int(state_kernel[0].count) == 2 and int(state_kernel[-1].count) == 2
    # The new learning rate and zero decay were used: the step is 0.5 * Adam's direction.
    direction = jax.tree.map(lambda a, b: (a - b) / -0.5, via_kernel, p)
    assert float(jnp.max(jnp.abs(direction["w"]))) == pytest.approx(1.0, rel=0.5)


def test_donated_buffers_are_updated_in_place():
    tx = oc.adamw(0.01)
    params = _params(big=True)
    state = tx.init(params)
    jitted = jax.jit(lambda g, s, p: step(tx, g, s, p), donate_argnums=(1, 2))
    expected = jax.jit(_general(tx))(_grads(params, 1), state, params)
    params_copy, state_copy = jax.tree.map(jnp.copy, (params, state))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Some donated buffers were not usable" would fail here
        out = jitted(_grads(params, 1), state_copy, params_copy)
    _assert_trees(out, expected, exact=False)
    assert params_copy["w"].is_deleted() and state_copy[0].mu["w"].is_deleted()


def test_vmap_over_hyperparameters():
    tx = oc.adamw(0.01, weight_decay=0.1)
    params = _params()
    lrs = jnp.asarray([0.01, 0.1, 0.3], jnp.float32)
    states = jax.vmap(lambda lr: oc.set_hyperparams(tx.init(params), learning_rate=lr))(lrs)
    g = _grads(params, 3)
    batched = jax.jit(jax.vmap(lambda s: step(tx, g, s, params)))(states)
    for i, lr in enumerate(lrs):
        one = _general(tx)(g, oc.set_hyperparams(tx.init(params), learning_rate=lr), params)
        _assert_trees(jax.tree.map(lambda x, i=i: x[i], batched), one, exact=False)


def test_nan_gradients_poison_exactly_as_the_general_road():
    tx = oc.adam(0.01, mu_dtype=jnp.bfloat16)
    params = _params()
    g = _grads(params, 4)
    g["w"] = g["w"].at[0, 0].set(jnp.nan).at[1, 1].set(jnp.inf)
    kernel = step(tx, g, tx.init(params), params)
    general = _general(tx)(g, tx.init(params), params)
    _assert_trees(kernel, general, exact=True)
    assert np.isnan(np.asarray(kernel[0]["w"][0, 0]))


def test_lamb_extreme_and_zero_leaves():
    params = {
        "huge": jnp.full((4, 3), 1e30, jnp.float32),
        "tiny": jnp.full((5,), 1e-30, jnp.float32),
        "zero": jnp.zeros((3,), jnp.float32),
    }
    tx = oc.lamb(0.01, weight_decay=0.01)
    g = _grads(params, 5)
    kernel = step(tx, g, tx.init(params), params)
    general = _general(tx)(g, tx.init(params), params)
    _assert_trees(kernel, general, exact=False)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(kernel))


def test_bad_input_gets_the_general_roads_located_error():
    tx = oc.adamw(0.01)
    params = _params()
    wrong = {"w": params["w"], "b": params["b"]}
    with pytest.raises(ValueError, match="updates"):
        step(tx, wrong, tx.init(params), params)
    bad_shape = dict(params, w=jnp.zeros((5, 7), jnp.float32))
    with pytest.raises(ValueError, match=r"\['w'\]"):
        step(tx, bad_shape, tx.init(params), params)
    integer = dict(params, b=jnp.zeros((5,), jnp.int32))
    with pytest.raises(oc.NotFloatingError, match=r"\['b'\]"):
        step(tx, integer, tx.init(params), params)


def test_sharded_state_on_a_cpu_mesh_gives_the_same_numbers():
    mesh = jax.make_mesh((8,), ("data",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    params = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(16, 3)), jnp.float32)}
    tx = oc.adamw(0.01, weight_decay=0.1)
    state = tx.init(params)
    sharded = jax.device_put((params, state[0].mu, state[0].nu), sharding)
    state = (state[0]._replace(mu=sharded[1], nu=sharded[2]), *state[1:])
    g = jax.device_put(_grads(params, 6), sharding)
    out = jax.jit(lambda g, s, p: step(tx, g, s, p))(g, state, sharded[0])
    _assert_trees(out, _general(tx)(_grads(params, 6), tx.init(params), params), exact=False)


@pytest.mark.slow
def test_benchmark_quick_run():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "benchmarks"))
    import bench_optimizers

    results = bench_optimizers.main(
        [
            "--quick",
            "--cases",
            "50x64",
            "--optimizers",
            "adamw",
            "--libraries",
            "optcompose,optax",
            "--rounds",
            "1",
            "--steps",
            "1",
        ]
    )
    (result,) = results
    libs = result["libraries"]
    assert set(libs) == {
        "optcompose step",
        "optcompose step, flat state",
        "optcompose update+apply",
        "optcompose step, bf16 state",
        "optax",
    }
    # 50 leaves x 64 float32 moments x 2 moments = 25.6 kB, bfloat16 moments half of it.
    assert libs["optcompose step"]["state_MB"] == pytest.approx(50 * 64 * 4 * 2 / 1e6, rel=0.01)
    assert libs["optcompose step, flat state"]["state_MB"] == pytest.approx(50 * 64 * 4 * 2 / 1e6, rel=0.01)
    assert libs["optcompose step, bf16 state"]["state_MB"] == pytest.approx(50 * 64 * 2 * 2 / 1e6, rel=0.01)
    assert libs["optax"]["state_MB"] == pytest.approx(libs["optcompose step"]["state_MB"], rel=0.01)
    assert all(r["step_ms"] > 0 and r["compile_s"] > 0 for r in libs.values())


@pytest.mark.slow
def test_every_optimizer_benchmark_quick_run():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "benchmarks"))
    import bench_all_optimizers

    names = bench_all_optimizers.optimizer_names()
    assert {("", "adam"), ("", "nadamw"), ("contrib", "muon")} <= set(names)
    assert not {n for _, n in names} & bench_all_optimizers.NOT_OPTIMIZERS
    assert {("", "lbfgs"), ("", "polyak_sgd"), ("contrib", "sophia"), ("contrib", "dpsgd")} <= set(names)
    only = "adamw,lbfgs,cocob,polyak_sgd,dpsgd"  # sophia's obj_fn is a keyword like lbfgs's value_fn
    results = bench_all_optimizers.main(["--quick", "--only", only, "--steps", "1"])
    # cocob's state holds the params; lbfgs and polyak_sgd take the stand-in loss, dpsgd
    # per-example gradients: every row runs, none is skipped.
    assert set(results["optimizers"]) == {"adamw", "lbfgs", "polyak_sgd", "contrib.cocob", "contrib.dpsgd"}
    assert not results["failed"]
    assert set(results["optimizers"]["adamw"]) == {"optcompose", "optax", "optcompose step"}
    assert set(results["optimizers"]["polyak_sgd"]) == {"optcompose", "optax"}  # no kernel pattern
    assert all(r["step_ms"] > 0 for libs in results["optimizers"].values() for r in libs.values())


# ----------------------------------------------------------------------------------------------
# Differentiable, built only when it runs, sharded state stays sharded.

REL_PARAMS = {"w": jnp.linspace(-1.0, 1.0, 16, dtype=jnp.float32), "b": jnp.full((8,), 0.5)}
REL_GRADS = jax.tree.map(lambda p: jnp.sin(2.0 * p) + 0.1, REL_PARAMS)


def _loss_after_step(lr, use_kernel, tx):
    state = oc.set_hyperparams(tx.init(REL_PARAMS), learning_rate=lr)
    new_params, _ = oc.step(tx, REL_GRADS, state, REL_PARAMS, use_kernel=use_kernel)
    return sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(new_params))


@pytest.mark.skipif(not kernels.available(), reason="kernels unavailable")
@pytest.mark.parametrize(
    "tx", [oc.adamw(0.1, weight_decay=0.1), oc.sgd(0.1, 0.9), oc.lamb(0.1)], ids=["adamw", "sgd", "lamb"]
)  # noqa: E501
def test_grad_through_step_equals_grad_through_update(tx):
    # Meta-learning the learning rate through the optimizer step: the kernel's derivative rule is
    # the general road's, so the derivatives agree and the forward pass still runs the kernel.
    kernel = jax.jit(jax.grad(lambda lr: _loss_after_step(lr, True, tx)))
    general = jax.jit(jax.grad(lambda lr: _loss_after_step(lr, False, tx)))
    assert_trees_close(kernel(0.1), general(0.1), rtol=1e-5, atol=0)
    assert "optcompose_" in jax.jit(lambda lr: _loss_after_step(lr, True, tx)).lower(0.1).as_text()


def test_the_kernel_is_not_built_for_inputs_it_cannot_take(monkeypatch):
    def refuse():
        raise AssertionError("the kernel was built although no kernel runs")

    monkeypatch.setattr(build, "_state", {})
    monkeypatch.setattr(build, "_load", refuse)
    tx = oc.adamw(0.1)
    bf16 = jax.tree.map(lambda p: p.astype(jnp.bfloat16), REL_PARAMS)
    new_params, _ = oc.step(tx, jax.tree.map(lambda g: g.astype(jnp.bfloat16), REL_GRADS), tx.init(bf16), bf16)
    assert new_params["w"].dtype == jnp.bfloat16
    oc.step(oc.rmsprop(0.1), REL_GRADS, oc.rmsprop(0.1).init(REL_PARAMS), REL_PARAMS)  # no kernel pattern at all


@pytest.mark.skipif(not kernels.available(), reason="kernels unavailable")
def test_sharded_state_stays_sharded():
    mesh = jax.make_mesh((8,), ("data",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    tx = oc.adamw(0.1)
    params = jax.device_put(REL_PARAMS, sharding)
    state = tx.init(params)
    state = (state[0]._replace(mu=jax.device_put(state[0].mu, sharding), nu=jax.device_put(state[0].nu, sharding)),
             *state[1:])  # fmt: skip
    lowered = jax.jit(lambda g, s, p: oc.step(tx, g, s, p)).lower(REL_GRADS, state, params).as_text()
    assert "optcompose_adam" not in lowered  # XLA's road, which partitions; a custom call would replicate
    new_params, new_state = jax.jit(lambda g, s, p: oc.step(tx, g, s, p))(REL_GRADS, state, params)
    assert not new_state[0].mu["w"].sharding.is_fully_replicated
    expected = oc.apply_updates(REL_PARAMS, tx.update(REL_GRADS, tx.init(REL_PARAMS), REL_PARAMS)[0])
    assert_trees_close(new_params["w"], expected["w"], rtol=2e-6, atol=0)


# ``jax.jit(step, in_shardings=...)`` without ``jax.set_mesh``: step cannot see the sharding while it
# traces, so the kernel is traced; the SPMD partitioner then splits it per shard (Adam, SGD) or
# refuses it (LAMB, flat state). Never a silent replication.

ZERO_PARAMS = {"w": jnp.linspace(-1.0, 1.0, 48, dtype=jnp.float32).reshape(16, 3), "b": jnp.full((8,), 0.5),
               "c": jnp.arange(7, dtype=jnp.float32), "s": jnp.float32(2.0)}  # fmt: skip
"""64 floats: a flat buffer of them divides over 8 devices; ``c`` and ``s`` stay replicated."""
ZERO_GRADS = jax.tree.map(lambda p: jnp.sin(2.0 * p) + 0.1, ZERO_PARAMS)


def _zero1(tx, state, **options):
    """ZeRO-1 in_shardings: parameters and gradients replicated, state sharded along its first axis."""
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))

    def layout(x):
        return sharded if np.ndim(x) and np.shape(x)[0] % 8 == 0 else replicated

    tree = jax.tree.map(lambda _: replicated, ZERO_PARAMS)
    in_shardings = (tree, jax.tree.map(layout, state), tree)
    return jax.jit(lambda g, s, p: step(tx, g, s, p, **options), in_shardings=in_shardings)


@pytest.mark.skipif(not kernels.available(), reason="kernels unavailable")
@pytest.mark.parametrize("tx", [oc.adamw(0.1, weight_decay=0.1), oc.sgd(0.1, 0.9, nesterov=True)], ids=["adamw", "sgd"])
def test_in_shardings_without_a_mesh_run_the_kernel_per_shard(tx):
    state = tx.init(ZERO_PARAMS)
    jitted = _zero1(tx, state)
    compiled = jitted.lower(ZERO_GRADS, state, ZERO_PARAMS).compile().as_text()
    calls = [line for line in compiled.splitlines() if 'custom_call_target="optcompose_' in line]
    assert calls, "the kernel did not run"
    assert all("f32[2,3]" in line and "f32[16,3]" not in line for line in calls)  # one device's shard of w
    new_params, new_state = jitted(ZERO_GRADS, state, ZERO_PARAMS)
    moments = [x for x in jax.tree.leaves(new_state) if np.ndim(x) and x.shape[0] % 8 == 0]
    assert moments and all(not x.sharding.is_fully_replicated for x in moments)  # still sharded
    _assert_trees((new_params, new_state), _general(tx)(ZERO_GRADS, tx.init(ZERO_PARAMS), ZERO_PARAMS), exact=False)


@pytest.mark.skipif(not kernels.available(), reason="kernels unavailable")
@pytest.mark.parametrize("name", ["lamb", "adamw_flat_state"])
def test_in_shardings_without_a_mesh_refuse_kernels_that_need_whole_buffers(name):
    from optcompose.speed._flat import flat_state

    tx = oc.lamb(0.1) if name == "lamb" else flat_state(oc.adamw(0.1))
    state = tx.init(ZERO_PARAMS)
    with pytest.raises(Exception, match=r"cannot run per shard.*use_kernel=False"):
        _zero1(tx, state).lower(ZERO_GRADS, state, ZERO_PARAMS).compile()
    # The way out the message names: XLA's road, which keeps the state sharded.
    new_params, new_state = _zero1(tx, state, use_kernel=False)(ZERO_GRADS, state, ZERO_PARAMS)
    assert any(not x.sharding.is_fully_replicated for x in jax.tree.leaves(new_state) if np.ndim(x))
    _assert_trees((new_params, new_state), _general(tx)(ZERO_GRADS, state, ZERO_PARAMS), exact=False)
